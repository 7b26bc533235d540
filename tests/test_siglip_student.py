"""open_clip SigLIP students: the timm SigLIP vision tower (attention-pool head), open_clip's bidirectional
last-token text tower and a SentencePiece tokenizer from the student's own folder, exported and checked."""

import json
import os
import shutil

import numpy as np
import pytest

from mcad_export.errors import InputError
from mcad_export.options import ExportOptions, ShortQueryOptions, StudentOptions
from mcad_export.runtime import Tokenizer
from mcad_export.runtime.spm_tokenizer import canonicalize

from .test_sentencepiece import texts, train

TIMM_NAME = "vit_tiny_patch16_siglip_mcadtest"


def _register_tiny_siglip_vit():
    """timm's SigLIP ViT (no class token, MAP attention-pool head) at test size, registered like timm's own."""
    import timm
    from timm.models import register_model
    from timm.models.vision_transformer import _create_vision_transformer

    if TIMM_NAME in timm.list_models(TIMM_NAME):
        return

    @register_model
    def vit_tiny_patch16_siglip_mcadtest(pretrained=False, **kwargs):
        args = dict(patch_size=16, embed_dim=64, depth=2, num_heads=2, class_token=False, global_pool="map")
        return _create_vision_transformer(TIMM_NAME, pretrained=pretrained, **dict(args, **kwargs))


def siglip_config(vocab_size: int, context: int = 16) -> dict:
    return {
        "model_cfg": {
            "embed_dim": 64,
            "init_logit_bias": -10,
            "custom_text": True,
            "vision_cfg": {
                "image_size": 224,
                "timm_model_name": TIMM_NAME,
                "timm_model_pretrained": False,
                "timm_pool": "map",
                "timm_proj": "linear",
            },
            "text_cfg": {
                "context_length": context,
                "vocab_size": vocab_size,
                "hf_tokenizer_name": "timm/ViT-B-16-SigLIP",
                "tokenizer_kwargs": {"clean": "canonicalize"},
                "width": 64,
                "heads": 2,
                "layers": 2,
                "no_causal_mask": True,
                "proj_bias": True,
                "pool_type": "last",
                "norm_kwargs": {"eps": 1e-06},
                "act_kwargs": {"approximate": "tanh"},
            },
        },
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    }


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    return train(tmp_path_factory.mktemp("siglip-spm"), ("siglip_like",))["siglip_like"]


def student_folder(folder, spm_model, *, tokenizer=True, vocab_size=800):
    import sentencepiece

    folder.mkdir(parents=True, exist_ok=True)
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(spm_model)).get_piece_size()
    config = siglip_config(pieces if vocab_size is None else vocab_size)
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    if tokenizer:
        shutil.copyfile(spm_model, folder / "tokenizer.model")
        (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "SiglipTokenizer"}))
    return folder / "open_clip_config.json"


def test_siglip_student_exports_with_parity_and_its_own_tokenizer(tmp_path, spm_model):
    from transformers import SiglipTokenizer

    from mcad_export import stages
    from mcad_export.manifest import read_manifest

    _register_tiny_siglip_vit()
    config = student_folder(tmp_path / "student", spm_model, vocab_size=None)
    out = tmp_path / "out"
    stages.export(out, StudentOptions(f"open_clip:{config}", random_init=True), ExportOptions(tflite=False, samples=32))
    manifest = read_manifest(out)
    assert manifest["text"]["tokenizer"] == "sentencepiece" and manifest["text"]["context_length"] == 16
    parity = {a["path"]: a["parity"]["cosine_min"] for a in manifest["artifacts"] if a.get("parity")}
    assert parity["image_encoder.onnx"] >= 0.9999 and parity["text_encoder.onnx"] >= 0.9999, parity
    # the export's tokenizer, read back from its folder, is SiglipTokenizer on open_clip's canonicalized text
    ours = Tokenizer.from_artifacts(out)
    hf = SiglipTokenizer(str(spm_model), model_max_length=16)
    cases = texts(seed=23, count=80)
    expected = [hf(canonicalize(t), padding="max_length", max_length=16, truncation=True).input_ids for t in cases]
    np.testing.assert_array_equal(ours(cases), np.array(expected))
    # SiglipTokenizer pads with </s>, so no caption ends before the context: a cut after EOS is never exercised,
    # and a parity that passes on uncut captions proves nothing; the one-query encoder is fed every position
    stages.short_query(out, ShortQueryOptions(buckets=(), required=True))
    dyn = next(a for a in read_manifest(out)["artifacts"] if a.get("dynamic_length"))["dynamic_length"]
    assert not dyn["cut_after_eot"] and not dyn["exact"] and dyn["parity"]["mean_tokens"] == 16, dyn
    assert "0 of 32 captions end before the context" in dyn["why"] and "fed every position" in dyn["why"], dyn


