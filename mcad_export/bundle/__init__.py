"""`mcad-export bundle DIR --app android_demo [--target T]`: what the Android demo loads, in its assets.

Writes app/src/main/assets/mcad/: the text encoder for the target (and the image encoder on
request), the tokenizer, the gallery index, thumbnails named by index row, and bundle.json (the
app's manifest: files with sha256 and size, preprocessing, which runtime and accelerator to use and
why). Rules: every source must lie inside the export and every destination inside assets/mcad
with a plain name; files mcad-export did not write are never overwritten or deleted (bundle.json
lists what it wrote, so a rerun removes only its own leftovers); unchanged files are not rewritten,
so a second run changes nothing. The bundle's resident estimate is checked against the budget.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .. import confined
from ..atomic import locks_folder
from ..bench.common import query_texts
from ..contract import INDEX_DIR, INDEX_EMBEDDINGS, INDEX_META, INDEX_PATHS, TOKENIZER_DIR
from ..defaults import BUDGET_MB
from ..deployable import latest_records, require, verdict
from ..errors import BudgetMissError, InputError
from ..guard import file_digest, inside, is_safe_relpath, verified, verified_files
from ..manifest import read_manifest
from ..runtime.encoders import feed_options
from ..runtime.index import GalleryIndex
from ..runtime.search import check_index_matches

ASSETS = Path("app/src/main/assets/mcad")
BUNDLE_MANIFEST = "bundle.json"
BUNDLE_FORMAT = "mcad-bundle/1"

# Which runtime the app uses for each kind of artifact, and why (shown in bundle.json and docs/android.md).
RUNTIMES = {
    "onnx": (
        "onnxruntime",
        "CPU",
        "ONNX Runtime Android runs the INT8 ONNX file the fidelity gate checked, on the CPU",
    ),
    "tflite": ("litert", "CPU", "LiteRT (XNNPACK) runs the TFLite file bench chose as fastest, on the CPU"),
    "onnx-qnn-context": (
        "onnxruntime",
        "QNN-HTP",
        "ONNX Runtime's QNN execution provider loads the HTP context "
        "binary embedded in this ONNX file: the Snapdragon NPU, no CPU ops",
    ),
    "tflite-npu": (
        "litert",
        "NPU",
        "LiteRT's compiled model runs the vendor-compiled TFLite on the NPU "
        "(NeuroPilot on Dimensity, QNN on Snapdragon)",
    ),
    "aihub-tflite": (
        "litert",
        "NPU",
        "AI Hub compiled this TFLite for the device; LiteRT with the QNN delegate runs it on the Hexagon NPU",
    ),
    "aihub-onnx": ("onnxruntime", "QNN-HTP", "AI Hub compiled this ONNX for ONNX Runtime's QNN execution provider"),
}


def safe_name(relpath: str) -> str:
    if not is_safe_relpath(relpath):
        raise InputError(f"refusing unsafe bundle file name {relpath!r} (plain relative names only, no '..')")
    return relpath


def _checked(root: Path, record: dict) -> Path:
    """A source file inside the export whose bytes match the digest its record lists (guard.verified)."""
    return verified(root, record, "bundled file").resolve()


def choose_encoder(manifest: dict, root: Path, target: str | None, encoder: str) -> dict:
    """The artifact the app runs for this target: bench's choice (its `deployment`), else the first of w8a8 / fp32
    ONNX the gate passed. Whether it may deploy is deployable.require's to say (bundle calls it)."""
    artifacts = [a for a in manifest["artifacts"] if a["encoder"] == encoder]
    if target in (None, "cpu"):
        chosen_path = (manifest.get("deployment") or {}).get(f"{encoder}_encoder")
        pool = [
            a
            for a in artifacts
            if a["format"] in ("onnx", "tflite") and "target" not in a and not a.get("length_bucket")
        ]
        records = latest_records(root)
        passing = [a for a in pool if verdict(a, records)[0]]
        chosen = (
            next((a for a in pool if a["path"] == chosen_path), None)
            or next((a for a in passing if a["format"] == "onnx" and a["precision"] == "w8a8"), None)
            or next((a for a in passing if a["format"] == "onnx" and a["precision"] == "fp32"), None)
            or next((a for a in pool if a["format"] == "onnx" and a["precision"] == "fp32"), None)
        )
        if chosen is None:
            raise InputError(f"{root} has no {encoder} encoder for the CPU; re-export the folder")
    else:
        from ..compile.targets import resolve

        resolved = resolve(target)
        compiled = [a for a in artifacts if a.get("target") == resolved.id]
        if not compiled:
            raise InputError(
                f"{root} has no {encoder} encoder compiled for {resolved.id}: run `mcad-export compile "
                f"{root} --target {resolved.id}` first"
                + (" (LiteRT NPU compile needs the vendor SDK)" if resolved.backend.startswith("litert") else "")
            )
        chosen = next(a for a in compiled if not a.get("length_bucket"))
        if chosen["format"] not in RUNTIMES:
            raise InputError(
                f"the demo app cannot load {chosen['format']} ({chosen['path']}); compile with "
                "--aihub-runtime tflite or onnx"
            )
    return chosen


