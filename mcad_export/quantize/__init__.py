"""Quantization stage: INT8 / 16-bit-activation / fp16 variants that provably keep retrieval.

Entry point: `quantize_artifacts(dir, precisions)`. For every fp32 ONNX encoder and precision it
quantizes with the recipe (onnx_recipes), localises per-layer damage (layer_damage) and, with
`auto`, keeps the most damaged layers in float step by step until the fidelity gate passes on a
tuning set (the calibration split, fp32 ONNX as reference). The held-out gate itself is run
independently by `verify` (quantize/verify.py).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .. import confined
from ..atomic import locks_folder, scratch_dir, staged_directory
from ..contract import MANIFEST, ONNX_STEMS, TEXT_MASK_INPUT, TFLITE_DIR, TFLITE_STEMS, length_bucket_onnx
from ..defaults import NUM_CALIB
from ..guard import verified_artifact
from ..isolated import ToolCrashError, run_isolated
from ..logs import quiet_root_logger
from ..manifest import artifact_files, dump_manifest, file_record, read_manifest, total_bytes
from ..runtime.encoders import artifact_embed, onnx_embed, real_lengths
from ..usage import note
from .calibration import ArrayReader, calibration_inputs, sample_inputs
from .fidelity import DEFAULT_GATE, Gate, score, with_languages
from .layer_damage import node_damage
from .onnx_recipes import (
    PRECISIONS,
    RECIPES,
    applies_to,
    external_data_name,
    mask_consumers,
    name_all_nodes,
    quantize_onnx,
)
from .tflite_recipes import STATIC_OPS, TFLITE_RECIPES, quantize_tflite_in_process, tflite_embed_in_process

# As large as the held-out evaluation set: a 0.5-point R@1 limit is 5 queries at 1,000 but only 2.5
# at 500, and at 500 sampling noise alone rejected variants that pass on held-out.
TUNE_SPLIT = "calib"
DAMAGE_SAMPLES = 8
AUTO_STEPS = (1, 4, 16)
# The length buckets (static [1, tokens] text encoders for NPU targets, and CPUs without dynamic shapes) get the
# integer CPU recipes; the 16-bit and fp16 recipes are what the NPU compilers derive from the fp32 bucket.
BUCKET_KINDS = ("dynamic", "weight_only", "per_token")
# A bucket is tuned on the tuning captions that fit it; fewer than this and its gate would be noise.
MIN_BUCKET_ROWS = 32

__all__ = ["quantize_artifacts", "PRECISIONS", "Gate"]


@locks_folder("quantize")
def quantize_artifacts(
    out_dir,
    precisions=("w8a8",),
    *,
    calib_images=None,
    calib_captions=None,
    num_calib: int = NUM_CALIB,
    allow_small: bool = False,
    auto: bool = True,
    gate: Gate = DEFAULT_GATE,
    buckets: bool = False,
    formats: tuple[str, ...] = ("onnx", "tflite"),
    progress=None,
) -> list[dict]:
    say = progress or (lambda message: None)
    root = Path(out_dir)
    manifest = read_manifest(root)
    calib = calibration_inputs(
        root,
        manifest,
        images_dir=calib_images,
        captions_file=calib_captions,
        num_calib=num_calib,
        allow_small=allow_small,
    )
    tune = sample_inputs(root, manifest, TUNE_SPLIT)
    # Only the contract's fp32 encoders: every file written below is named from contract.ONNX_STEMS.
    fp32 = [
        a
        for a in manifest["artifacts"]
        if a["format"] == "onnx" and a["precision"] == "fp32" and a["path"] in ONNX_STEMS and "target" not in a
    ]
    tflite = [
        a
        for a in manifest["artifacts"]
        if a["format"] == "tflite" and a["precision"] == "fp32" and a["path"] in TFLITE_STEMS and "target" not in a
    ]
    # Opt-in: the CPU query path never runs a bucket, and a bucket is gated on the captions that fit it (52% of
    # the held-out set for 16 tokens), where one caption is 0.2 R@1 points: all-MiniLM's len16 w8 passed its
    # tuning split and missed held-out by 0.7 points (3-4 of 521 captions).
    buckets = _bucket_sources(manifest) if buckets and "onnx" in formats else []
    for a in fp32 + tflite + buckets:
        verified_artifact(root, a)
    tune_reference = with_languages(
        {
            f"{a['encoder']}_embeds": onnx_embed(root / a["path"], tune.for_encoder(a["encoder"]))
            for a in fp32
            if not a.get("dynamic_length")
        },
        manifest,
    )
    masked = TEXT_MASK_INPUT in manifest["text"].get("inputs", [])
    records = []
    # The digests this folder recorded for its files before this run: a stale copy is deleted only while it still
    # holds the bytes mcad-export wrote (confined.remove_file).
    recorded = {
        f["path"]: f.get("sha256")
        for a in manifest["artifacts"]
        for f in [a, *([a["external_data"]] if a.get("external_data") else [])]
    }
    # Scratch models go inside the export too: a killed quantize leaves nothing elsewhere (the next stage cleans).
    with staged_directory(root) as stage, scratch_dir(root) as work:
        for artifact in fp32 if "onnx" in formats else []:  # the fp32 ONNX still references the TFLite gate
            named = Path(work) / f"{_stem(artifact)}.named.onnx"
            name_all_nodes(root / artifact["path"], named)
            for precision in [p for p in precisions if applies_to(p, artifact["encoder"])]:
                say(f"quantizing {_stem(artifact)} to {precision}")
                records.append(
                    _quantize_onnx(
                        artifact, precision, named, stage, calib, tune, tune_reference, auto, gate, say, masked=masked
                    )
                )
        for artifact in buckets:
            named = Path(work) / f"{Path(_stem(artifact)).name}.named.onnx"
            name_all_nodes(root / artifact["path"], named)
            for precision in [p for p in precisions if RECIPES[p]["kind"] in BUCKET_KINDS and applies_to(p, "text")]:
                tokens = artifact["length_bucket"]["tokens"]
                if (real_lengths(tune.ids) <= tokens).sum() < MIN_BUCKET_ROWS:
                    say(f"skipping the {tokens}-token bucket: fewer than {MIN_BUCKET_ROWS} tuning captions fit it")
                    break
                say(f"quantizing {_stem(artifact)} to {precision}")
                records.append(
                    _quantize_onnx(
                        artifact, precision, named, stage, calib, tune, tune_reference, auto, gate, say, masked=masked
                    )
                )
        for artifact in tflite if "tflite" in formats else []:
            # The one-query TFLite twin is the CPU (XNNPACK) path: dynamic-range only (static recipes are NPU
            # formats, and the full-context twin already gets them).
            wanted = [p for p in precisions if p in TFLITE_RECIPES]
            for precision in [p for p in wanted if p == "dynamic" or not artifact.get("dynamic_length")]:
                say(f"quantizing {_stem(artifact)} to {precision} (ai-edge-quantizer, isolated)")
                records.append(
                    _quantize_tflite(
                        artifact,
                        root / artifact["path"],
                        precision,
                        stage,
                        calib,
                        tune,
                        tune_reference,
                        auto,
                        gate,
                        say,
                    )
                )
        # With auto, a variant that misses the gate even after mixed precision is not shipped: its file is
        # dropped and the manifest says which layers keep it from passing. Without auto the user asked for
        # the plain model, so it is kept and `verify` judges it.
        for r in records:  # each variant was judged by the gate on the tuning split (registry coverage, usage.py)
            note("gated", f"{r['format']}:{r['precision']}")
        rejected = [r for r in records if auto and not r["tuning"]["passed"]]
        damage = _damage(root, manifest, rejected[0], stage / rejected[0]["path"]) if rejected else None
        for r in rejected:
            for name in artifact_files(r):
                (stage / name).unlink()
        accepted = [r for r in records if r not in rejected]
        written = {r["path"] for r in records}
        manifest["artifacts"] = [a for a in manifest["artifacts"] if a["path"] not in written] + accepted
        manifest["quantization"] = {
            "calibration": calib.source,
            "calibration_samples": {"image": len(calib.pixels), "text": len(calib.ids)},
            "requested_calibration_samples": num_calib,
            "small_calibration": min(len(calib.pixels), len(calib.ids)) < num_calib,
            "skipped_unreadable_images": calib.skipped_images,
            "tuning_set": f"{manifest['evaluation']['samples']}:{TUNE_SPLIT} x{manifest['evaluation']['count']} "
            "vs fp32 ONNX",
            "gate": gate.__dict__,
            "rejected": [
                {
                    "name": r["name"],
                    "path": r["path"],
                    "last_step": r["tuning"]["steps"][-1],
                    "steps": r["tuning"]["steps"],
                    "layer_damage_top": r["layer_damage_top"][:5],
                    **({"damage": damage} if damage is not None and r is rejected[0] else {}),
                }
                for r in rejected
            ],
        }
        (stage / MANIFEST).write_text(dump_manifest(manifest), encoding="utf-8")
    for r in rejected:  # a stale accepted copy from an earlier run must not linger unreferenced
        for name in artifact_files(r):
            confined.remove_file(root, name, recorded.get(name))
    return records


def _damage(root: Path, manifest: dict, record: dict, path: Path):
    """What a rejected variant does to a few held-out searches, while its file still exists (report.retrieval)."""
    from ..guard import reference_embeddings
    from ..report.retrieval import damage_of, shows_retrieval
    from .calibration import evaluation_inputs

    if not shows_retrieval(manifest):
        return None
    held = evaluation_inputs(root, manifest)

    def embed(array):
        if record["format"] == "tflite":
            what = f"LiteRT running {path.name}"
            return run_isolated(tflite_embed_in_process, {"model": str(path)}, {"x": array}, what=what)["embeds"]
        return artifact_embed(path, record, array)

    return damage_of(manifest, reference_embeddings(root, manifest), held.ids, held.pixels, record["encoder"], embed)


def tuning_step(encoder, embeds, tune_reference, gate: Gate, keep_float, population=None) -> dict:
    result = score(encoder, embeds, tune_reference, gate, population)
    misses = gate.misses(result)
    return {
        "kept_float": list(keep_float),
        "cosine_mean": round(result["cosine_mean"], 6),
        "recall_at_1": result["recall_at_1"],
        "recall_at_1_fp32": result["recall_at_1_fp32"],
        "top10_overlap": round(result["top10_overlap"], 4),
        "cosine_min": round(result["cosine_min"], 6),
        "r1_paired_p": result["r1_paired"]["p_value"],
        "degenerate": result["degenerate"],
        "passed": not misses,
        "misses": misses,
    }


def _stem(artifact) -> str:
    """What a variant's file is derived from: the contract's stem, never the manifest's `name` or `path`."""
    if artifact.get("length_bucket"):
        return length_bucket_onnx(artifact["length_bucket"]["tokens"]).removesuffix(".onnx")
    if artifact["path"] in TFLITE_STEMS:
        return f"{TFLITE_STEMS[artifact['path']]}.tflite"
    return ONNX_STEMS[artifact["path"]]


