"""`aihub:<SoC | AI Hub device>`: compile in Qualcomm AI Hub and profile on a real phone.

Per encoder, through the `qai-hub` client: upload the static batch-1 fp32 ONNX -> (optional) an
AI Hub quantize job fed with our held-out calibration samples -> a compile job for the target
runtime -> an inference job with profiling on the device -> download the compiled model and the
profile. Every id (model, quantize, compile, profile) is written to the manifest the moment it
exists (`aihub_jobs`), so a rerun after a crash or Ctrl-C picks the same jobs up instead of
paying for new ones. The profile decides: a layer that runs on the GPU or CPU instead of the NPU
fails the compile unless --allow-cpu-fallback, because silent fallback is what makes phones slow.

The service is never imitated here: this module only talks to `qai_hub.Client`. Tests point the
client's api_url at a loopback server speaking the same protobuf protocol.
"""

from __future__ import annotations

import collections
import configparser
import contextlib
import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..contract import MANIFEST
from ..errors import CompileError, first_line
from ..guard import verified_artifact
from ..manifest import dump_manifest
from .registry import Target, register_backend, static_sources

RUNTIMES = ("tflite", "qnn_context_binary", "onnx")
DEFAULT_RUNTIME = "tflite"
DEFAULT_TIMEOUT_S = 3600  # AI Hub itself fails jobs that overrun; this bounds our wait
DEFAULT_POLL_S = 10.0  # the client's own polling interval
CONNECT_TIMEOUT_S = 5.0
CALIBRATION_SAMPLES = 100
TOKEN_HELP = (
    "configure a Qualcomm AI Hub API token (from your AI Hub account page): "
    "`qai-hub configure --api_token <TOKEN>` writes ~/.qai_hub/client.ini, or point "
    "QAIHUB_CLIENT_INI at an .ini with [api] api_token and api_url"
)


def config_path() -> Path:
    return Path(os.environ.get("QAIHUB_CLIENT_INI") or "~/.qai_hub/client.ini").expanduser()


def client_config():
    """The client's own config file, read without network access; no token means no job is tried."""
    path = config_path()
    parser = configparser.ConfigParser()
    try:
        readable = path.is_file() and bool(parser.read(path, encoding="utf-8"))
    except (configparser.Error, UnicodeDecodeError) as e:
        first = first_line(e, 120)
        raise CompileError(
            f"{path} is not a valid AI Hub client.ini ({first}); rewrite it with "
            "`qai-hub configure --api_token <TOKEN>`"
        ) from None
    if not readable or not parser.get("api", "api_token", fallback="").strip():
        raise CompileError(f"no Qualcomm AI Hub API token ({path} has none): {TOKEN_HELP}")
    try:
        import qai_hub
    except ImportError:
        raise CompileError("aihub targets need the qai-hub client: pip install 'mcad-export[aihub]'") from None
    api = parser["api"]
    api_url = api.get("api_url", "https://workbench.aihub.qualcomm.com")
    return qai_hub.ClientConfig(
        api_token=api["api_token"].strip(), api_url=api_url, web_url=api.get("web_url", api_url), verbose=False
    )


