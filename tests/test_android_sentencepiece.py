"""The Java SentencePiece tokenizer (android_demo/core) against fresh Python vectors, for both families.

.venv/bin/python -m tests.test_android_sentencepiece   # rewrites the committed vectors the core's own test.sh uses
"""

import json
import shutil
import sys
from pathlib import Path

from mcad_export.bundle.golden import write_sentencepiece_golden
from mcad_export.runtime.spm_tokenizer import SentencePieceTokenizer

from .test_android import CORE, run_core_tests
from .test_sentencepiece import train

COMMITTED = CORE / "src" / "test" / "resources" / "golden_sentencepiece"


def write_goldens(out: Path, work: Path) -> dict:
    """One golden folder per family, from models trained here: SigLIP's (unigram, T5-style specials, EOS-padded) and
    Gemma's (BPE, byte fallback, BOS first, left padding), both behind open_clip's canonicalize."""
    models = train(work, ("siglip_like", "bpe_gemma_like"))
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
    }
    out.mkdir(parents=True, exist_ok=True)
    return {name: write_sentencepiece_golden(tok, out / name)["tokens"] for name, tok in families.items()}


def test_java_sentencepiece_reproduces_fresh_python_vectors(tmp_path):
    fresh = tmp_path / "golden_sentencepiece"
    counts = write_goldens(fresh, tmp_path / "models")
    assert set(counts) == {"siglip", "gemma"} and min(counts.values()) > 300
    committed = CORE / "src" / "test" / "resources" / "golden"
    env_dirs = {"MCAD_GOLDEN_SENTENCEPIECE_DIR": str(fresh)}
    passed, failed, out = run_core_tests(committed, extra_env=env_dirs)
    assert failed == 0 and passed >= sum(counts.values()), out[-3000:]
    # one wrong id in one case of one family: exactly that case fails
    tokens = json.loads((fresh / "gemma" / "tokens.json").read_text())
    tokens["cases"][7]["ids"][3] += 1
    (fresh / "gemma" / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False))
    passed, failed, _ = run_core_tests(committed, extra_env=env_dirs)
    assert failed == 1


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "golden"
        print(write_goldens(staged, Path(tmp) / "models"), file=sys.stderr)
        shutil.rmtree(COMMITTED, ignore_errors=True)
        shutil.copytree(staged, COMMITTED)
