"""The fidelity gate, audited (issue 27): ties are not hits, only what the gate passed deploys, a per-sample floor
for trained students, and an R@1 criterion that tells damage from noise."""

import json
from pathlib import Path

import numpy as np
import pytest

from mcad_export import contract
from mcad_export.deployable import require, verdict
from mcad_export.errors import InputError
from mcad_export.metrics import recall_at, t2i_hits_at_1
from mcad_export.quantize.fidelity import DEFAULT_GATE, Gate, r1_paired_test, score

from .conftest import cli


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def paired():
    """A trained-like pair: caption i is image i plus noise, so fp32 ranks far above chance."""
    rng = np.random.default_rng(0)
    img = _unit(rng.standard_normal((400, 32)).astype(np.float32))
    txt = _unit(img + 0.08 * rng.standard_normal(img.shape).astype(np.float32))
    return img, txt


# -- 1: honest metrics -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["constant", "zero"])
def test_a_constant_or_zero_encoder_scores_chance(paired, kind):
    img, txt = paired
    n = len(img)
    broken = np.zeros_like(txt) if kind == "zero" else np.tile(txt[:1], (n, 1))
    recall = recall_at(img, broken)
    for k in (1, 5, 10):
        assert recall[f"t2i_r{k}"] == pytest.approx(k / n), recall
    constant_image = recall_at(np.tile(img[:1], (n, 1)), txt)
    assert constant_image["i2t_r1"] == pytest.approx(1 / n) and constant_image["t2i_r10"] == pytest.approx(10 / n)


def test_a_tie_is_half_a_hit_and_a_strict_win_a_whole_one():
    img = np.eye(3, dtype=np.float32)
    txt = np.array([[1, 0, 0], [0.6, 0.6, 0], [0, 0, 1]], dtype=np.float32)  # caption 1 ties images 0 and 1
    recall = recall_at(img, txt)
    assert recall["t2i_r1"] == pytest.approx((1 + 0.5 + 1) / 3) and recall["t2i_r5"] == 1.0
    assert t2i_hits_at_1(img, txt).tolist() == [True, False, True]


def test_a_trained_pair_scores_far_above_chance(paired):
    recall = recall_at(*paired)
    assert recall["t2i_r1"] > 0.9 and recall["i2t_r1"] > 0.9


# -- 3: a gate that means what it says ---------------------------------------------------------------------------


def test_the_paired_r1_test_separates_damage_from_noise():
    base = np.ones(1000, bool)
    lost8 = base.copy()
    lost8[:8] = False
    damage = r1_paired_test(base, lost8, 0.05)
    assert damage["lost"] == 8 and damage["gained"] == 0 and damage["p_value"] == pytest.approx(2**-8)
    assert damage["significant"] and damage["min_detectable_drop"] == pytest.approx(5 / 1000)
    fp32 = base.copy()
    fp32[100:106] = False  # six captions fp32 misses, the artifact hits
    swapped = lost8.copy()
    swapped[100:106] = True
    noise = r1_paired_test(fp32, swapped, 0.05)
    assert (noise["lost"], noise["gained"]) == (8, 6) and not noise["significant"]
    assert noise["p_value"] == pytest.approx(sum(__import__("math").comb(14, i) for i in range(8, 15)) / 2**14)


def _record(**changes):
    record = {
        "degenerate": False,
        "recall_at_1": 0.500,
        "recall_at_1_fp32": 0.506,
        "top10_overlap": 0.99,
        "cosine_mean": 0.999,
        "cosine_min": 0.99,
        "r1_paired": {"lost": 6, "gained": 0, "p_value": 0.0156, "significant": True},
    }
    record.update(changes)
    return record


def test_the_gate_fails_a_significant_drop_and_passes_one_inside_the_noise():
    assert DEFAULT_GATE.misses(_record()) and "paired p = 0.0156" in DEFAULT_GATE.misses(_record())[0]
    noisy = _record(r1_paired={"lost": 14, "gained": 8, "p_value": 0.143, "significant": False})
    assert DEFAULT_GATE.misses(noisy) == []
    assert DEFAULT_GATE.misses(_record(recall_at_1=0.506)) == []