def _bucket_sources(manifest: dict) -> list[dict]:
    """The fp32 length buckets as artifact-like records (only those at the contract's own path for their size)."""
    sources = []
    for b in manifest["text"].get("length_buckets") or []:
        tokens = b.get("tokens")
        if isinstance(tokens, int) and not isinstance(tokens, bool) and b.get("path") == length_bucket_onnx(tokens):
            sources.append(
                {
                    **b,
                    "encoder": "text",
                    "format": "onnx",
                    "runtime": "onnxruntime",
                    "precision": "fp32",
                    "length_bucket": {"tokens": tokens, "covers": (b.get("parity") or {}).get("covers")},
                }
            )
    return sources


def _bucket_view(artifact, calib_array, tune_array, tune_reference):
    """A bucket sees only the captions that fit it, cut to its length (as verify.gated_rows gates it)."""
    tokens = artifact["length_bucket"]["tokens"]
    calib_rows, tune_rows = real_lengths(calib_array) <= tokens, real_lengths(tune_array) <= tokens
    return (
        calib_array[calib_rows][:, :tokens],
        tune_array[tune_rows][:, :tokens],
        {k: v[tune_rows] for k, v in tune_reference.items()},
    )


def _record(artifact, precision, stage, filename, recipe, steps, damage, auto) -> dict:
    # Integer recipes keep their weights in <file>.data (memory-mapped by ONNX Runtime, see onnx_recipes).
    own_data = Path(filename).with_name(external_data_name(filename)).as_posix()
    own_data = own_data if (stage / own_data).is_file() else None
    size = (stage / filename).stat().st_size + ((stage / own_data).stat().st_size if own_data else 0)
    # The fp32 side of the ratio counts its external weights too (text_encoder.dyn keeps them in .data).
    fp32_size = total_bytes(artifact)
    return {
        "name": f"{Path(_stem(artifact)).name}.{precision}",
        "encoder": artifact["encoder"],
        "format": artifact["format"],
        "runtime": artifact["runtime"],
        "precision": precision,
        "inputs": artifact["inputs"],
        "outputs": artifact["outputs"],
        **file_record(stage, filename),
        **({"external_data": file_record(stage, own_data)} if own_data else {}),
        "source": artifact["path"],
        "recipe": recipe,
        "size_ratio_vs_fp32": round(fp32_size / size, 2),
        "tuning": {"passed": steps[-1]["passed"], "steps": steps, "auto": auto},
        "layer_damage_top": damage[:10],
        **({"dynamic_length": artifact["dynamic_length"]} if artifact.get("dynamic_length") else {}),
        **({"length_bucket": artifact["length_bucket"]} if artifact.get("length_bucket") else {}),
    }