def length_buckets(manifest: dict, root: Path, chosen: dict) -> list[dict]:
    """The static length buckets compiled beside the chosen text encoder for its target, shortest first."""
    if "target" not in chosen:
        return []  # CPU targets run the short-query encoder (or the full one): no buckets
    buckets = sorted(
        (
            a
            for a in manifest["artifacts"]
            if a.get("target") == chosen["target"] and a["encoder"] == "text" and a.get("length_bucket")
        ),
        key=lambda a: a["length_bucket"]["tokens"],
    )
    return buckets


@locks_folder("bundle")
def bundle(
    directory,
    app,
    *,
    target: str | None = None,
    with_image_encoder: bool = False,
    budget_mb: float = BUDGET_MB,
    allow_over_budget: bool = False,
    thumb_size: int = 128,
    allow_ungated: bool = False,
    progress=None,
) -> dict:
    say = progress or (lambda message: None)
    root, app = Path(directory), Path(app)
    if not (app / "app" / "src" / "main").is_dir():
        raise InputError(f"{app} is not the Android demo (no app/src/main); use --app android_demo from the repo")
    manifest = read_manifest(root)
    assets = app / ASSETS
    if os.path.lexists(assets):
        confined.real_dir(app, ASSETS)  # every folder on the way a real one, no link
        confined.audit_tree(assets)  # mcad-export owns assets/mcad whole: no link or hard link below it
    previous = _previous_files(app)

    files: dict[str, bytes | Path] = {}
    encoders = {}
    for encoder in ("text", "image") if with_image_encoder else ("text",):
        artifact = choose_encoder(manifest, root, target, encoder)
        gate = require(root, artifact, allow_ungated=allow_ungated)
        name = safe_name(f"models/{encoder}_encoder{_suffix(artifact['path'])}")
        files[name] = _checked(root, artifact)
        if artifact.get("external_data"):  # ORT finds weights by the file name stored in the model
            data = artifact["external_data"]
            files[safe_name(f"models/{Path(data['path']).name}")] = _checked(root, data)
        runtime, accelerator, why = RUNTIMES[artifact["format"]]
        encoders[encoder] = {
            "file": name,
            "source": artifact["path"],
            "format": artifact["format"],
            "precision": artifact["precision"],
            "runtime": runtime,
            "accelerator": accelerator,
            "why": why,
            "inputs": artifact["inputs"],
            "outputs": artifact["outputs"],
            "gate": gate,
            # the short-query encoder of a causal student: feed ids up to and including EOT
            "dynamic_length": feed_options(artifact)["cut_after_eot"],
        }
        if encoder == "text":
            # Static NPU graphs: the app runs a query on the shortest bucket holding it up to EOT, else on `file`.
            encoders[encoder]["length_buckets"] = []
            if artifact.get("host_gather"):
                encoders[encoder]["host_gather"] = _host_table(root, artifact, files)
            for bucket in length_buckets(manifest, root, artifact):
                if (bucket.get("files") or {}).get("token_table") != (artifact.get("files") or {}).get("token_table"):
                    raise InputError(
                        f"{bucket['path']} does not share {artifact['path']}'s host token table; recompile "
                        f"{root} for {artifact['target']}"
                    )
                bucket_gate = require(root, bucket, allow_ungated=allow_ungated)
                tokens = bucket["length_bucket"]["tokens"]
                bucket_name = safe_name(f"models/text_encoder.len{tokens}{_suffix(artifact['path'])}")
                files[bucket_name] = _checked(root, bucket)
                encoders[encoder]["length_buckets"].append(
                    {"tokens": tokens, "file": bucket_name, "source": bucket["path"], "gate": bucket_gate}
                )
    for f in verified_files(root, manifest, TOKENIZER_DIR):
        files[safe_name(f"tokenizer/{f.name}")] = f.resolve()
    index = GalleryIndex.load(root / INDEX_DIR)  # checks every index file against index.json's digests
    check_index_matches(manifest, index.meta, root)
    for name in (INDEX_META, INDEX_PATHS, INDEX_EMBEDDINGS):
        files[safe_name(f"index/{name}")] = inside(root, f"{INDEX_DIR}/{name}", "index file").resolve()
    thumbs = _thumbnails(root, index, thumb_size, say)
    files.update(thumbs)

    sizes = {name: (len(v) if isinstance(v, bytes) else v.stat().st_size) for name, v in files.items()}
    model_files = [f for e in encoders.values() for f in [e["file"], *(b["file"] for b in e.get("length_buckets", []))]]
    host = encoders["text"].get("host_gather")
    # A host token table is memory-mapped: what a query makes resident is its rows (at most the context's), not
    # the file; the file's size is listed beside the estimate.
    table_resident = host["resident_bytes_per_query"] if host else 0
    resident = (
        sum(sizes[f] for f in model_files)
        + sizes[f"index/{INDEX_EMBEDDINGS}"]
        + sum(s for n, s in sizes.items() if n.startswith("tokenizer/"))
        + table_resident
    ) / 2**20
    budget = {
        "resident_estimate_mb": round(resident, 2),
        "budget_mb": budget_mb,
        "passed": resident <= budget_mb,
        "counted": "encoder files (length buckets included) + index embeddings + tokenizer (loaded at start)"
        + (" + the host token table's rows one query reads (the table is memory-mapped)" if host else "")
        + "; runtime libraries excluded",
        **({"host_token_table_mapped_mb": round(host["bytes"] / 2**20, 2)} if host else {}),
    }
    if not budget["passed"] and not allow_over_budget:
        raise BudgetMissError(
            f"the bundle would hold {resident:.1f} MB resident (encoders, index, tokenizer), over the "
            f"{budget_mb:g} MB budget; use a smaller index kind or precision, or --allow-over-budget"
        )

    # Each digest once: what this bundle writes, and what the assets hold now where a file is there.
    wanted = {n: _digest(v) for n, v in files.items()}
    current = {n: _digest(assets / n) for n in files if os.path.lexists(assets / n)}
    # A file is overwritten only while it holds what the last bundle recorded (or already what this one writes).
    foreign = [n for n, digest in current.items() if digest not in (previous.get(n), wanted[n])]
    if foreign:
        raise InputError(
            f"{assets / foreign[0]} exists and was not written by mcad-export (or was changed since); move it away "
            f"({len(foreign)} such file(s)); nothing was changed"
        )
    written = 0
    records = []
    for name in sorted(files):
        if current.get(name) != wanted[name]:
            data = files[name] if isinstance(files[name], bytes) else files[name].read_bytes()
            confined.write_bytes(app, ASSETS / name, data)
            written += 1
        records.append({"path": name, "sha256": wanted[name], "size_bytes": sizes[name]})
    # Only files an earlier bundle wrote, and only while their bytes are still the ones it recorded.
    for stale in sorted(set(previous) - set(files)):
        confined.remove_file(app, ASSETS / stale, previous[stale])

    document = {
        "format": BUNDLE_FORMAT,
        "student": manifest["student"]["id"],
        "target": target or "cpu",
        "embed_dim": manifest["embed_dim"],
        "encoders": encoders,
        "image": manifest["image"],
        "text": manifest["text"],
        "tokenizer_dir": "tokenizer",
        "index_dir": "index",
        "index": {k: index.meta.get(k) for k in ("kind", "count", "dim")},
        "thumbnails": {
            "dir": "thumbs",
            "count": len(thumbs),
            "size": thumb_size,
            "name": "thumbs/<row>.jpg, row = line of index/paths.txt (0-based, 6 digits)",
        },
        "budget": budget,
        # The app's benchmark mode (`adb shell am start -n ai.mcad.demo/.MainActivity --ez bench true`) runs these,
        # the queries `mcad-export bench` times on the host, and writes device-bench.json (report --device-bench).
        "bench": {"queries": query_texts(manifest), "warmup": 3, "repeats": 5},
        "files": records,
    }
    text = json.dumps(document, indent=1, sort_keys=True) + "\n"
    if not ((assets / BUNDLE_MANIFEST).is_file() and (assets / BUNDLE_MANIFEST).read_text() == text):
        confined.write_text(app, ASSETS / BUNDLE_MANIFEST, text)
        written += 1
    say(f"bundle: {len(records)} files in {assets} ({written} written, {len(records) + 1 - written} unchanged)")
    return {**document, "assets": str(assets), "written": written}


