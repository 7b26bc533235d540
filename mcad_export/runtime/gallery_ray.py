"""`index --engine ray`: the gallery embedded on a Ray cluster with Ray Data, resumable by shard.

The file list (index order, gallery.image_sources) is cut into shards of `shard_size` paths. Ray Data reads the
shard list (paths only: workers open the images themselves, so they must reach them), and `map_batches` runs a
fixed pool of actors, each holding one ONNX Runtime session of the image encoder with `intra_op_num_threads`
set to its CPU share; an actor decodes, preprocesses and embeds each shard with the very function the local
engine uses (runtime/embedding.embed_files), so rows, order and the skip list are the local engine's. The driver writes
each shard to DIR/index_shards/<job>/shard-<i>.npz atomically as it streams in; a rerun of the same job (same
files, encoder and preprocessing) computes only the shards that are missing. An actor that dies is restarted
and its shard retried by Ray. Ray is imported only here (the `ray` extra).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..contract import INDEX_SHARDS_DIR
from ..errors import InputError

DEFAULT_SHARD_SIZE = 128


def job_key(files: list[Path], encoder_sha256: str, spec: dict, shard_size: int) -> str:
    blob = json.dumps([[str(f) for f in files], encoder_sha256, spec, shard_size], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}.npz"


SHARD_DIGESTS = "digests.json"  # shard file name -> sha256, written as each shard is saved


def _reusable(root: Path, rel: Path, digests: dict, count: int) -> set[int]:
    """Shards a rerun may reuse: a regular file in the job folder whose bytes match the digest recorded when it
    was saved (a shard edited, replaced or linked since is computed again)."""
    from .. import confined
    from ..guard import sha256_of

    ok = set()
    for i in range(count):
        try:
            path = confined.checked_file(root, rel / _shard_name(i), single_link=True)
        except (OSError, InputError):
            continue
        if isinstance(digests.get(_shard_name(i)), str) and sha256_of(path) == digests[_shard_name(i)]:
            ok.add(i)
    return ok


def _read_digests(root: Path, rel: Path) -> dict:
    from .. import confined

    try:
        data = json.loads(confined.checked_file(root, rel / SHARD_DIGESTS, single_link=True).read_text("utf-8"))
    except (OSError, ValueError, InputError):
        return {}
    return data if isinstance(data, dict) else {}


def _load_shard(path: Path, blob: bytes, files: list[Path], folder: Path) -> tuple[np.ndarray | None, list[str], list]:
    """A shard's rows, names and skips from its checked bytes, refused unless they describe exactly this shard's
    files."""
    import io

    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            rows, names, skipped = data["rows"], [str(n) for n in data["names"]], json.loads(str(data["skipped"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path} is not a shard mcad-export wrote ({e}); delete it and rerun `index`") from None
    expected = {Path(f).relative_to(folder).as_posix() for f in files}
    skipped_paths = (
        [s.get("path") for s in skipped]
        if isinstance(skipped, list) and all(isinstance(s, dict) for s in skipped)
        else None
    )
    fits = (
        rows.dtype == np.float32
        and rows.ndim == 2
        and len(rows) == len(names)
        and set(names) <= expected
        and skipped_paths is not None
        and len(names) + len(skipped_paths) == len(files)
    )
    if not fits:
        raise InputError(f"{path} does not describe its shard's images; delete it and rerun `index`")
    return (rows if len(names) else None), names, skipped


class ShardEmbedder:
    """A Ray Data actor: one ONNX Runtime session, reused for every shard the pool hands it."""

    def __init__(self, model, threads: int, spec: dict, root: str, batch: int, optimization: str):
        import ray

        from .encoders import open_encoder

        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        self.embed = open_encoder(model, "onnxruntime", threads, optimization)
        self.spec, self.root, self.batch = spec, Path(root), batch

    def __call__(self, batch: dict) -> dict:
        import time

        from .embedding import embed_files

        out: dict[str, list] = {
            "shard": [],
            "rows": [],
            "dim": [],
            "names": [],
            "skipped": [],
            "pid": [],
            "rss": [],
            "seconds": [],
        }
        for shard, paths in zip(batch["shard"], batch["paths"]):
            started = time.perf_counter()
            files = [Path(p) for p in json.loads(paths)]
            parts, names, skipped = [], [], []
            for start in range(0, len(files), self.batch):
                rows, kept, bad = embed_files(self.embed, files[start : start + self.batch], self.root, self.spec)
                if kept:
                    parts.append(rows)
                names += kept
                skipped += bad
            vectors = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
            out["shard"].append(int(shard))
            out["rows"].append(vectors.tobytes())
            out["dim"].append(int(vectors.shape[1]) if vectors.size else 0)
            out["names"].append(json.dumps(names))
            out["skipped"].append(json.dumps(skipped))
            out["pid"].append(os.getpid())
            out["rss"].append(_peak_rss_mb())
            out["seconds"].append(time.perf_counter() - started)
        return {k: np.array(v, dtype=object) for k, v in out.items()}


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def _connect(options: dict, workers: int, cpus: int):
    """Joins the cluster at `address`, or starts a local one sized for the pool. Returns whether we started it."""
    import ray

    if ray.is_initialized():
        return False
    package_parent = str(Path(__file__).resolve().parents[2])
    if options.get("address"):
        # A remote cluster gets this package uploaded (its dependencies must be installed on the workers).
        remote_env: dict = {"py_modules": [str(Path(__file__).resolve().parents[1])]}
        ray.init(address=options["address"], runtime_env=remote_env, log_to_driver=False)
    else:
        # Workers import the package the driver runs (a checkout or an install), not whatever else is on the path.
        path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
        local_env: dict = {"env_vars": {"PYTHONPATH": path}}
        ray.init(num_cpus=workers * cpus, include_dashboard=False, log_to_driver=False, runtime_env=local_env)
    return True


def embed_on_ray(
    root: Path,
    model: Path,
    encoder: dict,
    files: list[Path],
    folder: Path,
    spec: dict,
    batch: int,
    options: dict,
    progress=None,
):
    """(vectors, kept names, skipped, engine record), exactly as the local engine would give them."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise InputError(
            "--engine ray needs Ray: pip install 'mcad-export[ray]' (scripts/setup.sh installs it)"
        ) from None
    workers, cpus = int(options.get("workers") or 1), int(options.get("cpus_per_worker") or 1)
    shard_size = int(options.get("shard_size") or DEFAULT_SHARD_SIZE)
    if workers < 1 or cpus < 1 or shard_size < 1:
        raise InputError(
            f"--workers, CPUs per worker and the shard size must be positive, got {workers}/{cpus}/{shard_size}"
        )
    if encoder.get("external_data"):
        raise InputError(f"{encoder['path']} keeps its weights in a separate file; index on Ray with the fp32 encoder")
    shards = [files[i : i + shard_size] for i in range(0, len(files), shard_size)]
    key = job_key(files, encoder["sha256"], spec, shard_size)
    from .. import confined

    rel = Path(INDEX_SHARDS_DIR) / key
    confined.real_dir(root, rel, create=True)
    digests = _read_digests(root, rel)
    reused = _reusable(root, rel, digests, len(shards))
    todo = [i for i in range(len(shards)) if i not in reused]
    done_images = sum(len(shards[i]) for i in reused)
    if progress:
        progress(done_images, len(files))
    workers_seen: dict[int, float] = {}
    busy_s, computed_images = 0.0, 0
    started = False
    if todo:
        started = _connect(options, workers, cpus)
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # the driver's own progress line reports shards
            model_ref = ray.put(Path(model).read_bytes())
            items = [{"shard": i, "paths": json.dumps([str(p) for p in shards[i]])} for i in todo]
            from .encoders import ort_optimization

            dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                ShardEmbedder,
                fn_constructor_kwargs={
                    "model": model_ref,
                    "threads": cpus,
                    "spec": spec,
                    "root": str(folder),
                    "batch": batch,
                    "optimization": ort_optimization(encoder),
                },
                batch_size=1,
                batch_format="numpy",
                concurrency=workers,
                num_cpus=cpus,
                # A dead actor is restarted and its shard retried: Ray Data's actor pool defaults to
                # max_restarts=-1 / max_task_retries=-1 (actor_pool_map_operator.py); passing them is deprecated.
            )
            for row in dataset.iter_rows():
                i = int(row["shard"])
                dim = int(row["dim"])
                rows = np.frombuffer(row["rows"], np.float32).reshape(-1, dim) if dim else np.zeros((0, 0), np.float32)
                import io

                buffer = io.BytesIO()
                np.savez(
                    buffer,
                    rows=rows,
                    names=np.array(json.loads(row["names"]), dtype=str),
                    skipped=np.array(row["skipped"]),
                )
                data = buffer.getvalue()
                confined.write_bytes(root, rel / _shard_name(i), data)
                digests[_shard_name(i)] = hashlib.sha256(data).hexdigest()
                confined.write_text(root, rel / SHARD_DIGESTS, json.dumps(digests, indent=1, sort_keys=True))
                workers_seen[int(row["pid"])] = max(workers_seen.get(int(row["pid"]), 0.0), float(row["rss"]))
                done_images += len(shards[i])
                busy_s += float(row["seconds"])
                computed_images += len(shards[i])
                if progress:
                    progress(done_images, len(files))
        finally:
            if started:
                ray.shutdown()
    parts, kept, skipped = [], [], []
    for i in range(len(shards)):
        path = confined.checked_file(root, rel / _shard_name(i), single_link=True)
        blob = path.read_bytes()  # read once: the bytes checked are the bytes loaded
        if hashlib.sha256(blob).hexdigest() != digests.get(_shard_name(i)):
            raise InputError(f"{path} changed while the index was built; rerun `index`")
        shard_rows, names, bad = _load_shard(path, blob, shards[i], folder)
        if shard_rows is not None:
            parts.append(shard_rows)
        kept += names
        skipped += bad
    record = {
        "name": "ray",
        "address": options.get("address") or "local (started for this job)",
        "workers": workers,
        "cpus_per_worker": cpus,
        "shard_size": shard_size,
        "shards": len(shards),
        "computed": len(todo),
        "reused": len(reused),
        "shard_dir": f"{INDEX_SHARDS_DIR}/{key}",
        "peak_rss_mb_per_worker": sorted(workers_seen.values(), reverse=True),
        # decode + preprocess + embed inside the actors, without start-up and scheduling: the rate to scale by
        "images_per_worker_busy_s": round(computed_images / busy_s, 1) if busy_s else None,
    }
    return (np.concatenate(parts) if parts else None), kept, skipped, record