def test_a_language_whose_captions_lose_fails_even_when_another_hides_it(paired):
    """A bilingual evaluation set (docs/quantization.md): the Chinese captions lose 12 hits, the English gain 12, so
    the overall R@1 does not move; the per-language paired test still fails the artifact."""
    img, txt = paired
    languages = np.array(["en", "zh"] * 200)
    reference = {"image_embeds": img, "text_embeds": txt, "languages": languages}
    fp32 = txt.copy()
    en_rows, zh_rows = np.flatnonzero(languages == "en")[:12], np.flatnonzero(languages == "zh")[:12]
    fp32[en_rows] = txt[(en_rows + 1) % 400]  # fp32 misses 12 English captions (each names its neighbour's image)
    candidate = txt.copy()
    candidate[zh_rows] = txt[(zh_rows + 1) % 400]  # the artifact misses 12 Chinese ones and gets those back
    result = score("text", candidate, {**reference, "text_embeds": fp32})
    part = result["per_language"]
    assert {k: v["captions"] for k, v in part.items()} == {"en": 200, "zh": 200}
    assert result["recall_at_1"] == result["recall_at_1_fp32"]  # overall: no drop at all
    assert part["zh"]["r1_paired"]["lost"] == 12 and part["zh"]["r1_paired"]["gained"] == 0
    assert part["en"]["recall_at_1"] - part["en"]["recall_at_1_fp32"] == pytest.approx(12 / 200)
    # swapped captions are also far from fp32's and move the top-10s; only the ranking tests are judged here
    misses = Gate(min_cosine_floor=-1.0, min_cosine_mean=-1.0, min_top10_overlap=0.0).misses(result)
    assert misses == [
        f"zh captions: R@1 {part['zh']['recall_at_1']:.3f} vs fp32 1.000 (drop 6.0 points > 0.5; 12 lost vs 0 "
        "gained, paired p = 0.000244 < 0.05)"
    ], misses
    # one language only: nothing per language to judge, and no record field for it
    assert "per_language" not in score("text", candidate, {**reference, "languages": np.array(["zh"] * 400)})


def test_one_destroyed_caption_fails_a_trained_student(paired):
    img, txt = paired
    reference = {"image_embeds": img, "text_embeds": txt}
    candidate = txt.copy()
    candidate[7] = -candidate[7]  # one caption the artifact destroys; the other 399 are exact
    result = score("text", candidate, reference)
    assert not result["degenerate"] and result["cosine_mean"] > 0.99
    misses = DEFAULT_GATE.misses(result)
    assert len(misses) == 1 and "a sample the artifact destroys" in misses[0], misses
    assert DEFAULT_GATE.misses(score("text", txt.copy(), reference)) == []
    assert Gate(min_cosine_floor=-1.0).misses(result) == []  # the floor is what caught it


def test_the_verdict_is_the_same_on_a_rerun(paired):
    img, txt = paired
    rng = np.random.default_rng(1)
    noisy = _unit(txt + 0.05 * rng.standard_normal(txt.shape).astype(np.float32))
    reference = {"image_embeds": img, "text_embeds": txt}
    first, second = score("text", noisy, reference), score("text", noisy.copy(), reference)
    assert first == second and DEFAULT_GATE.misses(first) == DEFAULT_GATE.misses(second)


# -- 2: only passed artifacts deploy -----------------------------------------------------------------------------


def _artifact(**changes):
    artifact = {"path": "text_encoder.dynamic.onnx", "runtime": "onnxruntime", "sha256": "a" * 64}
    artifact.update(changes)
    return artifact