def _host_table(root: Path, artifact: dict, files: dict) -> dict:
    """The text graph starts at the embeddings (compile/host_gather.py): its int8 rows and per-row scales go beside
    it, and bundle.json tells the app to feed `token_embeds` from them (ai.mcad.core.HostTokenTable)."""
    host, names = artifact["host_gather"], {}
    for key in ("token_table", "token_scales"):
        record = artifact["files"][key]
        names[key] = safe_name(f"models/{Path(record['path']).name}")
        files[names[key]] = _checked(root, record)
    context = artifact["inputs"][0]["shape"][1]
    return {
        "input": host["input"],
        "rows": host["rows"],
        "width": host["width"],
        "rows_file": names["token_table"],
        "scales_file": names["token_scales"],
        "bytes": host["bytes"],
        "resident_bytes_per_query": int(context * (host["width"] + 4)),
    }


def _suffix(path: str) -> str:
    name = Path(path).name
    return name[name.index(".") :] if "." in name else ""


def _previous_files(app: Path) -> dict[str, str]:
    """What the last bundle wrote (bundle.json's files): name -> the sha256 it recorded."""
    path = app / ASSETS / BUNDLE_MANIFEST
    if not os.path.lexists(path):
        return {}
    try:
        data = json.loads(confined.checked_file(app, ASSETS / BUNDLE_MANIFEST).read_text())
        return {safe_name(f["path"]): str(f["sha256"]) for f in data["files"]}
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path} is not a bundle manifest mcad-export wrote ({e}); move it away") from None


def _digest(value: bytes | Path) -> str:
    return hashlib.sha256(value).hexdigest() if isinstance(value, bytes) else file_digest(value)


def _thumbnails(root: Path, index, size: int, say) -> dict[str, bytes]:
    """JPEG thumbnails named by index row (user file names never become bundle names), upright as indexed."""
    import io

    from ..runtime.images import UnreadableImage, read_image

    out, missing = {}, 0
    for row in range(len(index)):
        try:
            im = read_image(Path(index.path_of(row)), draft_to=2 * size)
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85, optimize=True)
        except (UnreadableImage, OSError):
            missing += 1
            continue
        out[f"thumbs/{row:06d}.jpg"] = buf.getvalue()
    if missing:
        say(f"bundle: {missing} gallery image(s) could not be read; their rows have no thumbnail")
    return out


__all__ = ["ASSETS", "BUNDLE_MANIFEST", "bundle", "choose_encoder", "length_buckets", "safe_name"]