def _load(config, **kwargs):
    from mcad_export.students import load_student

    _register_tiny_siglip_vit()
    return load_student(f"open_clip:{config}", random_init=True, **kwargs)


@pytest.mark.parametrize(
    "tokenizer_json, says",
    [
        ("{}", "(a typeless model, not a SentencePiece tokenizer) alone is not enough"),
        ('{"model": {"type": "WordPiece"}}', "(a WordPiece model, not a SentencePiece tokenizer)"),
        (
            '{"model": {"type": "Unigram"}}',
            "(a Unigram model, which transformers' converters write without the .model's byte fallback",
        ),
        ("{not json", "(not valid JSON) alone is not enough"),
    ],
)
def test_missing_tokenizer_is_one_line_naming_the_files(tmp_path, spm_model, tokenizer_json, says):
    config = student_folder(tmp_path, spm_model, tokenizer=False)
    (tmp_path / "tokenizer.json").write_text(tokenizer_json)
    with pytest.raises(InputError) as error:
        _load(config)
    message = str(error.value)
    assert "tokenizer.model" in message and "spiece.model" in message and "nothing is downloaded" in message
    assert f"tokenizer.json {says}" in message and "\n" not in message


def test_a_tokenizer_of_another_size_is_refused(tmp_path, spm_model):
    config = student_folder(tmp_path, spm_model, vocab_size=1234)
    with pytest.raises(InputError, match=r"800 pieces but .* 1,234 rows"):
        _load(config)


@pytest.mark.parametrize(
    "damage,says",
    [
        (lambda f: (f / "tokenizer.model").write_bytes(b"\x0a\xff\xff\xff\xff\x0f"), "is not a SentencePiece model"),
        (lambda f: (f / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}'), "BertTokenizer"),
        (lambda f: (f / "tokenizer_config.json").write_text("[1, 2"), "is not valid JSON"),
    ],
)
def test_bad_tokenizer_files_are_one_line(tmp_path, spm_model, damage, says):
    config = student_folder(tmp_path, spm_model)
    damage(tmp_path)
    with pytest.raises(InputError) as error:
        _load(config)
    assert says in str(error.value) and "\n" not in str(error.value)


TINY_TOWER = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)


def tiny_text_config(spm_model, **special_ids) -> dict:
    """A test-size SigLIP text tower whose token table has the tokenizer's piece count, 16 positions."""
    import sentencepiece

    pieces = sentencepiece.SentencePieceProcessor(model_file=str(spm_model)).get_piece_size()
    return dict(TINY_TOWER, vocab_size=pieces, max_position_embeddings=16, projection_size=64, **special_ids)


