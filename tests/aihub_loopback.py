"""A loopback stand-in for Qualcomm AI Hub, speaking the real client's protocol.

The `qai_hub` client talks protobuf (its own `public_api_pb2` messages) over HTTP under
`/api/v1/...`, uploads model parts with PUT to pre-signed URLs (confirmed with the parts'
ETags), uploads datasets with a multipart POST, and downloads from URLs the API hands out. This
server answers exactly those requests, so the code under test is the same code that talks to
the real service; only `api_url` in the client's .ini differs.

What it cannot do is compile for a phone or run one: `compile_output` and the per-node profile
(NPU unless the op type is in `cpu_op_types`) are what a test decides they are.
"""

from __future__ import annotations

import collections
import itertools
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from qai_hub import public_api_pb2 as pb

TOKEN = "loopback-token"
DEVICES = [
    (
        "Samsung Galaxy S24",
        "14",
        ["chipset:qualcomm-snapdragon-8gen3", "framework:tflite", "framework:qnn", "framework:onnx"],
    ),
    (
        "Samsung Galaxy S23",
        "13",
        ["chipset:qualcomm-snapdragon-8gen2", "framework:tflite", "framework:qnn", "framework:onnx"],
    ),
]
MODEL_TYPES = {
    "tflite": pb.MODEL_TYPE_TFLITE,
    "qnn_context_binary": pb.MODEL_TYPE_QNN_CONTEXT_BINARY,
    "onnx": pb.MODEL_TYPE_ONNX,
}
EXTENSIONS = {pb.MODEL_TYPE_TFLITE: ".tflite", pb.MODEL_TYPE_QNN_CONTEXT_BINARY: ".bin", pb.MODEL_TYPE_ONNX: ".onnx"}
RUNNING = {
    "compile_job": pb.JOB_STATE_OPTIMIZING_MODEL,
    "inference_job": pb.JOB_STATE_MEASURING_PERFORMANCE,
    "quantize_job": pb.JOB_STATE_QUANTIZING_MODEL,
}


class LoopbackHub:
    def __init__(
        self,
        compile_output=None,
        polls_before_done: int = 1,
        fail_compile: dict | None = None,
        cpu_op_types=(),
        inference_us: int = 1850,
        peak_memory: int = 41 * 2**20,
    ):
        self.compile_output = compile_output or (lambda source, runtime: b"\x00\x00\x00\x00TFL3" + source[:64])
        self.polls_before_done, self.fail_compile = polls_before_done, fail_compile or {}
        self.cpu_op_types, self.inference_us, self.peak_memory = set(cpu_op_types), inference_us, peak_memory
        self.models, self.datasets, self.jobs, self.blobs = {}, {}, {}, {}
        self.created = collections.Counter()
        self.requests: list[str] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def write_ini(self, path, token: str = TOKEN) -> str:
        path.write_text(f"[api]\napi_token = {token}\napi_url = {self.url}\nweb_url = {self.url}\n")
        return str(path)

    def new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._ids):05d}"

    # --- what a job does when it finishes ------------------------------------------------------
    def finish(self, job_id: str) -> None:
        job = self.jobs[job_id]
        kind = job.WhichOneof("job")
        inner = getattr(job, kind)
        source = self.models[inner.model.model_id]
        if kind == "compile_job":
            reason = next((r for name, r in self.fail_compile.items() if name in source["name"]), None)
            if reason:
                inner.job_state, inner.failure_reason = pb.JOB_STATE_FAILED, reason
                return
            runtime = re.search(r"--target_runtime\s+(\S+)", inner.options).group(1)
            target = self.models[inner.target_model.model_id]
            target["bytes"] = self.compile_output(source["bytes"], runtime)
            target["source"] = source
        elif kind == "quantize_job":
            target_id = self.new_id("mq")
            self.models[target_id] = {
                "name": source["name"] + ".quant",
                "type": pb.MODEL_TYPE_ONNX,
                "bytes": source["bytes"],
                "source": source,
            }
            inner.target_model.CopyFrom(
                pb.Model(
                    model_id=target_id,
                    name=source["name"] + ".quant",
                    model_type=pb.MODEL_TYPE_ONNX,
                    producer_id=job_id,
                )
            )
        inner.job_state = pb.JOB_STATE_DONE

    def profile(self, model_id: str) -> pb.ProfileDetail:
        """One layer per node of the ONNX model the compiled model came from."""
        import onnx

        model = self.models[model_id]
        while "source" in model:
            model = model["source"]
        graph = onnx.load_from_string(model["bytes"]).graph
        layers = [
            pb.LayerDetail(
                name=n.name or f"{n.op_type}_{i}",
                layer_type_name=n.op_type,
                id=str(i),
                compute_unit=pb.COMPUTE_UNIT_CPU if n.op_type in self.cpu_op_types else pb.COMPUTE_UNIT_NPU,
                execution_time=3,
            )
            for i, n in enumerate(graph.node)
        ]
        return pb.ProfileDetail(
            major_version=1,
            minor_version=0,
            execution_time=self.inference_us,
            after_execution_peak_memory=self.peak_memory,
            cold_load_time=90000,
            warm_load_time=20000,
            layer_details=layers,
        )


