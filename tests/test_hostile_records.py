"""Hostile input, part three (defects): re-signed files, a full disk, a resumed run fooled by `touch -r`, malformed
records, hostile tokenizer / index / reference files, options of the wrong type, messages. Each case reproduces a
finding of issue 26 on a copy of a finished tiny run; every failure is one `error:` line, never a traceback."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mcad_export import contract
from mcad_export.errors import GalleryIndexError, InputError

from .conftest import REPO, cli, tiny_options, tmpfs


def _one_line(code, err, *phrases):
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in err, err


@pytest.fixture()
def x(tiny_copy):
    return tiny_copy


def _manifest(x: Path) -> dict:
    return json.loads((x / contract.MANIFEST).read_text())


def _resign(x: Path, rel: str) -> None:
    """Recomputes the digest and size the manifest lists for `rel` (the folder vouches for its own edit)."""
    data = (x / rel).read_bytes()
    m = _manifest(x)
    for record in [*m["artifacts"], *m["files"]]:
        if record["path"] == rel:
            record["sha256"], record["size_bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (x / contract.MANIFEST).write_text(json.dumps(m, indent=2))


# -- 8: a full disk -------------------------------------------------------------------------------------------


def test_a_full_disk_is_one_line_and_leaves_nothing(capsys, tmp_path, tiny_open_clip_config):
    mount = tmp_path / "small"
    mount.mkdir()
    with tmpfs(mount, "size=256k"):
        code, _, err = cli(
            capsys,
            "export",
            "--out",
            mount / "out",
            "--student",
            f"open_clip:{tiny_open_clip_config}",
            "--random-init",
            "--no-tflite",
            "--samples",
            "8",
        )
        _one_line(code, err, "No space left on device", "nothing half-written was kept")
        assert list(mount.iterdir()) == []


# -- 9: a foreign ONNX under a re-signed manifest --------------------------------------------------------------


def test_a_foreign_model_under_a_resigned_manifest_is_refused_before_it_runs(x, capsys):
    deployed = _manifest(x)["deployment"]["text_encoder"]
    shutil.copy(x / contract.IMAGE_ENCODER_ONNX, x / deployed)
    _resign(x, deployed)
    _one_line(*cli(capsys, "search", x, "a red circle")[::2], "are not the", "its manifest record lists")


# -- 10, 11: resume ------------------------------------------------------------------------------------------


def test_a_flipped_byte_with_its_mtime_restored_is_not_skipped(x):
    from mcad_export import resume

    state = resume.RunState(x)
    now = resume.snapshot(x)
    owner = next(name for name, record in state.stages.items() if contract.REPORT_MD in record["owns"])
    assert state.unchanged(owner, state.stages[owner]["digest"], now) is None
    report = x / contract.REPORT_MD
    st = report.stat()
    data = bytearray(report.read_bytes())
    data[10] ^= 1
    time.sleep(0.01)
    report.write_bytes(bytes(data))
    os.utime(report, ns=(st.st_atime_ns, st.st_mtime_ns))  # `touch -r`
    assert resume.RunState(x).unchanged(owner, state.stages[owner]["digest"], resume.snapshot(x)) == (
        f"{contract.REPORT_MD} changed since"
    )


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["stages"].update(export=5),
        lambda d: d.update(files=5),
        lambda d: d["stages"]["export"].pop("owns"),
        lambda d: d["stages"]["report"].update(owns=[3]),
    ],
    ids=["stage-number", "files-number", "no-owns", "owns-numbers"],
)
def test_a_malformed_run_record_is_set_aside_with_a_reason(x, edit):
    from mcad_export import resume

    path = x / contract.LOGS_DIR / resume.STATE_FILE
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    state = resume.RunState(x)
    assert state.stages == {} and "is not a record mcad-export wrote" in state.problem


@pytest.mark.parametrize("blob", [b"{not json", b"[" * 100_000, b"\xff\xfe not UTF-8"], ids=["json", "nested", "bytes"])
def test_a_run_record_that_is_not_json_is_set_aside(x, blob):
    from mcad_export import resume

    (x / contract.LOGS_DIR / resume.STATE_FILE).write_bytes(blob)
    state = resume.RunState(x)
    assert state.stages == {} and "cannot be read" in state.problem


def test_run_says_why_it_redoes_stages(x, tiny_open_clip_config, tiny_run):
    from mcad_export import resume
    from mcad_export.pipeline import Observer, run_pipeline

    class Notes(Observer):
        def __init__(self):
            self.notes = []

        def rerun(self, name, why):
            self.notes.append((name, why))

    options = tiny_options(x, tiny_open_clip_config, tiny_run[1])
    path = x / contract.LOGS_DIR / resume.STATE_FILE
    data = json.loads(path.read_text())
    (x / contract.REPORT_HTML).write_text("edited")  # changes only what `report` owns
    path.write_text(json.dumps(data))
    observer = Notes()
    result = run_pipeline(options, observer)
    assert result.ran == ["report"] and observer.notes == [("report", f"{contract.REPORT_HTML} changed since")]


# -- 12: manifest size and nesting ---------------------------------------------------------------------------


def test_a_deeply_nested_or_huge_manifest_is_one_line(x, capsys):
    (x / contract.MANIFEST).write_text("[" * 200_000)
    _one_line(*cli(capsys, "search", x, "a red circle")[::2], "nests too deeply")
    with open(x / contract.MANIFEST, "wb") as f:
        f.truncate(40 << 20)  # sparse: 40 MB of zeros, never parsed
    started = time.perf_counter()
    _one_line(*cli(capsys, "search", x, "a red circle")[::2], "more than the 16 MB")
    assert time.perf_counter() - started < 5


# -- 13: hostile tokenizer files (re-signed) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,edit,phrase",
    [
        (contract.TOKENIZER_VOCAB, lambda v: {**v, "huge": 10**12}, "ids 0..n-1"),
        (contract.TOKENIZER_VOCAB, lambda v: {k: str(i) for k, i in v.items()}, "ids 0..n-1"),
        (contract.TOKENIZER_VOCAB, lambda v: list(v), "not a JSON object"),
        (contract.TOKENIZER_CONFIG, lambda c: {**c, "context_length": -1}, "context_length is -1"),
        (contract.TOKENIZER_CONFIG, lambda c: [], "not a JSON object"),
        (contract.TOKENIZER_CONFIG, lambda c: {**c, "type": "wordpiece"}, "vocab.txt is missing or not listed"),
        (contract.TOKENIZER_CONFIG, lambda c: {**c, "eot_token": 7}, "eot_token 7 is not in the vocabulary"),
    ],
    ids=["id-1e12", "string-ids", "list-vocab", "context-minus-1", "list-config", "wordpiece-no-vocab", "eot-int"],
)
def test_a_hostile_tokenizer_file_is_one_line(x, capsys, name, edit, phrase):
    rel = f"{contract.TOKENIZER_DIR}/{name}"
    (x / rel).write_text(json.dumps(edit(json.loads((x / rel).read_text()))))
    _resign(x, rel)
    _one_line(*cli(capsys, "search", x, "a red circle")[::2], phrase)


def test_a_tokenizer_file_the_manifest_does_not_list_is_never_read(x):
    from mcad_export.runtime.tokenizer import Tokenizer

    m = _manifest(x)
    m["files"] = [f for f in m["files"] if not f["path"].endswith(contract.TOKENIZER_MERGES)]
    (x / contract.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(InputError, match="merges.txt is missing or not listed"):
        Tokenizer.from_artifacts(x)


# -- 14: hostile ivfpq.npz (re-signed in index.json) ----------------------------------------------------------


@pytest.fixture(scope="module")
def ivfpq_folder(tmp_path_factory):
    from mcad_export.runtime.index import GalleryIndex

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((1200, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    folder = tmp_path_factory.mktemp("ivfpq") / "index"
    GalleryIndex.build(rows, [f"{i}.png" for i in range(len(rows))], "ivfpq").save(folder)
    return folder


@pytest.mark.parametrize(
    "edit,phrase",
    [
        (lambda a: a["offsets"].__setitem__(-1, 10**9), "list offsets"),
        (lambda a: a.update(codebooks=a["codebooks"][:2]), "codebooks are"),
        (lambda a: a.update(nbits=np.array(64)), "8-bit"),
        (lambda a: a["ids"].__setitem__(0, -5), "ids are not"),
        (lambda a: a["offsets"].__setitem__(1, -3), "list offsets"),
        (lambda a: a.update(codes=np.array([object()] * 3, dtype=object)), "not an index mcad-export wrote"),
    ],
    ids=["offset-1e9", "short-codebook", "nbits-64", "negative-id", "negative-offset", "object-array"],
)
def test_a_hostile_ivfpq_file_is_refused_before_anything_is_sized_from_it(ivfpq_folder, tmp_path, edit, phrase):
    from mcad_export.runtime.index import GalleryIndex

    folder = tmp_path / "index"
    shutil.copytree(ivfpq_folder, folder)
    with np.load(folder / contract.INDEX_IVFPQ) as data:
        arrays = {k: data[k].copy() for k in data.files}
    edit(arrays)
    with open(folder / contract.INDEX_IVFPQ, "wb") as f:
        np.savez(f, **arrays)
    meta = json.loads((folder / contract.INDEX_META).read_text())
    data = (folder / contract.INDEX_IVFPQ).read_bytes()
    meta["digests"][contract.INDEX_IVFPQ] = {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
    (folder / contract.INDEX_META).write_text(json.dumps(meta))
    with pytest.raises(GalleryIndexError, match=phrase):
        GalleryIndex.load(folder)


def test_a_wrong_dim_in_index_json_is_refused(ivfpq_folder, tmp_path):
    from mcad_export.runtime.index import GalleryIndex

    folder = tmp_path / "index"
    shutil.copytree(ivfpq_folder, folder)
    meta = json.loads((folder / contract.INDEX_META).read_text())
    meta["dim"] = 64
    (folder / contract.INDEX_META).write_text(json.dumps(meta))
    with pytest.raises(GalleryIndexError, match="float32 rows of 64"):
        GalleryIndex.load(folder)


# -- 15: a hostile reference npz -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cut-rows", "object-array"])
def test_a_hostile_reference_npz_is_one_line(x, capsys, kind):
    path = x / contract.REFERENCE_EMBEDDINGS
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    if kind == "cut-rows":
        arrays["text_embeds"] = arrays["text_embeds"][:10]
    else:
        arrays["text_embeds"] = np.array([object()] * 4, dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    _resign(x, contract.REFERENCE_EMBEDDINGS)
    _one_line(*cli(capsys, "verify", x)[::2], "reference")


# -- 16: options of the wrong type, refused when built --------------------------------------------------------


def test_options_of_the_wrong_type_are_refused_when_built():
    from mcad_export.options import IndexOptions, PipelineOptions, QuantizeOptions, StudentOptions

    cases = [
        (lambda: PipelineOptions(out=None), "out takes a path"),
        (lambda: QuantizeOptions(precisions="w8"), "not 'a'"),
        (lambda: QuantizeOptions(precisions=("w9",)), "unknown precision 'w9'"),
        (lambda: StudentOptions(5), "spec takes a str or None"),
        (lambda: PipelineOptions(force="report"), "force takes a tuple"),
        (lambda: PipelineOptions(force=("reprot",)), "'reprot' is not a stage"),
        (lambda: IndexOptions(batch="8"), "batch takes a whole number"),
    ]
    for build, phrase in cases:
        with pytest.raises(InputError, match=phrase.replace("(", r"\(")):
            build()
    built = PipelineOptions(out="build/x", quantize=QuantizeOptions(precisions=["w8"]))
    assert built.out == Path("build/x") and built.quantize.precisions == ("w8",)


# -- 17: a corrupt digest cache -------------------------------------------------------------------------------


def test_a_corrupt_digest_cache_is_only_a_hint(x, capsys, tmp_path, monkeypatch):
    from mcad_export import guard

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(guard, "_memory", {})
    model = x / _manifest(x)["deployment"]["text_encoder"]
    st = os.stat(model)
    cache = tmp_path / "cache" / "mcad-export" / "digests.json"
    cache.parent.mkdir(parents=True)
    for garbage in ({f"{st.st_dev}:{st.st_ino}": 5}, {f"{st.st_dev}:{st.st_ino}": [1, 2]}, [1, 2]):
        cache.write_text(json.dumps(garbage))
        code, out, err = cli(capsys, "search", x, "a red circle")
        assert code == 0 and "Traceback" not in err, err


# -- 18: a transformers 5 folder: tokenizer.json without vocab.txt ---------------------------------------------


def test_wordpiece_vocab_from_tokenizer_json(tmp_path):
    from mcad_export.students.bert_text import minilm_folder, wordpiece_tokenizer

    folder = tmp_path / "minilm"
    shutil.copytree(minilm_folder(), folder, ignore=shutil.ignore_patterns("*.safetensors"))
    both = wordpiece_tokenizer(folder, 64, 30522)
    (folder / "vocab.txt").unlink()
    only_json = wordpiece_tokenizer(folder, 64, 30522)
    texts = ["A red circle", "naïve café ÜBER", "unaffable 東京"]
    assert only_json.vocab == both.vocab and (only_json(texts) == both(texts)).all()
    assert only_json.lowercase and only_json.strip_accents  # from tokenizer.json's BertNormalizer
    shutil.copy(minilm_folder() / "vocab.txt", folder / "vocab.txt")
    data = json.loads((folder / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    a, b = "cat", "dog"
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (folder / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="vocab.txt and tokenizer.json disagree"):
        wordpiece_tokenizer(folder, 64, 30522)


# -- 19: messages ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", [b"a red circle", None, 5])
def test_a_query_that_is_not_text_says_so(query):
    from mcad_export.runtime.search import check_query

    with pytest.raises(InputError, match=f"not {type(query).__name__}"):
        check_query(query, 5)


def test_api_force_names_the_stage_it_got():
    from mcad_export.options import PipelineOptions

    with pytest.raises(InputError) as caught:
        PipelineOptions(force=("repor",))
    assert "'repor'" in str(caught.value) and "--force r" not in str(caught.value)


def test_a_long_third_party_message_is_cut_at_a_word():
    from mcad_export.errors import first_line

    cut = first_line("alpha " * 80 + "\nsecond line", 60)
    assert cut.endswith("alpha…") and len(cut) <= 60 and "second" not in cut


def test_a_fifo_or_folder_named_like_an_image_is_skipped_with_a_reason(x, capsys, tiny_run):
    photos = x.parent / "photos"
    shutil.copytree(tiny_run[1], photos)
    os.mkfifo(photos / "pipe.png")
    (photos / "folder.png").mkdir()
    code, out, err = cli(capsys, "index", x, "--images", photos)
    assert code == 0, err
    meta = json.loads((x / contract.INDEX_DIR / contract.INDEX_META).read_text())
    reasons = {Path(s["path"]).name: s["reason"] for s in meta["skipped_files"]}
    assert meta["count"] == 12 and reasons == {
        "pipe.png": "not a regular file (a FIFO)",
        "folder.png": reasons["folder.png"],
    }
    assert reasons["folder.png"] == "not a regular file (a folder)"


def test_a_second_writer_is_refused_before_heavy_imports(x):
    from mcad_export.atomic import folder_lock

    env = dict(os.environ, PYTHONPATH=str(REPO))
    with folder_lock(x, "test holder"):
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "mcad_export", "quantize", str(x)], capture_output=True, text=True, env=env
        )
        seconds = time.perf_counter() - started
    assert proc.returncode == 2 and "being written by another mcad-export stage" in proc.stderr, proc.stderr
    assert seconds < 4, f"refused only after {seconds:.1f} s"