def test_the_deploy_rule():
    passed = {"artifact": "text_encoder.dynamic.onnx", "passed": True, "runtime": "onnxruntime", "sha256": "a" * 64}
    records = {passed["artifact"]: passed}
    assert verdict(_artifact(), records)[0]
    assert verdict(_artifact(), {})[1].startswith("the fidelity gate has not run")
    assert "failed the fidelity gate" in verdict(_artifact(), {passed["artifact"]: {**passed, "passed": False}})[1]
    assert "could not run it" in verdict(_artifact(), {passed["artifact"]: {**passed, "passed": None}})[1]
    assert "changed since it was gated" in verdict(_artifact(sha256="b" * 64), records)[1]
    assert "not computed by a runtime" in verdict(_artifact(), {passed["artifact"]: {**passed, "runtime": "x"}})[1]
    device = _artifact(path="compiled/aihub-SM8650/text_encoder.aihub.tflite", runtime="aihub-tflite")
    with pytest.raises(InputError, match="--allow-ungated"):
        require(None, device, records={})
    assert require(None, device, allow_ungated=True, records={})["gate"] == "not run"
    failed = {device["path"]: {"artifact": device["path"], "passed": False, "runtime": "aihub-tflite"}}
    with pytest.raises(InputError, match="failed the fidelity gate"):
        require(None, device, allow_ungated=True, records=failed)


@pytest.fixture()
def x(tiny_copy):
    return tiny_copy


def test_bench_and_bundle_take_nothing_the_gate_did_not_pass(x, capsys, tmp_path):
    app = tmp_path / "app"
    (app / "app" / "src" / "main").mkdir(parents=True)
    fidelity = x / contract.FIDELITY_REPORT
    records = json.loads(fidelity.read_text())
    deployed = json.loads((x / contract.MANIFEST).read_text())["deployment"]["text_encoder"]
    assert cli(capsys, "bundle", x, "--app", app)[0] == 0
    gate = json.loads((app / "app/src/main/assets/mcad/bundle.json").read_text())["encoders"]["text"]["gate"]
    assert gate["gate"] == "passed"
    # the deployed encoder failed the gate: bundle refuses, no fallback
    fidelity.write_text(json.dumps([{**r, "passed": False} if r["artifact"] == deployed else r for r in records]))
    code, _, err = cli(capsys, "bundle", x, "--app", app)
    assert code == 2 and f"{deployed} cannot deploy: it failed the fidelity gate" in err, err
    # quantize then bench without verify: nothing has a gate record, nothing deploys
    fidelity.unlink()
    code, _, err = cli(capsys, "bench", x, "--quick", "--no-baseline", "--sweep-sizes", "0")
    assert code == 2 and "encoder may deploy" in err and "has not run" in err, err
    code, _, err = cli(capsys, "bundle", x, "--app", app)
    assert code == 2 and "the fidelity gate has not run on it" in err, err


# -- 5: audit findings -------------------------------------------------------------------------------------------


def test_a_200_mp_phone_photo_is_indexed_not_dropped(x, capsys, tmp_path):
    from PIL import Image

    from mcad_export.runtime.images import MAX_PIXELS, read_image

    photos = tmp_path / "photos"
    photos.mkdir()
    big = Image.new("RGB", (16320, 12240), (200, 30, 30))  # a 200 MP sensor's frame (199.8 MP)
    big.paste((30, 30, 200), (0, 0, 8160, 12240))
    big.save(photos / "phone.jpg", quality=70)
    del big
    assert 16320 * 12240 <= MAX_PIXELS
    reduced = read_image(photos / "phone.jpg", draft_to=128)
    assert reduced.size == (2040, 1530)  # decoded at 1/8 in the DCT domain, not 600 MB whole
    left, right = np.asarray(reduced)[765, 100], np.asarray(reduced)[765, 1900]
    assert left[2] > 150 > left[0] and right[0] > 150 > right[2]
    code, _, err = cli(capsys, "index", x, "--images", photos)
    assert code == 0, err
    meta = json.loads((x / contract.INDEX_DIR / contract.INDEX_META).read_text())
    assert meta["count"] == 1 and meta["skipped"] == 0, meta["skipped_files"]