def hf_siglip_folder(folder, spm_model):
    from transformers import SiglipConfig, SiglipModel

    text = tiny_text_config(spm_model, pad_token_id=1, bos_token_id=None, eos_token_id=1)
    vision = dict(TINY_TOWER, image_size=32, patch_size=8)
    SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).save_pretrained(folder)
    shutil.copyfile(spm_model, folder / "spiece.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "SiglipTokenizer"}))
    return folder


def test_hf_siglip_folder_exports_with_parity(tmp_path, spm_model):
    from transformers import SiglipTokenizer

    from mcad_export import stages
    from mcad_export.manifest import read_manifest

    folder = hf_siglip_folder(tmp_path / "hf", spm_model)
    out = tmp_path / "out"
    stages.export(out, StudentOptions(f"hf:{folder}"), ExportOptions(tflite=False, samples=32))
    manifest = read_manifest(out)
    parity = {a["path"]: a["parity"]["cosine_min"] for a in manifest["artifacts"] if a.get("parity")}
    assert parity["image_encoder.onnx"] >= 0.9999 and parity["text_encoder.onnx"] >= 0.9999, parity
    assert manifest["student"]["weights_sha256"] and manifest["text"]["tokenizer"] == "sentencepiece"
    # SiglipProcessor's tokenizer, id for id (it canonicalizes inside; no open_clip cleaning in front)
    ours = Tokenizer.from_artifacts(out)
    hf = SiglipTokenizer(str(spm_model), model_max_length=16)
    cases = texts(seed=29, count=80)
    expected = [hf(t, padding="max_length", max_length=16, truncation=True).input_ids for t in cases]
    np.testing.assert_array_equal(ours(cases), np.array(expected))


@pytest.mark.parametrize(
    "evaluation, expected",
    [
        (None, ("varied", 128)),
        ({"samples": "scenes", "count": 1000}, ("scenes", 1000)),
        ({"samples": "scenes", "count": 3}, "evaluation.count must be a whole number from 8 to 10000"),
        (
            {"samples": "imagenet"},
            "evaluation must be an object whose samples is one of scenes, scenes_zh, scenes_bilingual, varied",
        ),
    ],
)
def test_hf_config_names_its_evaluation_data(tmp_path, spm_model, evaluation, expected):
    """A Hugging Face folder's config.json says what its student was trained on, as an open_clip config does."""
    from mcad_export.students import load_student

    folder = hf_siglip_folder(tmp_path / "hf", spm_model)
    if evaluation is not None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(dict(config, evaluation=evaluation)))
    if isinstance(expected, str):
        with pytest.raises(InputError) as error:
            load_student(f"hf:{folder}")
        assert expected in str(error.value) and "\n" not in str(error.value)
        return
    student = load_student(f"hf:{folder}")
    assert (student.sample_kind, student.eval_count) == expected


def test_hf_siglip_folder_without_its_tokenizer_is_one_line(tmp_path, spm_model):
    from mcad_export.students import load_student

    folder = hf_siglip_folder(tmp_path / "hf", spm_model)
    (folder / "spiece.model").unlink()
    with pytest.raises(InputError, match="needs its SentencePiece tokenizer.*nothing is downloaded"):
        load_student(f"hf:{folder}")


@pytest.fixture(scope="module")
def gemma_spm(tmp_path_factory):
    return train(tmp_path_factory.mktemp("gemma-spm"), ("bpe_gemma_like",))["bpe_gemma_like"]


