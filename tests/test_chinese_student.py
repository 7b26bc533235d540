"""The packaged Chinese student (`embedded:zh`): a ChineseCLIPModel trained on the scene data captioned in Chinese and
English with Chinese-CLIP's real tokenizer, so the gate's verdicts on Chinese queries rest on real rankings, judged
per caption language; searched with Chinese queries from the command line."""

from __future__ import annotations

import html
import json
import subprocess
import sys

import numpy as np
import pytest

from mcad_export.data.scenes import caption_at, scene_caption
from mcad_export.quantize.fidelity import Gate
from mcad_export.students import load_student
from mcad_export.students.embedded import CARD, CHINESE_DIR

from .conftest import REPO, run_cli


@pytest.fixture(scope="module")
def zh_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("zh-embedded") / "out"
    proc = run_cli("export", "--student", "embedded:zh", "--out", out, "--no-tflite")
    assert proc.returncode == 0, proc.stderr
    return out


def card_recall() -> dict:
    return json.loads((CHINESE_DIR / CARD).read_text())["heldout_recall"]


def test_the_packaged_student_reads_chinese_with_cn_clips_tokenizer():
    """cn_clip's own tokenizer on the held-out Chinese captions, id for id; the card's per-language recall re-measured
    from the shipped float16 weights; and it retrieves in both languages far above chance (1,000 images: R@10 0.01)."""
    import cn_clip.clip as cn_clip
    from transformers import ChineseCLIPModel

    from mcad_export.training.chinese import heldout_recall

    student = load_student("embedded:zh")
    assert student.id == "embedded:mcad-scenes-zh-v1" and student.tokenizer.kind == "wordpiece"
    assert (student.sample_kind, student.eval_count, student.context_length) == ("scenes_bilingual", 1000, 52)
    captions = [caption_at("heldout", i, "zh") for i in range(300)]
    np.testing.assert_array_equal(student.tokenizer(captions), cn_clip.tokenize(captions).numpy())
    assert not (student.tokenizer(captions) == student.tokenizer.unk_token_id).any()
    shipped = ChineseCLIPModel.from_pretrained(str(CHINESE_DIR), local_files_only=True).float().eval()
    recall = heldout_recall(shipped, student.tokenizer)
    for language in ("en", "zh", "bilingual"):
        assert recall[language]["t2i_r1"] == pytest.approx(card_recall()[language]["t2i_r1"], abs=0.002), recall
        assert recall[language]["t2i_r10"] > 0.3, recall


def test_int8_gated_per_language_and_chinese_search(zh_export, tmp_path):
    """Every integer CPU recipe through the gate on the bilingual held-out set: each record carries English and
    Chinese numbers and its verdict follows from them; then a Chinese query finds its scene from the command line,
    and a query sent in GB18030 is one clear line."""
    out = zh_export
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["evaluation"]["samples"] == "scenes_bilingual" and manifest["evaluation"]["recall_meaningful"]
    proc = run_cli("quantize", out, "--precision", "dynamic", "--precision", "w8", "--precision", "w8a8")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    proc = run_cli("verify", out)
    records = {r["artifact"]: r for r in json.loads((out / "reports" / "fidelity.json").read_text())}
    fp32 = records["text_encoder.onnx"]
    assert {k: v["captions"] for k, v in fp32["per_language"].items()} == {"en": 500, "zh": 500}
    assert fp32["recall_at_1"] == pytest.approx(card_recall()["bilingual"]["t2i_r1"], abs=0.003)
    gate = Gate()
    quantized = [r for r in records.values() if r["precision"] != "fp32"]
    assert {"text_encoder.dynamic.onnx", "text_encoder.w8.onnx"} <= {r["artifact"] for r in quantized}
    for r in quantized:
        assert set(r["per_language"]) == {"en", "zh"} and not r["degenerate"], r
        assert r["passed"] == (not gate.misses(r)) == (not r["misses"]), r
    assert proc.returncode == (0 if all(r["passed"] for r in quantized) else 4), proc.stderr[-1000:]  # 4: a gate miss

    proc = run_cli("index", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Chinese held-out captions whose fp32 top-1 is their own image (bilingual set: odd rows are Chinese)
    reference = np.load(out / "reference" / "eval_embeddings.npz")
    top1 = np.argmax(reference["text_embeds"] @ reference["image_embeds"].T, axis=1)
    chinese = [int(i) for i in np.flatnonzero(top1 == np.arange(len(top1))) if i % 2][:3]
    assert len(chinese) == 3
    for i in chinese:
        caption = scene_caption("scenes_bilingual", "heldout", i)
        assert caption == caption_at("heldout", i, "zh")
        proc = run_cli("search", out, caption, "-k", 3)
        assert proc.returncode == 0, proc.stderr[-2000:]
        rows = [line for line in proc.stdout.splitlines() if "heldout_" in line]
        assert len(rows) == 3 and f"heldout_{i:05d}.png" in rows[0], proc.stdout

    # the report shows Chinese captions as written: Chromium's parsed DOM holds them intact
    proc = run_cli("bench", out, "--gallery-size", 0, "--threads", 1, "--sweep-sizes", 0, "--quick")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli("report", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from .test_report import headless

    dom = headless(tmp_path, "--dump-dom", (out / "reports" / "report.html").resolve().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    shown = [scene_caption("scenes_bilingual", "heldout", i) for i in range(4)]
    assert any("背景" in c for c in shown) and all(html.escape(c, quote=False) in dom.stdout for c in shown)
    assert "Per caption language" in dom.stdout and "(zh)" in dom.stdout
    # ... and drawn: every element with Han characters in its own text has each of them drawn by a CJK font (the
    # DevTools protocol's platform fonts; scripts/test.sh installs fonts-wqy-zenhei), none as an empty box
    from .cdp import han_fonts
    from .test_report import chromium

    listed = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout
    cjk = {name.strip() for line in listed.splitlines() for name in line.split(",")}
    assert cjk, "no CJK font installed: scripts/test.sh installs fonts-wqy-zenhei"
    url = (out / "reports" / "report.html").resolve().as_uri()
    drawn = han_fonts(chromium(), url, str(tmp_path / "cdp-profile"))
    assert len(drawn) >= 2 and sum(e["han"] for e in drawn) >= 20, drawn[:2]  # the two Chinese captions shown
    for element in drawn:
        by_cjk = sum(f["glyphCount"] for f in element["fonts"] if f["familyName"] in cjk)
        assert by_cjk >= element["han"], element

    raw = "左上角有一个小的红色圆形".encode("gb18030")  # a terminal left at GB18030
    proc = subprocess.run(
        [sys.executable, "-m", "mcad_export", "search", str(out).encode(), raw],
        capture_output=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    errors = [line for line in proc.stderr.decode().splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "GB18030 ('左上角有一个小的红色圆形')" in errors[0], errors
