"""`index --engine ray` on a real local Ray cluster (2 CPUs, started here) against the local engine."""

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from PIL import Image

from mcad_export.contract import INDEX_DIR
from mcad_export.runtime.gallery import build_gallery_index

from .conftest import REPO

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}}
    )
    yield
    ray.shutdown()


def _mixed_images(export, tmp_path):
    """A list file: 300 of the held-out scenes plus odd sizes and colour modes, two unreadable files and one too
    large to decode."""
    extra = tmp_path / "extra"
    extra.mkdir()
    rng = np.random.default_rng(0)
    modes = {"L": (), "RGBA": (4,), "P": (), "RGB": (3,), "I;16": ()}
    for i, (mode, tail) in enumerate(modes.items()):
        size = (31 + 17 * i, 90 - 11 * i)
        if mode == "I;16":
            image = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
        elif mode == "P":
            image = Image.fromarray(rng.integers(0, 255, size[::-1], dtype=np.uint8)).convert("P")
        else:
            image = Image.fromarray(rng.integers(0, 255, (*size[::-1], *tail), dtype=np.uint8), mode)
        image.save(extra / f"mode_{i}_{mode.replace(';', '')}.png")
    (extra / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.new("1", (20000, 20000)).save(extra / "bomb.png")  # 400 M pixels declared: too large, skipped
    (extra / "empty.jpg").write_bytes(b"")
    scenes = sorted((export / "gallery").glob("*.png"))[:300]
    listing = tmp_path / "images.txt"
    lines = [str(p) for p in scenes] + [str(p) for p in sorted(extra.iterdir())] + ["# comments and blanks", ""]
    listing.write_text("\n".join(lines) + "\n")
    return listing


def _index(export):
    meta = json.loads((export / INDEX_DIR / "index.json").read_text())
    rows = np.load(export / INDEX_DIR / "embeddings.f32.npy")
    paths = (export / INDEX_DIR / "paths.txt").read_text().splitlines()
    return meta, rows, paths


@pytest.mark.e2e
def test_ray_engine_gives_the_local_engine_rows_order_and_skips(scratch_export, tmp_path, cluster):
    listing = _mixed_images(scratch_export, tmp_path)
    local = build_gallery_index(scratch_export, listing)
    local_meta, local_rows, local_paths = _index(scratch_export)
    assert local["count"] == 305 and local["skipped"] == 3 and len(local_paths) == 305
    assert any("too large" in f["reason"] for f in local_meta["skipped_files"])

    on_ray = build_gallery_index(scratch_export, listing, engine="ray", engine_options={"workers": 2, "shard_size": 40})
    meta, rows, paths = _index(scratch_export)
    assert paths == local_paths and on_ray["count"] == local["count"]
    assert meta["skipped"] == local_meta["skipped"] and meta["skipped_files"] == local_meta["skipped_files"]
    cosine = (rows * local_rows).sum(1) / np.linalg.norm(rows, axis=1) / np.linalg.norm(local_rows, axis=1)
    assert cosine.min() >= 0.99999, cosine.min()
    engine = meta["engine"]
    assert engine["name"] == "ray" and engine["shards"] == 8 and engine["computed"] == 8 and engine["reused"] == 0
    assert 1 <= len(engine["peak_rss_mb_per_worker"]) <= 2 and min(engine["peak_rss_mb_per_worker"]) > 50

    # Resumable by shard: with two shards gone (a job killed before writing them), only those two are computed.
    shard_dir = scratch_export / engine["shard_dir"]
    for name in ("shard-00002.npz", "shard-00006.npz"):
        (shard_dir / name).unlink()
    build_gallery_index(scratch_export, listing, engine="ray", engine_options={"workers": 2, "shard_size": 40})
    meta, again, again_paths = _index(scratch_export)
    assert meta["engine"]["computed"] == 2 and meta["engine"]["reused"] == 6
    assert again_paths == local_paths and np.abs(again - rows).max() < 1e-5


def _actor_pids(name: str) -> list[int]:
    """Ray titles an actor's process `ray::<Actor class>...`: found from /proc (the state API needs the dashboard)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if name.encode() in f.read() and int(entry) != os.getpid():
                        pids.append(int(entry))
            except OSError:
                continue
    return sorted(pids)


@pytest.mark.e2e
def test_a_worker_killed_mid_job_and_the_job_finishing(scratch_export, cluster):
    result, errors = {}, []

    def job():
        try:
            result["meta"] = build_gallery_index(
                scratch_export,
                scratch_export / "gallery",
                engine="ray",
                engine_options={"workers": 2, "shard_size": 25},
            )
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    thread = threading.Thread(target=job)
    thread.start()
    killed = None
    deadline = time.time() + 120
    while time.time() < deadline and thread.is_alive() and killed is None:
        shards = list((scratch_export / "index_shards").glob("*/shard-*.npz"))
        if len(shards) >= 2:  # the pool is up and working: kill one of its actors mid-job
            actors = _actor_pids("ShardEmbedder")
            if actors:
                killed = actors[0]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    thread.join(timeout=300)
    assert killed is not None, "the job ended before a worker could be killed"
    assert not errors, errors
    meta, rows, paths = _index(scratch_export)
    assert result["meta"]["count"] == 1000 and len(paths) == 1000 and meta["engine"]["shards"] == 40
    assert np.isfinite(rows).all()
    reference = np.load(scratch_export / "reference" / "eval_embeddings.npz")["image_embeds"]
    # The held-out gallery is the evaluation set: rows equal the export's reference embeddings.
    assert ((rows * reference).sum(1)).min() > 0.9999