def hf_siglip2_folder(folder, gemma_spm):
    """A tiny Siglip2Model folder as save_pretrained writes it, with a Gemma-style SentencePiece tokenizer."""
    from transformers import Siglip2Config, Siglip2Model

    text = tiny_text_config(gemma_spm, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    vision = dict(TINY_TOWER, patch_size=8, num_patches=16)
    Siglip2Model(Siglip2Config(text_config=text, vision_config=vision)).save_pretrained(folder)
    shutil.copyfile(gemma_spm, folder / "tokenizer.model")
    config = {
        "tokenizer_class": "GemmaTokenizer",
        "add_bos_token": False,
        "add_eos_token": True,
        "padding_side": "right",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_hf_siglip2_folder_exports_at_a_fixed_grid_with_parity(tmp_path, gemma_spm):
    from transformers import GemmaTokenizer

    from mcad_export import stages
    from mcad_export.manifest import read_manifest

    folder = hf_siglip2_folder(tmp_path / "hf2", gemma_spm)
    out = tmp_path / "out"
    stages.export(out, StudentOptions(f"hf:{folder}"), ExportOptions(tflite=False, samples=32))
    manifest = read_manifest(out)
    parity = {a["path"]: a["parity"]["cosine_min"] for a in manifest["artifacts"] if a.get("parity")}
    assert parity["image_encoder.onnx"] >= 0.9999 and parity["text_encoder.onnx"] >= 0.9999, parity
    assert manifest["image"]["image_size"] == 32  # the 4 x 4 grid of 8-pixel patches
    ours = Tokenizer.from_artifacts(out)
    hf = GemmaTokenizer.from_pretrained(str(folder))
    cases = texts(seed=31, count=80)
    expected = [hf(t, padding="max_length", max_length=16, truncation=True).input_ids for t in cases]
    np.testing.assert_array_equal(ours(cases), np.array(expected))


def test_hf_siglip2_folder_with_only_tokenizer_json(tmp_path, gemma_spm):
    """A Siglip2 folder whose tokenizer is only transformers' tokenizer.json: the SentencePiece model is rebuilt
    from it (students/tokenizer_json.py), and the student tokenizes as GemmaTokenizer does from that folder."""
    from transformers import GemmaTokenizer

    from mcad_export.students import load_student

    from .test_sentencepiece import gemma_tokenizer_json

    folder = hf_siglip2_folder(tmp_path / "hf2", gemma_spm)
    shutil.copyfile(gemma_tokenizer_json(tmp_path / "json", gemma_spm), folder / "tokenizer.json")
    (folder / "tokenizer.model").unlink()
    cases = texts(seed=37, count=120)
    # transformers 5 follows the JSON's template (here: nothing around the text, then EOS after it) over
    # tokenizer_config.json's add_eos_token; so does the student's tokenizer
    for single in ([], [{"SpecialToken": {"id": "<eos>", "type_id": 0}}]):
        spec = json.loads((folder / "tokenizer.json").read_text())
        spec["post_processor"]["single"] = [{"Sequence": {"id": "A", "type_id": 0}}, *single]
        spec["post_processor"]["special_tokens"] = {"<eos>": {"id": "<eos>", "ids": [1], "tokens": ["<eos>"]}}
        (folder / "tokenizer.json").write_text(json.dumps(spec))
        student = load_student(f"hf:{folder}")
        hf = GemmaTokenizer.from_pretrained(str(folder))
        expected = [hf(t, padding="max_length", max_length=16, truncation=True).input_ids for t in cases]
        np.testing.assert_array_equal(student.tokenizer(cases), np.array(expected))
        assert student.tokenizer.add_eos == bool(single)


def test_the_fixed_grid_patchifies_as_siglip2s_image_processor():
    import torch
    from transformers.models.siglip2 import image_processing_siglip2 as processing

    from mcad_export.students.hf_siglip import patchify

    image = np.random.default_rng(0).standard_normal((3, 32, 48)).astype(np.float32)
    expected = processing.convert_image_to_patches(torch.from_numpy(image), 8).numpy()  # [rows * cols, 8 * 8 * 3]
    got = patchify(torch.from_numpy(image)[None], 8)[0].numpy()
    np.testing.assert_array_equal(got, expected)


def test_every_stage_runs_on_a_siglip2_student_and_the_app_reads_its_tokenizer(tmp_path, gemma_spm):
    """`run` end to end on a tiny Siglip2Model folder: export, quantize (every default recipe, the gate), compile for
    qnn:SM8650 with the token table on the host (checked on the HTP simulator), index, bench, report, bundle into the
    Android demo for that target; then the Java core tokenizes the run's golden vectors."""
    from PIL import Image

    from mcad_export.manifest import read_manifest

    from .conftest import REPO, run_cli
    from .test_android import CORE, run_core_tests

    folder = hf_siglip2_folder(tmp_path / "hf2", gemma_spm)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(images / f"{i:03d}.png")
    app = tmp_path / "app"
    shutil.copytree(REPO / "android_demo", app, ignore=shutil.ignore_patterns("assets"))
    out = tmp_path / "out"
    flags = ["--quick", "--no-tflite", "--no-baseline", "--gallery-size", "2000", "--sweep-sizes", "0"]
    flags += ["--target", "qnn:SM8650", "--sim-samples", "8"]
    proc = run_cli("run", "--student", f"hf:{folder}", "--out", out, "--images", images, "--app", app, *flags)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    fidelity = json.loads((out / "reports" / "fidelity.json").read_text())
    gated = {r["artifact"]: r["passed"] for r in fidelity}
    assert {"text_encoder.dynamic.onnx", "text_encoder.w8a8.onnx", "image_encoder.dynamic.onnx"} <= set(gated)
    bench = json.loads((out / "reports" / "bench.json").read_text())
    assert bench["query_latency_ms"]["p50"] > 0 and gated[bench["artifacts"]["text"]["path"]] is True
    # SigLIP attends to its pads and pools the last position: no cut after EOS; what a cut would cost is recorded.
    manifest = read_manifest(out)
    short = manifest["text"]["short_query"]
    assert not short["shipped"] and not short["cut_after_eot"] and short["cut_parity"]["cosine_min"] < 0.99
    assert manifest["text"]["pooling"].startswith("last position") and "min cosine" in short["why"]
    # The NPU text graph starts at the embeddings: SigLIP pools the last position, so it takes no ids at all.
    compiled = next(a for a in manifest["artifacts"] if a.get("target") and a["encoder"] == "text")
    pieces = tiny_text_config(gemma_spm)["vocab_size"]
    assert [i["name"] for i in compiled["inputs"]] == ["token_embeds"] and compiled["host_gather"]["rows"] == pieces
    assert compiled["host_gather"]["parity"]["fp32_rows_min_cosine"] >= 0.99999
    simulated = next(r for r in fidelity if r["artifact"] == compiled["path"])
    assert simulated["runtime"] == "qnn-htp-sim" and simulated["passed"] and simulated["cosine_mean"] > 0.999
    bundle = json.loads((app / "app" / "src" / "main" / "assets" / "mcad" / "bundle.json").read_text())
    assert bundle["text"]["tokenizer"] == "sentencepiece" and bundle["target"] == "qnn:SM8650"
    host = bundle["encoders"]["text"]["host_gather"]
    assert (host["rows"], host["input"]) == (pieces, "token_embeds")
    assert (app / "app" / "src" / "main" / "assets" / "mcad" / host["rows_file"]).stat().st_size > pieces * 64
    golden = tmp_path / "golden" / "siglip2"
    assert run_cli("golden", out, "--out", golden).returncode == 0
    cases = len(json.loads((golden / "tokens.json").read_text())["cases"])
    passed, failed, log = run_core_tests(
        CORE / "src" / "test" / "resources" / "golden", extra_env={"MCAD_GOLDEN_SENTENCEPIECE_DIR": str(golden.parent)}
    )
    assert failed == 0 and passed >= cases > 300, log[-2000:]
    # the export's spiece.model is untrusted input too: a symlink or a hard link out of the folder is refused
    model_file = out / "tokenizer" / "spiece.model"
    outside = tmp_path / "outside.model"
    shutil.copyfile(model_file, outside)
    for link in (os.symlink, os.link):
        model_file.unlink()
        link(outside, model_file)
        proc = run_cli("search", out, "a photo of a cat")
        assert proc.returncode == 2 and "spiece.model" in proc.stderr, proc.stderr[-500:]
        assert "link" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert outside.read_bytes() == (tmp_path / "hf2" / "tokenizer.model").read_bytes()