def _auto_mixed_precision(attempt, first_step, candidates, say, label):
    """Keeps the 1, 4, 16 most damaged layers in float until the tuning gate passes.

    Returns (recipe, steps, passed). `attempt(keep_float)` re-quantizes and scores one configuration.
    """
    recipe, steps = None, [first_step]
    for k in AUTO_STEPS:
        k = min(k, len(candidates))
        say(f"{label} misses the gate; keeping {k} layer(s) in float")
        recipe, step = attempt(candidates[:k])
        steps.append(step)
        if step["passed"] or k == len(candidates):
            break
    return recipe, steps, steps[-1]["passed"]


def _quantize_onnx(
    artifact, precision, named, stage, calib, tune, tune_reference, auto, gate, say, masked: bool = False
) -> dict:
    encoder = artifact["encoder"]
    input_names = [i["name"] for i in artifact["inputs"]]
    filename = f"{_stem(artifact)}.{precision}.onnx"
    dst = stage / filename
    dst.parent.mkdir(parents=True, exist_ok=True)
    calib_array, tune_array = calib.for_encoder(encoder), tune.for_encoder(encoder)
    population = tune_reference  # a bucket is tuned on a subset; degeneracy is judged on all of it
    if artifact.get("length_bucket"):
        calib_array, tune_array, tune_reference = _bucket_view(artifact, calib_array, tune_array, tune_reference)

    # A masked tower's short-query encoder has no mask input: it is calibrated, like it runs, on real tokens only.
    cut = bool(artifact.get("dynamic_length")) and len(input_names) == 1 and masked

    kind = RECIPES[precision]["kind"]
    prepared, peaks = None, None
    if kind in ("dynamic", "weight_only", "per_token"):
        import onnx

        from .weight_prep import gemm_to_matmul

        prepared = onnx.load(str(named))
        gemm_to_matmul(prepared)
        if kind == "per_token":  # the float model's activations: probed once, smoothed from by every attempt
            from .smoothing import linear_peaks

            peaks = linear_peaks(prepared, ArrayReader(input_names, calib_array, cut=cut))

    def attempt(keep_float):
        with quiet_root_logger():
            recipe = quantize_onnx(
                named,
                dst,
                precision,
                ArrayReader(input_names, calib_array, cut=cut),
                tuple(keep_float),
                activation_peaks=peaks,
            )
        as_run = {**artifact, "recipe": recipe}  # tuned as the query path will run it (cut, optimization level)
        embeds = artifact_embed(dst, as_run, tune_array)
        return recipe, tuning_step(encoder, embeds, tune_reference, gate, keep_float, population)

    recipe, step = attempt([])
    steps, damage = [step], []
    if kind == "static":
        say(f"localising quantization error in {_stem(artifact)}.{precision}")
        damage = node_damage(
            named, dst, input_names, calib_array[:DAMAGE_SAMPLES], tuple(RECIPES[precision]["op_types"]), cut=cut
        )
    elif prepared is not None:
        from .weight_prep import weight_damage

        if kind == "per_token":  # activation error dominates: simulate each smoothed layer on real inputs
            from .per_token import per_token_damage
            from .smoothing import smooth_linears

            protected = tuple(mask_consumers(prepared))
            smooth_linears(prepared, None, RECIPES[precision]["smooth_alpha"], protected, peaks=peaks)
            damage = per_token_damage(
                prepared, ArrayReader(input_names, calib_array[:DAMAGE_SAMPLES], cut=cut), protected
            )
        else:
            damage = weight_damage(prepared, RECIPES[precision].get("bits", 8), RECIPES[precision].get("block_size"))
    if auto and not step["passed"] and damage:
        import onnx

        protected = set(mask_consumers(onnx.load(str(named))))
        candidates = [d["node"] for d in damage if d["node"] not in protected]
        recipe, steps, _ = _auto_mixed_precision(attempt, step, candidates, say, f"{_stem(artifact)}.{precision}")
    return _record(artifact, precision, stage, filename, recipe, steps, damage, auto)


