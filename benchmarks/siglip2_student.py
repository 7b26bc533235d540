"""A ViT-B-16-SigLIP2 student folder for benchmarks: open_clip's own architecture config, random weights, and a
256,000-piece Gemma-style SentencePiece tokenizer (SigLIP 2's vocabulary size; its real Gemma model cannot be
downloaded here).

    .venv/bin/python benchmarks/siglip2_student.py --out build/siglip2-student
    .venv/bin/mcad-export export --student open_clip:build/siglip2-student/open_clip_config.json --random-init

The tokenizer is a BPE model trained by `sentencepiece` with Gemma's options (byte fallback, split digits, no dummy
prefix, identity normalizer; tests/test_sentencepiece.py's `bpe_gemma_like`) on the tests' multilingual corpus,
then filled to 256,000 pieces with generated multilingual pieces scored below every trained one: the table, the
lookups and the 256k-row token embedding are full size, which is what a latency and memory benchmark needs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ARCH = "ViT-B-16-SigLIP2"
PIECES = 256_000
TOKENIZER_CONFIG = {"tokenizer_class": "GemmaTokenizer", "add_bos_token": False, "add_eos_token": True}
PREPROCESS = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear", "resize_mode": "squash"}


def gemma_like_tokenizer(folder: Path, pieces: int = PIECES) -> Path:
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    from tests.test_sentencepiece import MODELS, WORDS, corpus

    text = corpus(folder / "corpus.txt")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(folder / "trained"), minloglevel=2, num_threads=2, **MODELS["bpe_gemma_like"]
    )
    proto = pb.ModelProto.FromString((folder / "trained.model").read_bytes())
    seen = {p.piece for p in proto.pieces}
    low = min(p.score for p in proto.pieces if p.type == pb.ModelProto.SentencePiece.NORMAL)
    rng = random.Random(256)
    alphabet = [c for ws in WORDS.values() for w in ws for c in w if c != "\u200d"] + list("abcdefghijklmnopqrstuvwxyz")
    while len(proto.pieces) < pieces:
        piece = ("▁" if rng.random() < 0.5 else "") + "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 7)))
        if piece not in seen:
            seen.add(piece)
            proto.pieces.add(piece=piece, score=low - 1 - rng.random() * 5, type=pb.ModelProto.SentencePiece.NORMAL)
    path = folder / "tokenizer.model"
    path.write_bytes(proto.SerializeToString())
    for name in ("corpus.txt", "trained.model", "trained.vocab"):
        (folder / name).unlink()
    return path


def build(out: Path) -> Path:
    """The folder (reused when complete); returns its open_clip_config.json."""
    import open_clip

    from mcad_export.atomic import staged_directory

    config = out / "open_clip_config.json"
    if config.is_file() and (out / "tokenizer.model").is_file():
        return config
    with staged_directory(out) as folder:
        gemma_like_tokenizer(folder)
        (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
        model_cfg = open_clip.get_model_config(ARCH)
        (folder / "open_clip_config.json").write_text(
            json.dumps({"model_cfg": model_cfg, "preprocess_cfg": PREPROCESS}, indent=1)
        )
    return config


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "siglip2-student")
    print(build(parser.parse_args().out))
