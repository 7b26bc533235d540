"""Performance levers: the short-query text encoder, pread re-ranking, compact paths, the tokenizer's cost."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from mcad_export.runtime.encoders import onnx_session, open_encoder
from mcad_export.runtime.index import GalleryIndex, LazyPaths, synthetic_gallery
from mcad_export.runtime.tokenizer import Tokenizer

from .conftest import run_cli


def test_short_query_encoder_is_exact_and_used(embedded_run):
    out = embedded_run[0]
    manifest = json.loads((out / "manifest.json").read_text())
    dyn = next(a for a in manifest["artifacts"] if a["path"] == "text_encoder.dyn.onnx")
    parity = dyn["dynamic_length"]["parity"]
    assert dyn["dynamic_length"]["exact"] and parity["cosine_min"] >= 0.9999 and parity["samples"] == 1000
    assert parity["mean_tokens"] < 30 and dyn["inputs"][0]["shape"] == [1, "tokens"]
    assert (out / dyn["external_data"]["path"]).stat().st_size > 0.8 * 19e6  # weights mapped from the side file
    assert (out / dyn["path"]).stat().st_size < 200_000
    quantized = [a for a in manifest["artifacts"] if a.get("source") == "text_encoder.dyn.onnx"]
    assert {a["precision"] for a in quantized} >= {"w8a8", "dynamic"} and all(a["dynamic_length"] for a in quantized)
    # A causal student's one-query encoder is cut after EOT: a static TFLite twin would compute all 77 positions.
    assert "tflite" not in manifest["text"]["short_query"] and not any(
        a["path"].startswith("tflite/text_encoder.dyn.") for a in manifest["artifacts"]
    )

    # Independently of the toolkit's runner: real tokens only vs the full-length contract model, same numbers.
    tok = Tokenizer.from_artifacts(out)
    ids = tok(["a red circle above a blue square", "two people riding bicycles on a sunny day", "x"])
    full = onnx_session(out / "text_encoder.onnx").run(None, {"input_ids": ids})[0]
    short = onnx_session(out / "text_encoder.dyn.onnx")
    for row, n in zip(range(3), (int(r.argmax()) + 1 for r in ids)):
        np.testing.assert_allclose(short.run(None, {"input_ids": ids[row : row + 1, :n]})[0][0], full[row], atol=2e-6)
    np.testing.assert_allclose(
        open_encoder(out / "text_encoder.dyn.onnx", "onnxruntime", dynamic_length=True)(ids), full, atol=2e-6
    )

    gate = {r["artifact"]: r for r in json.loads((out / "reports" / "fidelity.json").read_text())}
    assert gate["text_encoder.dyn.onnx"]["passed"] and gate["text_encoder.dyn.onnx"]["cosine_min"] >= 0.9999
    bench = json.loads((out / "reports" / "bench.json").read_text())
    assert bench["gallery"]["kind"] == "ivfpq" and bench["gallery"]["kind_chosen_by"].startswith("auto")
    # The budget judge sees the short-query path when it is the fastest that passes the gate.
    ranking = bench["artifacts"]["text_ranking"]
    assert bench["artifacts"]["text"]["path"] == ranking[0]["artifact"]


def test_bidirectional_text_tower_is_never_cut_and_gets_a_static_tflite_twin(tmp_path, tiny_open_clip_config):
    """No causal mask: cutting after EOT changes the embedding, so the one-query encoder ships fed whole. Fed every
    position anyway, it converts to a static TFLite twin (XNNPACK's CPU path); only the dynamic-range recipe is made
    of that, and it goes through the gate like every artifact."""
    from mcad_export.runtime.encoders import feed_options

    cfg = json.loads(tiny_open_clip_config.read_text())
    cfg["text_cfg"]["no_causal_mask"] = True
    config = tmp_path / "tiny-bidirectional.json"
    config.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    proc = run_cli("export", "--student", f"open_clip:{config}", "--random-init", "--out", out, "--samples", 16)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("short-query", out)
    assert proc.returncode == 0 and "fed every position" in proc.stdout, proc.stderr
    assert "static TFLite twin: tflite/text_encoder.dyn.tflite" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    short = manifest["text"]["short_query"]
    assert short["shipped"] and not short["exact"] and not short["cut_after_eot"]
    assert short["cut_parity"]["cosine_min"] < 0.9999 and manifest["text"]["length_buckets"] == []
    dyn = next(a for a in manifest["artifacts"] if a["path"] == "text_encoder.dyn.onnx")
    assert dyn["dynamic_length"]["parity"]["cosine_min"] >= 0.9999
    assert feed_options(dyn) == {"dynamic_length": True, "cut_after_eot": False}
    # Fed whole it equals the contract model; cut after EOT it would not.
    ids = Tokenizer.from_artifacts(out)(["a red circle", "two people riding bicycles on a sunny day"])
    full = onnx_session(out / "text_encoder.onnx").run(None, {"input_ids": ids})[0]
    np.testing.assert_allclose(
        open_encoder(out / dyn["path"], "onnxruntime", **feed_options(dyn))(ids), full, atol=2e-6
    )
    cut = open_encoder(out / dyn["path"], "onnxruntime", dynamic_length=True)(ids)
    assert float((cut[0] * full[0]).sum()) < 0.9999

    assert manifest["text"]["short_query"]["tflite"] == {"shipped": True, "artifact": "tflite/text_encoder.dyn.tflite"}
    twin = next(a for a in manifest["artifacts"] if a["path"] == "tflite/text_encoder.dyn.tflite")
    assert (
        twin["runtime"] == "litert" and twin["inputs"][0]["shape"] == [1, 77] and "axis" not in twin["dynamic_length"]
    )
    assert twin["dynamic_length"]["parity"]["cosine_min"] >= 0.9999 and not twin["dynamic_length"]["cut_after_eot"]
    np.testing.assert_allclose(open_encoder(out / twin["path"], "litert", **feed_options(twin))(ids), full, atol=1e-5)

    proc = run_cli("quantize", out, "--precision", "dynamic", "--precision", "w8a8")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    derived = {a["path"]: a for a in manifest["artifacts"] if a.get("source") == twin["path"]}
    rejected = {r["path"] for r in manifest["quantization"]["rejected"]}
    # dynamic-range only: static recipes are NPU formats, which the full-context twin gets
    assert set(derived) == {"tflite/text_encoder.dyn.dynamic.tflite"}
    assert "tflite/text_encoder.w8a8.tflite" in {a["path"] for a in manifest["artifacts"]} | rejected
    for path, artifact in derived.items():
        assert artifact["name"] == "text_encoder.dyn.tflite.dynamic" and artifact["dynamic_length"]
        proc = run_cli("verify", out, "--artifact", path)
        record = next(r for r in json.loads((out / "reports" / "fidelity.json").read_text()) if r["artifact"] == path)
        assert record["runtime"] == "litert" and record["cosine_mean"] > 0.99 and record["samples"] == 16
        assert proc.returncode == (0 if record["passed"] else 4)


def test_ivfpq_reranks_with_pread_and_paths_stay_compact(tmp_path):
    centers = np.random.default_rng(3).normal(size=(300, 64)).astype(np.float32)
    real = synthetic_gallery(20_000, 64, seed=3, real=centers / np.linalg.norm(centers, axis=1, keepdims=True))
    paths = [f"images/{i:06d}.jpg" for i in range(len(real))]
    GalleryIndex.build(real, paths, "ivfpq").save(tmp_path / "ix")
    flat = GalleryIndex.build(real, paths, "flat")
    index = GalleryIndex.load(tmp_path / "ix")
    queries = real[:50] + 0.01
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact_scores, exact_ids = flat.search(queries, 10)
    scores, ids = index.search(queries, 10)
    # Re-ranked scores are exact inner products of the rows returned.
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", real[ids], queries), atol=1e-5)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids)]) > 0.9
    assert isinstance(index.paths, LazyPaths) and index.paths[12345] == paths[12345] and len(index.paths) == 20_000
    assert index.paths[-1] == paths[-1] and index.paths[3:5] == paths[3:5]

    # Not mapped: 2,000 re-ranked queries leave the 5 MB float file out of the process's resident set.
    code = (
        "import numpy as np; from mcad_export.runtime.index import GalleryIndex; "
        f"ix = GalleryIndex.load({str(tmp_path / 'ix')!r}); q = np.load({str(tmp_path / 'q.npy')!r}); "
        "[ix.search(q[i % len(q)], 10) for i in range(2000)]; "
        "lines = open('/proc/self/smaps').read().splitlines(); inside = False; total = 0\n"
        "for line in lines:\n"
        "    if '-' in line.split(' ')[0] and len(line.split()) >= 5: inside = line.endswith('embeddings.f32.npy')\n"
        "    elif inside and line.startswith('Rss:'): total += int(line.split()[1])\n"
        "print(total)"
    )
    np.save(tmp_path / "q.npy", queries)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) < 64  # kB of the float file resident (mmap'd but never read)


def test_tokenizer_is_cheaper_than_open_clips(embedded_run):
    code = (
        "import gc; s = lambda: int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]); "
        # the folder checks' modules (guard, manifest, records: ~2.2 MB of imports every query process has anyway) are
        # loaded first, so the difference is the tokenizer's own tables
        "from mcad_export.runtime.tokenizer import Tokenizer; import mcad_export.guard, mcad_export.manifest; a = s(); "
        f"t = Tokenizer.from_artifacts({str(embedded_run[0])!r}); t('a red circle'); gc.collect(); print(s() - a)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # kB; measured 10.6 MB (2026-12-07). open_clip's tuple-keyed ranks and eager ftfy cost ~30 MB, a string-keyed
    # merge dict 14.6.
    assert int(proc.stdout.split()[-1]) < 12_000


def test_numpy_ivfpq_equals_faiss_and_needs_no_faiss(tmp_path):
    import faiss

    from mcad_export.runtime.ivfpq import NumpyIVFPQ

    centers = np.random.default_rng(5).normal(size=(200, 64)).astype(np.float32)
    gallery = synthetic_gallery(12_000, 64, seed=5, real=centers / np.linalg.norm(centers, axis=1, keepdims=True))
    GalleryIndex.build(gallery, [str(i) for i in range(len(gallery))], "ivfpq").save(tmp_path / "ix")
    index = GalleryIndex.load(tmp_path / "ix")
    assert isinstance(index.codes, NumpyIVFPQ)
    reference = faiss.read_index(str(tmp_path / "ix" / "codes.faiss"))
    faiss.extract_index_ivf(reference).nprobe = index.params["nprobe"]
    queries = np.ascontiguousarray(gallery[::600] + 0.02, dtype=np.float32)
    want_scores, want_ids = reference.search(queries, 100)
    got_scores, got_ids = index.codes.search(queries, 100)
    np.testing.assert_allclose(got_scores, want_scores, atol=1e-5)
    assert all(set(a) == set(b) for a, b in zip(got_ids, want_ids))

    code = (
        "import sys, numpy as np; from mcad_export.runtime.index import GalleryIndex; "
        f"ix = GalleryIndex.load({str(tmp_path / 'ix')!r}); ix.search(np.ones(64, np.float32) / 8, 10); "
        "print('faiss' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stdout + proc.stderr


def test_length_buckets_are_exact_and_dispatch_like_the_app(embedded_run):
    """Static-length twins for NPU targets: proved at export, and run bucket by bucket they equal the full model."""
    from mcad_export.runtime.encoders import open_bucketed, pick_bucket

    out = embedded_run[0]
    manifest = json.loads((out / "manifest.json").read_text())
    buckets = {b["tokens"]: b for b in manifest["text"]["length_buckets"]}
    assert sorted(buckets) == [16, 32]
    for tokens, b in buckets.items():
        assert b["parity"]["cosine_min"] >= 0.9999 and 0 < b["parity"]["covers"] <= 1
        session = onnx_session(out / b["path"])
        assert session.get_inputs()[0].shape == [1, tokens]  # static: what an HTP graph needs
    assert buckets[16]["parity"]["covers"] < buckets[32]["parity"]["covers"]
    # No bucket file among the host artifacts: the CPU query path runs the short-query encoder.
    assert not any(a["path"].startswith("buckets/") for a in manifest["artifacts"])

    tok = Tokenizer.from_artifacts(out)
    texts = [
        "dog",
        "a red circle above a blue square and a green triangle",
        " ".join(["a small red circle"] * 6),
        " ".join(["big blue square"] * 30),
    ]
    ids = tok(texts)
    lengths = [int(r.argmax()) + 1 for r in ids]
    assert [pick_bucket(buckets, n) for n in lengths] == [16, 16, 32, None]
    full = onnx_session(out / "text_encoder.onnx").run(None, {"input_ids": ids})[0]
    run = open_bucketed({t: out / b["path"] for t, b in buckets.items()}, out / "text_encoder.onnx")
    np.testing.assert_allclose(run(ids), full, atol=2e-6)


def test_query_forward_restatement_is_exact(tiny_open_clip_config, tmp_path):
    """QueryText (2-D, packed QKV, last block on the pooled row only) equals open_clip's encode_text: cut after
    EOT for a causal tower, at full length for a bidirectional one (which is why only the latter is refused)."""
    import open_clip
    import torch

    from mcad_export.export.rewrites import make_export_safe
    from mcad_export.export.text_forward import QueryText

    base = json.loads(tiny_open_clip_config.read_text())
    for causal in (True, False):
        cfg = json.loads(json.dumps(base))
        cfg["text_cfg"]["no_causal_mask"] = not causal
        torch.manual_seed(0)
        model = open_clip.CLIP(**cfg).eval()
        ids = open_clip.tokenize(["a red circle above a blue square", "dog"])
        with torch.no_grad():
            want = torch.nn.functional.normalize(model.encode_text(ids), dim=-1)
            make_export_safe(model)
            module = QueryText(model).eval()
            assert module.restated
            for row in range(len(ids)):
                n = int(ids[row].argmax()) + 1 if causal else ids.shape[1]
                got = module(ids[row : row + 1, :n].int())
                torch.testing.assert_close(got[0], want[row], atol=2e-6, rtol=0)
            if not causal:
                n = int(ids[0].argmax()) + 1
                assert float(module(ids[:1, :n].int())[0] @ want[0]) < 0.9999  # padding matters here