def _handler(hub: LoopbackHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, message=None, headers=None, raw: bytes | None = None):
            body = raw if raw is not None else (message.SerializeToString() if message is not None else b"")
            self.send_response(status)
            self.send_header(
                "Content-Type", "application/octet-stream" if raw is not None else "application/x-protobuf"
            )
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _route(self, method: str):
            url = urlparse(self.path)
            path, query = url.path.rstrip("/"), parse_qs(url.query)
            hub.requests.append(f"{method} {path}")
            body = self._body()
            if path.startswith("/blob/"):  # the "S3" side: pre-signed uploads and downloads
                return self._blob(method, path, body)
            if self.headers.get("Authorization") != f"token {TOKEN}":
                return self._send(401, raw=b'{"detail": "Invalid token."}')
            parts = path.removeprefix("/api/v1/").split("/")
            handler = getattr(self, f"_{method.lower()}_{parts[0]}", None)
            if handler is None:
                return self._send(404, raw=b"not found")
            return handler(parts[1:], query, body)

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

        def do_PUT(self):
            self._route("PUT")

        def do_PATCH(self):
            self._route("PATCH")

        # --- api/v1 -------------------------------------------------------------------------
        def _get_users(self, parts, query, body):
            self._send(200, pb.User(id=1, email="ci@example.invalid", token=TOKEN))

        def _get_devices(self, parts, query, body):
            name = query.get("name", [""])[0]
            found = [pb.Device(name=n, os=os_, attributes=attrs) for n, os_, attrs in DEVICES if name in ("", n)]
            self._send(200, pb.DeviceList(devices=found, total_query_count=len(found)))

        def _post_models(self, parts, query, body):
            if not parts:
                model = pb.Model.FromString(body)
                model_id = hub.new_id("m")
                hub.models[model_id] = {"name": model.name, "type": model.model_type, "bytes": b""}
                hub.created["model"] += 1
                return self._send(201, pb.CreateUpdateResponse(id=model_id))
            complete = pb.FileMultipartUploadComplete.FromString(body)  # models/<id>/multipart_upload
            hub.models[parts[0]]["bytes"] = b"".join(
                hub.blobs.pop(f"{parts[0]}/{i}") for i in range(len(complete.etags))
            )
            self._send(200, pb.CreateUpdateResponse(id=parts[0]))

        def _get_models(self, parts, query, body):
            model = hub.models.get(parts[0])
            if model is None:
                return self._send(404, raw=b'{"detail": "Model not found."}')
            if len(parts) == 1:
                return self._send(200, pb.Model(model_id=parts[0], name=model["name"], model_type=model["type"]))
            if parts[1] == "multipart_upload":
                urls = [f"{hub.url}/blob/{parts[0]}/0"]
                return self._send(
                    200,
                    pb.FileUploadResponse(
                        multipart_url=pb.FileMultipartUploadURL(
                            urls=urls, upload_id="u-" + parts[0], max_part_size=1 << 30
                        )
                    ),
                )
            if parts[1] == "download":
                filename = model["name"].rsplit(".", 1)[0] + EXTENSIONS[model["type"]]
                return self._send(
                    200,
                    pb.FileDownloadResponse(
                        url=pb.FileDownloadURL(url=f"{hub.url}/blob/download/{parts[0]}", filename=filename)
                    ),
                )
            self._send(404, raw=b"not found")

        def _post_datasets(self, parts, query, body):
            dataset_id = hub.new_id("d")
            hub.datasets[dataset_id] = {"name": pb.Dataset.FromString(body).name, "bytes": b""}
            self._send(201, pb.CreateUpdateResponse(id=dataset_id))

        def _get_datasets(self, parts, query, body):  # datasets/<id>/upload_url
            self._send(
                200,
                pb.FileUploadResponse(
                    url=pb.FileUploadURL(
                        url=f"{hub.url}/blob/dataset/{parts[0]}", file_field_name="file", fields={"key": parts[0]}
                    )
                ),
            )

        def _patch_datasets(self, parts, query, body):
            self._send(200, pb.CreateUpdateResponse(id=parts[0]))

        def _post_jobs(self, parts, query, body):
            job = pb.Job.FromString(body)
            kind = job.WhichOneof("job")
            job_id = hub.new_id("j")
            inner = getattr(job, kind)
            setattr(inner, f"{kind}_id", job_id)
            inner.job_state = pb.JOB_STATE_CREATED
            if kind == "compile_job":  # seed_target_model: the target id exists from the start
                if not inner.device.name and inner.devices.devices:
                    inner.device.CopyFrom(inner.devices.devices[0])
                runtime = re.search(r"--target_runtime\s+(\S+)", inner.options).group(1)
                target_id = hub.new_id("mc")
                name = hub.models[inner.model.model_id]["name"]
                hub.models[target_id] = {
                    "name": name.rsplit(".", 1)[0] + "_compiled",
                    "type": MODEL_TYPES[runtime],
                    "bytes": b"",
                }
                inner.target_model.CopyFrom(
                    pb.Model(
                        model_id=target_id,
                        name=hub.models[target_id]["name"],
                        model_type=MODEL_TYPES[runtime],
                        producer_id=job_id,
                    )
                )
            hub.jobs[job_id] = job
            hub.created[kind] += 1
            self._send(201, pb.CreateUpdateResponse(id=job_id))

        def _get_jobs(self, parts, query, body):
            job = hub.jobs.get(parts[0])
            if job is None:
                return self._send(404, raw=b'{"detail": "Job not found."}')
            inner = getattr(job, job.WhichOneof("job"))
            if len(parts) == 2 and parts[1] == "result":
                result = pb.JobResult()
                if job.WhichOneof("job") == "inference_job":
                    result.inference_job_result.CopyFrom(
                        pb.InferenceJobResult(inference_job_id=parts[0], detail=hub.profile(inner.model.model_id))
                    )
                return self._send(200, result)
            if inner.job_state not in (pb.JOB_STATE_DONE, pb.JOB_STATE_FAILED):
                polls = hub.created[f"poll:{parts[0]}"] = hub.created[f"poll:{parts[0]}"] + 1
                inner.job_state = RUNNING[job.WhichOneof("job")]
                if polls > hub.polls_before_done:
                    hub.finish(parts[0])
            self._send(200, job)

        def _blob(self, method, path, body):
            parts = path.split("/")[2:]
            if method == "PUT":  # blob/<model>/<part>
                hub.blobs[f"{parts[0]}/{parts[1]}"] = body
                return self._send(200, raw=b"", headers={"ETag": f'"{parts[0]}-{parts[1]}"'})
            if method == "POST":  # blob/dataset/<id>: a multipart form like S3's POST policy
                hub.datasets[parts[1]]["bytes"] = body
                return self._send(204, raw=b"")
            model = hub.models[parts[1]]  # GET blob/download/<model>
            self._send(200, raw=model["bytes"])

    return Handler


__all__ = ["LoopbackHub", "TOKEN"]