def check_reachable(api_url: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One plain HTTP request, no retries, before the client's own retries (~45 s per call) begin: any HTTP
    answer means the service is there; a refused, unroutable or silent host fails within 2 x timeout."""
    import requests

    probe = api_url.rstrip("/") + "/api/v1/users/auth/user/"
    try:
        requests.get(probe, timeout=(timeout, timeout), headers={"Accept": "application/x-protobuf"})
    except requests.RequestException as e:
        reason = re.sub(r"[\"')]+$", "", str(e).split(": ")[-1])[:160] or type(e).__name__
        raise CompileError(
            f"cannot reach Qualcomm AI Hub at {api_url} within {timeout:g} s ({reason}); check "
            f"the network, proxy or api_url in {config_path()}; jobs already submitted stay in the "
            "manifest and a rerun resumes them"
        ) from None


def one_line(error: Exception) -> str:
    """qai_hub draws its messages in a text box; the report and the CLI want one line."""
    text = re.sub(r"[┌┐└┘─]+", " ", str(error))
    return " ".join(text.replace("|", " ").split())


class JobLedger:
    """The manifest's `aihub_jobs[target][encoder]`, persisted on every change."""

    def __init__(self, root: Path, manifest: dict, target: Target, encoder: str, key: dict):
        self.root, self.manifest = root, manifest
        jobs = manifest.setdefault("aihub_jobs", {}).setdefault(target.id, {})
        if jobs.get(encoder, {}).get("key") != key:  # another source or other options: start over
            jobs[encoder] = {"key": key}
        self.entry = jobs[encoder]

    def get(self, step: str):
        return self.entry.get(step)

    def put(self, step: str, value) -> None:
        self.entry[step] = value
        write_text_atomic(self.root / MANIFEST, dump_manifest(self.manifest), root=self.root)

    def drop(self, step: str) -> None:
        self.entry.pop(step, None)
        write_text_atomic(self.root / MANIFEST, dump_manifest(self.manifest), root=self.root)


def wait_for(job, what: str, ledger: JobLedger, step: str, options: dict, say):
    timeout = options.get("aihub_timeout_s", DEFAULT_TIMEOUT_S)
    deadline = time.monotonic() + timeout
    last = None
    while True:
        status = job.get_status()
        if status.code != last:
            say(f"{what}: {status.code.lower()} ({job.url})")
            last = status.code
        if status.finished:
            break
        if time.monotonic() > deadline:
            raise CompileError(
                f"{what} is still {status.code} after {timeout} s "
                f"({job.url}); rerun the same command to keep waiting on job {job.job_id}"
            )
        time.sleep(options.get("aihub_poll_s", DEFAULT_POLL_S))
    if status.failure:
        ledger.drop(step)  # a rerun submits a fresh job instead of re-reading this failure
        raise CompileError(
            f"{what} failed on AI Hub: {(status.message or 'no reason given').strip()} (job {job.job_id}: {job.url})"
        )
    return job


def profile_summary(profile: dict) -> dict:
    summary, layers = profile.get("execution_summary", {}), profile.get("execution_detail", [])
    units = collections.Counter(layer.get("compute_unit", "UNSPECIFIED") for layer in layers)
    off_npu = [
        f"{layer.get('name')} ({layer.get('type')}) on {layer.get('compute_unit')}"
        for layer in layers
        if layer.get("compute_unit") != "NPU"
    ]
    latency_us, memory = summary.get("estimated_inference_time"), summary.get("estimated_inference_peak_memory")
    return {
        "inference_ms": round(latency_us / 1e3, 3) if latency_us else None,
        "peak_memory_mb": round(memory / 2**20, 2) if memory else None,
        "layers": dict(units),
        "layers_off_npu": len(off_npu),
        "off_npu_examples": off_npu[:5],
    }


def _encoder(
    client,
    hub,
    root: Path,
    manifest: dict,
    target: Target,
    fp32: dict,
    stem: str,
    tokens: int | None,
    stage: Path,
    options: dict,
    say,
) -> dict:
    """One encoder through upload, [quantize], compile and profile; `tokens`: a text length bucket. A text graph is
    uploaded cut at its token lookup (host_gather.py): the table stays on the host, beside the downloaded model."""
    import onnx

    from ..runtime.token_table import HostTokenTable
    from .host_gather import input_records, moved_to_host, prove_ids, static_text_graph

    encoder, runtime, quantize = (
        fp32["encoder"],
        options.get("aihub_runtime", DEFAULT_RUNTIME),
        bool(options.get("aihub_quantize")),
    )
    what = f"the {tokens}-token bucket of the text encoder" if tokens else f"the {encoder} encoder"
    device = hub.Device(target.soc["aihub_device"])
    key = {
        "source_sha256": fp32["sha256"],
        "runtime": runtime,
        "quantize": quantize,
        "device": target.soc["aihub_device"],
        "host_gather": encoder == "text",  # an upload from before the cut is not resumed
    }
    short = stem.replace("_encoder", "")  # "image", "text", "text.len16": the ledger key and the job names
    ledger = JobLedger(root, manifest, target, short, key)
    name = f"mcad-{manifest['student']['id'].split('/')[-1][:40]}-{short}"

    text = encoder == "text"
    with static_text_graph(
        verified_artifact(root, fp32),
        stage,
        stage if text else None,
        prove_ids(root, manifest, tokens) if text else None,
    ) as (static, host):
        inputs = input_records(onnx.load(str(static), load_external_data=False))
        if host is not None:
            say(moved_to_host(target.id, what, host))
        if ledger.get("model_id"):
            model = client.get_model(ledger.get("model_id"))
        else:
            say(f"{target.id}: uploading {what} ({static.stat().st_size / 1e6:.1f} MB)")
            model = client.upload_model(str(static), name=name)
            ledger.put("model_id", model.model_id)
    table = HostTokenTable.in_folder(stage) if host else None

    if quantize:
        if ledger.get("quantize_job"):
            qjob = client.get_job(ledger.get("quantize_job"))
        else:
            from ..quantize.calibration import calibration_inputs

            calib = calibration_inputs(
                root, manifest, num_calib=CALIBRATION_SAMPLES, allow_small=options.get("allow_small_calibration", False)
            )
            x = calib.for_encoder(encoder)
            x = np.ascontiguousarray(x[:, :tokens]) if tokens else x  # a bucket is fed ids cut to its length
            from ..runtime.encoders import text_feed

            feeds = [text_feed([i["name"] for i in inputs], x[i : i + 1], table) for i in range(len(x))]
            qjob = client.submit_quantize_job(
                model,
                {key: [feed[key] for feed in feeds] for key in feeds[0]},
                weights_dtype=hub.QuantizeDtype.INT8,
                activations_dtype=hub.QuantizeDtype.INT16 if encoder == "text" else hub.QuantizeDtype.INT8,
                name=f"{name}-quantize",
            )
            ledger.put("quantize_job", qjob.job_id)
        wait_for(qjob, f"AI Hub quantize job for {what}", ledger, "quantize_job", options, say)
        qjob.wait()  # returns at once now; QuantizeJob.wait is what fetches a target model the job got late
        model = qjob.get_target_model()

    if ledger.get("compile_job"):
        cjob = client.get_job(ledger.get("compile_job"))
    else:
        cjob = client.submit_compile_job(
            model, device=device, name=f"{name}-compile", options=f"--target_runtime {runtime}"
        )
        ledger.put("compile_job", cjob.job_id)
    wait_for(cjob, f"AI Hub compile job for {what}", ledger, "compile_job", options, say)
    compiled = cjob.get_target_model()

    if ledger.get("profile_job"):
        pjob = client.get_job(ledger.get("profile_job"))
    else:
        pjob = client.submit_inference_job(compiled, device=device, profile=True, name=f"{name}-profile")
        ledger.put("profile_job", pjob.job_id)
    wait_for(pjob, f"AI Hub profile job for {what} on {device.name}", ledger, "profile_job", options, say)
    profile = pjob.download_profile()
    summary = profile_summary(profile)

    with contextlib.redirect_stdout(io.StringIO()):  # the client prints "Downloaded model to ..."
        downloaded = Path(cjob.download_target_model(str(stage / f"{stem}.aihub")))
    if not downloaded.exists() or (downloaded.is_file() and downloaded.stat().st_size == 0):
        raise CompileError(f"{target.id}: AI Hub returned an empty model for {what} ({cjob.url})")
    if runtime == "tflite" and downloaded.read_bytes()[4:8] != b"TFL3":
        raise CompileError(f"{target.id}: the model AI Hub returned for {what} is not a TFLite flatbuffer ({cjob.url})")
    profile_file = stage / f"{stem}.aihub.profile.json"
    profile_file.write_text(json.dumps(profile, indent=1) + "\n")

    if summary["layers_off_npu"] and not options.get("allow_cpu_fallback"):
        raise CompileError(
            f"{target.id}: {summary['layers_off_npu']} layer(s) of {what} ran off the "
            f"NPU on {device.name} ({', '.join(f'{u} {n}' for u, n in summary['layers'].items())}; "
            f"e.g. {summary['off_npu_examples'][0]}); pass --allow-cpu-fallback to accept that. "
            f"Profile: {pjob.url}"
        )
    say(
        f"{target.id}: {what} {summary['inference_ms']} ms, peak {summary['peak_memory_mb']} MB on "
        f"{device.name}, layers {summary['layers']}"
    )
    return {
        "name": stem,
        "encoder": encoder,
        "format": f"aihub-{runtime}",
        **({"length_bucket": {"tokens": tokens}} if tokens else {}),
        "runtime": f"aihub-{runtime}",
        # AI Hub's quantize job: int8 weights, int16 text / int8 image activations (see --aihub-quantize)
        "precision": ("w8a16" if encoder == "text" else "w8a8") if quantize else "fp32",
        **({"quantized_by": "aihub"} if quantize else {}),
        "target": target.id,
        "soc": target.soc,
        "inputs": inputs,
        "outputs": [{**fp32["outputs"][0], "shape": [1, *fp32["outputs"][0]["shape"][1:]]}],
        "files": {"model": downloaded.name, "profile": profile_file.name, **(host["files"] if host else {})},
        **({"host_gather": {k: v for k, v in host.items() if k != "files"}} if host else {}),
        "source": fp32["path"],
        "device_profile": {
            **summary,
            "device": device.name,
            "profile_job": pjob.job_id,
            "profile_url": pjob.url,
            "allowed_off_npu": bool(options.get("allow_cpu_fallback")),
        },
        "aihub": {
            "model_id": ledger.get("model_id"),
            "quantize_job": ledger.get("quantize_job"),
            "compile_job": cjob.job_id,
            "compile_url": cjob.url,
            "profile_job": pjob.job_id,
            "options": f"--target_runtime {runtime}",
        },
        "ops": {"npu": summary["layers"].get("NPU", 0), "cpu": summary["layers_off_npu"]},
    }


def device_profile_checks(manifest: dict, budget_ms: float, budget_mb: float) -> list[dict]:
    """The budget as the phone saw it: every profiled encoder all on the NPU (unless allowed), within the memory
    budget, and the text encoder (the per-query part) within the latency budget."""
    checks = []
    for artifact in manifest["artifacts"]:
        profile = artifact.get("device_profile")
        if not profile:
            continue
        npu = not profile["layers_off_npu"] or profile["allowed_off_npu"]
        latency = artifact["encoder"] != "text" or (profile["inference_ms"] or 0) <= budget_ms
        memory = (profile["peak_memory_mb"] or 0) <= budget_mb
        checks.append(
            {
                "target": artifact["target"],
                "device": profile["device"],
                "encoder": artifact["encoder"],
                "artifact": artifact["path"],
                "inference_ms": profile["inference_ms"],
                "peak_memory_mb": profile["peak_memory_mb"],
                "layers": profile["layers"],
                "layers_off_npu": profile["layers_off_npu"],
                "allowed_off_npu": profile["allowed_off_npu"],
                "profile_url": profile["profile_url"],
                "npu_passed": npu,
                "latency_passed": latency,
                "memory_passed": memory,
                "passed": npu and latency and memory,
            }
        )
    return checks


@register_backend(
    "aihub",
    ("qualcomm",),
    "Qualcomm AI Hub: cloud compile and profiling on a real phone (needs an API token and internet)",
)
def compile_aihub(root: Path, manifest: dict, target: Target, stage: Path, options: dict, say) -> list[dict]:
    if options.get("aihub_runtime", DEFAULT_RUNTIME) not in RUNTIMES:
        raise CompileError(f"unknown AI Hub runtime {options['aihub_runtime']!r}; use one of {', '.join(RUNTIMES)}")
    config = client_config()
    check_reachable(config.api_url)
    import qai_hub as hub
    from qai_hub.client import Error as HubError

    client = hub.Client(config=config)
    try:
        if not client.get_devices(name=target.soc["aihub_device"]):
            raise CompileError(
                f"{target.id}: AI Hub has no device named {target.soc['aihub_device']!r}; "
                "`qai-hub list-devices` shows the current names (fix the row in socs.json)"
            )
        # NPUs compile static shapes: the contract's encoders and the text length buckets, profiled per length.
        return [
            _encoder(client, hub, root, manifest, target, source, stem, tokens, stage, options, say)
            for source, stem, tokens in static_sources(manifest)
        ]
    except HubError as e:
        message = one_line(e)
        if "authenticate" in message or "token" in message.lower():
            message += f" ({TOKEN_HELP})"
        raise CompileError(f"{target.id}: {message}") from None
    except KeyboardInterrupt:
        say(f"{target.id}: interrupted; AI Hub keeps running the submitted jobs and a rerun resumes them")
        raise


__all__ = ["check_reachable", "client_config", "device_profile_checks", "profile_summary"]
