"""embedded:siglip, the packaged SigLIP student: a small Hugging Face SiglipModel trained on the scene data with
SigLIP's sigmoid loss.

    .venv/bin/python -m mcad_export.training.siglip --out mcad_export/assets/siglip_student   # ~15 min, 2 cores
    .venv/bin/mcad-export run --student embedded:siglip --quick

Why: random-init towers give degenerate embeddings, so the fidelity gate's verdicts on a SigLIP student mean
something only on one that retrieves. This one has SigLIP's shape at a small size: a ViT with the attention-pool
(MAP) head, a bidirectional text tower that attends to its pads and pools the last position, tanh-GELU, and its
own SentencePiece unigram tokenizer (SiglipTokenizer's conventions: `</s>` appended and used as padding), trained
from scratch on the training split's captions. Trained with the pairwise sigmoid loss (transformers'
`SiglipModel(return_loss=True)`), logit scale log 10 and bias -10 at the start as the SigLIP paper sets them.
`config.json` carries `"evaluation": {"samples": "scenes", "count": 1000}`, so export parity and the gate use
the held-out scenes. Weights are stored float16 and the card's recall is measured after that rounding. Fixed
seeds; not bit-for-bit reproducible across hosts (torch's CPU kernels differ). The folder is written atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ..atomic import staged_directory
from ..data.scenes import caption_at, render_split, scene_at
from ..metrics import recall_at
from . import distill, recipe

NAME = "mcad-scenes-siglip-v1"
CONTEXT = 32
TOWER = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4}
SETTINGS = {"steps": 900, "lr": 1e-3, "warmup": 60, "batch": 128, "train_images": 20_000, "pieces": 256, "seed": 11}
TOKENIZER_CONFIG = {"tokenizer_class": "SiglipTokenizer", "model_max_length": CONTEXT, "do_lower_case": True}
PREPROCESSOR = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2}


def train_tokenizer(folder: Path, pieces: int) -> None:
    """spiece.model trained on the training split's captions with SigLIP's special ids (pad 0, eos 1, unk 2)."""
    import sentencepiece as spm

    corpus = folder / "captions.txt"
    corpus.write_text("\n".join(scene_at("train", i).caption(t) for i in range(4000) for t in range(3)))
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "spiece"),
        model_type="unigram",
        vocab_size=pieces,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        num_threads=1,
        minloglevel=2,
    )
    corpus.unlink()
    (folder / "spiece.vocab").unlink()


def build_model(vocab: int):
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(SETTINGS["seed"])
    ids = {"pad_token_id": 1, "eos_token_id": 1, "bos_token_id": None}  # SiglipTokenizer pads with </s>
    text = dict(TOWER, vocab_size=vocab, max_position_embeddings=CONTEXT, **ids)
    vision = dict(TOWER, image_size=recipe.IMAGE_SIZE, patch_size=8)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
    with torch.no_grad():  # the SigLIP paper's start: t' = log 10, b = -10 (transformers initialises both to 0)
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    return model


def pixels(images_u8: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(images_u8).permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5


def train(model, tokenizer, progress=print) -> list[float]:
    n, batch = SETTINGS["train_images"], SETTINGS["batch"]
    images, _ = render_split("train", n, recipe.IMAGE_SIZE)
    tokens = np.stack([tokenizer([scene_at("train", i).caption(t) for t in range(3)]) for i in range(n)])
    tokens_t = torch.from_numpy(tokens.astype(np.int64))  # [n, 3 templates, CONTEXT], padded as deployed
    opt = distill._optimizer(model, SETTINGS["lr"])  # the project's AdamW: weight decay on matrices, not embeddings
    generator = torch.Generator().manual_seed(SETTINGS["seed"])
    losses: list[float] = []
    model.train()
    for _, idx in distill.scheduled_steps(opt, SETTINGS, generator, progress, losses):
        which = torch.randint(3, (batch,), generator=generator)
        out = model(input_ids=tokens_t[idx, which], pixel_values=pixels(images[idx.numpy()]), return_loss=True)
        distill.descend(opt, out.loss, losses)
    model.eval()
    return losses


@torch.no_grad()
def heldout_recall(model, tokenizer, count: int = recipe.HELDOUT_IMAGES) -> dict:
    images, _ = render_split("heldout", count, recipe.IMAGE_SIZE)
    ids = torch.from_numpy(tokenizer([caption_at("heldout", i) for i in range(count)]).astype(np.int64))
    img = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels(images)).pooler_output, dim=-1)
    txt = torch.nn.functional.normalize(model.get_text_features(input_ids=ids).pooler_output, dim=-1)
    return recall_at(img.numpy(), txt.numpy())


def round_to_float16(model, tokenizer) -> dict:
    """The weights as they ship (float16, loaded back into float32), and the held-out recall of exactly those."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.copy_(tensor.half().float())
    return heldout_recall(model, tokenizer)


def card() -> dict:
    return {"name": NAME, "context": CONTEXT, "tower": TOWER, "settings": SETTINGS, "image_size": recipe.IMAGE_SIZE}


def build(out: Path) -> dict:
    from safetensors.torch import save_file

    from mcad_export.students.spm_files import load_spm_tokenizer

    started = time.time()
    with staged_directory(out) as folder:
        train_tokenizer(folder, SETTINGS["pieces"])
        (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=1))
        import sentencepiece as spm

        vocab = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model")).get_piece_size()
        tokenizer = load_spm_tokenizer(NAME, [folder], context_length=CONTEXT, vocab_size=vocab, clean="none")
        model = build_model(vocab)
        losses = train(model, tokenizer)
        recall = round_to_float16(model, tokenizer)
        model.config.evaluation = {"samples": "scenes", "count": recipe.HELDOUT_IMAGES}
        model.config.save_pretrained(folder)
        save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
        (folder / "preprocessor_config.json").write_text(json.dumps(dict(PREPROCESSOR, size=recipe.IMAGE_SIZE)))
        result = dict(
            card(),
            heldout_recall={k: round(v, 4) for k, v in recall.items()},
            final_loss=round(float(np.mean(losses[-50:])), 4),
            vocab=vocab,
            seconds=round(time.time() - started),
            host=platform.processor() or platform.machine(),
            torch=torch.__version__,
        )
        (folder / "card.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    existing = args.out / "card.json"
    if existing.is_file():
        saved = json.loads(existing.read_text())
        if {k: saved.get(k) for k in card()} == json.loads(json.dumps(card())):
            print(f"{args.out}: already built ({saved['heldout_recall']})")
            return
    torch.set_num_threads(2)
    print(json.dumps(build(args.out), indent=1))


if __name__ == "__main__":
    main()
