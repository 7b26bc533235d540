"""The Java SentencePiece tokenizer (android_demo/core) against fresh Python vectors, for both families, and the
Java host token table (SigLIP 2's 256k rows looked up beside an NPU graph) against runtime/token_table.py.

.venv/bin/python -m tests.test_android_sentencepiece   # rewrites the committed vectors the core's own test.sh uses
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from mcad_export.bundle.golden import write_host_table_golden, write_sentencepiece_golden
from mcad_export.runtime.spm_tokenizer import SentencePieceTokenizer

from .hf_text_fixtures import train_xlmr_spm
from .test_android import CORE, run_core_tests
from .test_sentencepiece import train

COMMITTED = CORE / "src" / "test" / "resources" / "golden_sentencepiece"
COMMITTED_HOST_TABLE = CORE / "src" / "test" / "resources" / "golden_host_table"


def nllb_tokenizer(model: Path) -> SentencePieceTokenizer:
    """NLLB's wrapping of an XLM-R-like model: <mask> after the pieces, then the 202 language codes (the numbering
    transformers gives them), texts starting with zho_Hans."""
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

    pieces = len(SentencePieceTokenizer(model.read_bytes(), family="xlmr", context_length=8).model)
    added = {"<mask>": pieces + 1, **{code: pieces + 2 + i for i, code in enumerate(FAIRSEQ_LANGUAGE_CODES)}}
    return SentencePieceTokenizer(
        model.read_bytes(),
        family="nllb",
        context_length=48,
        clean="whitespace",
        added_tokens=added,
        prefix_token="zho_Hans",
    )


def write_goldens(out: Path, work: Path) -> dict:
    """One golden folder per family, from models trained here: SigLIP's (unigram, T5-style specials, EOS-padded) and
    Gemma's (BPE, byte fallback, BOS first, left padding), both behind open_clip's canonicalize, XLM-R's
    (unigram, fairseq's ids, the contract's swap) and mT5's (T5Tokenizer on a T5-style model) behind open_clip's
    whitespace cleaning."""
    models = train(work, ("siglip_like", "bpe_gemma_like"))
    xlmr = train_xlmr_spm(work / "xlmr")
    families = {
        "siglip": SentencePieceTokenizer(models["siglip_like"].read_bytes(), family="siglip", context_length=64),
        "gemma": SentencePieceTokenizer(
            models["bpe_gemma_like"].read_bytes(),
            family="gemma",
            context_length=64,
            add_bos=True,
            add_eos=True,
            padding_side="left",
        ),
        "xlmr": SentencePieceTokenizer(xlmr.read_bytes(), family="xlmr", context_length=48, clean="whitespace"),
        "nllb": nllb_tokenizer(xlmr),
        "t5": SentencePieceTokenizer(
            models["siglip_like"].read_bytes(), family="t5", context_length=40, clean="whitespace"
        ),
    }
    out.mkdir(parents=True, exist_ok=True)
    return {name: write_sentencepiece_golden(tok, out / name)["tokens"] for name, tok in families.items()}


def test_java_sentencepiece_and_host_table_reproduce_fresh_python_vectors(tmp_path):
    fresh, fresh_table = tmp_path / "golden_sentencepiece", tmp_path / "golden_host_table"
    counts = write_goldens(fresh, tmp_path / "models")
    assert set(counts) == {"siglip", "gemma", "xlmr", "nllb", "t5"} and min(counts.values()) > 300
    table_cases = write_host_table_golden(fresh_table)
    committed = CORE / "src" / "test" / "resources" / "golden"
    env_dirs = {"MCAD_GOLDEN_SENTENCEPIECE_DIR": str(fresh), "MCAD_GOLDEN_HOST_TABLE_DIR": str(fresh_table)}
    passed, failed, out = run_core_tests(committed, extra_env=env_dirs)
    assert failed == 0 and passed >= sum(counts.values()) + table_cases, out[-3000:]
    # The committed host-table vectors are what the writer writes now (the core's own test.sh runs those).
    for name in ("cases.json", "token_table.int8.npy", "token_table.scales.npy"):
        assert (fresh_table / name).read_bytes() == (COMMITTED_HOST_TABLE / name).read_bytes(), name
    # one wrong id in one case of one family, and one gathered value one float32 step off: exactly those fail
    tokens = json.loads((fresh / "gemma" / "tokens.json").read_text())
    tokens["cases"][7]["ids"][3] += 1
    (fresh / "gemma" / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False))
    cases = json.loads((fresh_table / "cases.json").read_text())
    value = cases["cases"][5]["rows"][9]
    cases["cases"][5]["rows"][9] = float(np.nextafter(np.float32(value), np.float32(1)))
    (fresh_table / "cases.json").write_text(json.dumps(cases))
    passed, failed, _ = run_core_tests(committed, extra_env=env_dirs)
    assert failed == 2


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "golden"
        print(write_goldens(staged, Path(tmp) / "models"), file=sys.stderr)
        shutil.rmtree(COMMITTED, ignore_errors=True)
        shutil.copytree(staged, COMMITTED)
        write_host_table_golden(COMMITTED_HOST_TABLE)