def _quantize_tflite(artifact, source: Path, precision, stage, calib, tune, tune_reference, auto, gate, say) -> dict:
    encoder = artifact["encoder"]
    filename = f"{TFLITE_DIR}/{TFLITE_STEMS[artifact['path']]}.{precision}.tflite"
    dst = stage / filename
    dst.parent.mkdir(parents=True, exist_ok=True)
    label = f"{_stem(artifact)}.{precision}"

    def attempt(keep_float, want_damage=False):
        with tempfile.TemporaryDirectory() as tmp:
            details_file = Path(tmp) / "details.json"
            run_isolated(
                quantize_tflite_in_process,
                {
                    "model": str(source),
                    "out": str(dst),
                    "precision": precision,
                    "input_names": [i["name"] for i in artifact["inputs"]],
                    "damage": str(details_file),
                    "keep_float": list(keep_float),
                    "want_damage": want_damage,
                },
                {"calib": calib.for_encoder(encoder)},
                what=f"ai-edge-quantizer ({label})",
            )
            details = json.loads(details_file.read_text())
        try:
            embeds = run_isolated(
                tflite_embed_in_process,
                {"model": str(dst)},
                {"x": tune.for_encoder(encoder)},
                what=f"LiteRT running {filename}",
            )["embeds"]
        except ToolCrashError as e:
            # A variant LiteRT cannot run is rejected with the reason; the other variants of the run still count.
            embeds, crash = None, str(e)
        recipe = {
            **details["recipe"],
            "precision": precision,
            "mask_nodes_protected": details["mask_ops_protected"],
            "constant_lhs_matmuls_float": details["constant_lhs_matmuls_float"],
            "kept_float": list(keep_float),
            "op_types": list(STATIC_OPS) if details["recipe"]["kind"] == "static" else "all",
        }
        damage = [
            {"node": d["tensor"], "op_type": "tensor", "sqnr_db": d["snr_db"], "worst_tensor": d["tensor"]}
            for d in details["layer_damage_top"]
        ]
        if embeds is None:
            return recipe, {"kept_float": list(keep_float), "passed": False, "crashed": True, "misses": [crash]}, damage
        return recipe, tuning_step(encoder, embeds, tune_reference, gate, keep_float), damage

    recipe, step, damage = attempt([], want_damage=True)
    steps = [step]
    if auto and not step["passed"] and damage and not step.get("crashed"):
        recipe, steps, _ = _auto_mixed_precision(
            lambda keep: attempt(keep)[:2], step, [d["node"] for d in damage], say, label
        )
    return _record(artifact, precision, stage, filename, recipe, steps, damage, auto)