def test_a_child_that_hangs_is_one_line_not_a_timeout_traceback():
    import os
    import sys

    from mcad_export.isolated import ToolCrashError, run_child

    with pytest.raises(ToolCrashError, match="did not finish within 1 s and was stopped"):
        run_child([sys.executable, "-c", "import time; time.sleep(30)"], "a test step", 1, dict(os.environ))


def test_one_mask_constant():
    import mcad_export.export.rewrites as rewrites
    import mcad_export.students.bert_text as bert_text

    assert rewrites.FINITE_MASK_VALUE is contract.FINITE_MASK_VALUE is bert_text.FINITE_MASK_VALUE


def test_isolated_children_write_their_files_inside_the_stage_scratch(tmp_path, monkeypatch):
    import mcad_export.isolated as isolated
    from mcad_export.atomic import active_scratch, scratch_dir
    from mcad_export.quantize.tflite_recipes import tflite_embed_in_process  # any isolated step will do

    seen = []

    def child(command, what, timeout, env):  # where the child's files are, and what they are
        folder = Path(command[-1])
        seen.append((folder, sorted(p.name for p in folder.iterdir())))
        raise isolated.ToolCrashError(f"{what} failed: stopped by the test")

    monkeypatch.setattr(isolated, "run_child", child)
    assert active_scratch() is None
    with scratch_dir(tmp_path) as work:
        assert active_scratch() == work
        with pytest.raises(isolated.ToolCrashError, match="stopped by the test"):
            isolated.run_isolated(tflite_embed_in_process, {"model": "m.tflite"}, {"x": np.zeros(1)}, what="a step")
        folder, files = seen[0]
        assert folder.parent == work and files == ["in.npz", "params.json"]
        assert not folder.exists()  # removed with the step, the scratch folder stays the stage's
    assert active_scratch() is None


def test_rounding_noise_is_a_tie_and_a_real_margin_is_not():
    from mcad_export.metrics import hit_probability

    # identical embeddings whose float32 dot products differ in the last bits, as BLAS edge kernels make them
    noisy = np.full((4, 4), 0.5) + 1e-8 * np.arange(16).reshape(4, 4)
    np.testing.assert_allclose(hit_probability(noisy, 1), 0.25)
    clear = np.full((4, 4), 0.5) + np.eye(4) * 1e-4  # the true item ahead by a visible margin: a hit
    np.testing.assert_allclose(hit_probability(clear, 1), 1.0)


def test_bench_deploys_only_the_runtime_asked_for(x, capsys):
    """`--runtime` (what `run --apk` sets to onnxruntime, the offline APK's runtime): the deployed text encoder and
    every ranked one are of that runtime; a runtime the folder has no encoder for is one line."""
    code, _, err = cli(capsys, "bench", x, "--quick", "--no-baseline", "--sweep-sizes", "0", "--runtime", "onnxruntime")
    assert code == 0, err
    text = json.loads((x / "reports" / "bench.json").read_text())["artifacts"]
    assert text["text"]["runtime"] == "onnxruntime" and "on onnxruntime" in text["text"]["chosen_by"], text["text"]
    assert {r["runtime"] for r in text["text_ranking"]} == {"onnxruntime"}
    code, _, err = cli(capsys, "bench", x, "--quick", "--no-baseline", "--sweep-sizes", "0", "--runtime", "litert")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "no text encoder for --runtime litert" in lines[0], err


def test_run_apk_benches_the_offline_apks_runtime():
    from mcad_export.options import BundleOptions, PipelineOptions
    from mcad_export.pipeline import bench_options

    apk = PipelineOptions(bundle=BundleOptions(app=Path("android_demo"), apk=True))
    assert bench_options(apk).runtimes == ("onnxruntime",)
    assert bench_options(PipelineOptions()).runtimes == ()
