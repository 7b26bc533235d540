"""embedded:zh, the packaged Chinese student: a small Hugging Face ChineseCLIPModel trained on the scene data
captioned in Chinese and in English, with Chinese-CLIP's real tokenizer.

    .venv/bin/python -m mcad_export.training.chinese --out mcad_export/assets/chinese_student   # ~25 min, 2 cores
    .venv/bin/mcad-export run --student embedded:zh --quick

Why: the fidelity gate had only ever judged English captions, and a random-init tower gives degenerate
embeddings, so verdicts on Chinese queries mean something only on a student that retrieves with them. This one
has Chinese-CLIP's shape at a small size: a CLIP ViT image tower and a BERT-shaped text tower pooled at [CLS],
over the 21,128-token RoBERTa-wwm-ext vocabulary of the installed `cn_clip` package (read from there, never
copied into the folder), trained from scratch with CLIP's contrastive loss on 20,000 training scenes, each step's
caption drawn from three wordings in either language (bilingual: one student answers both). The weights are
stored float16 and the card's held-out recall (English, Chinese, and the alternating bilingual set that
`config.json`'s `"evaluation": {"samples": "scenes_bilingual"}` names for export and the gate) is measured after
that rounding. Only the trained model ships; rows of the token table that no caption uses keep their
initialisation. Fixed seeds; not bit-for-bit reproducible across hosts. The folder is written atomically.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ..atomic import staged_directory
from ..data.scenes import LANGUAGES, render_split, scene_at, scene_caption
from ..metrics import recall_at
from . import distill, recipe

NAME = "mcad-scenes-zh-v1"
CONTEXT = 52  # Chinese-CLIP's
TOWER = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4}
SETTINGS = {"steps": 1000, "lr": 1e-3, "warmup": 60, "batch": 128, "train_images": 20_000, "seed": 13}
EVALUATION = {"samples": "scenes_bilingual", "count": recipe.HELDOUT_IMAGES}
PREPROCESSOR = {"image_mean": list(recipe.MEAN), "image_std": list(recipe.STD), "resample": 3}
TOKENIZER_CONFIG = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": CONTEXT}


def build_model(vocab: int):
    from transformers import ChineseCLIPConfig, ChineseCLIPModel

    torch.manual_seed(SETTINGS["seed"])
    text = dict(TOWER, vocab_size=vocab, max_position_embeddings=64)
    vision = dict(TOWER, image_size=recipe.IMAGE_SIZE, patch_size=8)
    config = ChineseCLIPConfig(text_config=text, vision_config=vision, projection_dim=recipe.EMBED_DIM)
    return ChineseCLIPModel(config)


def pixels(images_u8: np.ndarray) -> torch.Tensor:
    return distill.normalise(torch.from_numpy(images_u8).permute(0, 3, 1, 2))


def _captions(tokenizer, count: int) -> torch.Tensor:
    """int64 [count, languages x 3 wordings, CONTEXT]: every training caption, tokenized as deployed."""
    rows = [
        tokenizer([scene_at("train", i).caption(t, language) for language in LANGUAGES for t in range(3)])
        for i in range(count)
    ]
    return torch.from_numpy(np.stack(rows).astype(np.int64))


def train(model, tokenizer, progress=print) -> list[float]:
    n, batch = SETTINGS["train_images"], SETTINGS["batch"]
    images, _ = render_split("train", n, recipe.IMAGE_SIZE)
    tokens = _captions(tokenizer, n)
    opt = distill._optimizer(model, SETTINGS["lr"])
    generator = torch.Generator().manual_seed(SETTINGS["seed"])
    losses: list[float] = []
    model.train()
    for _, idx in distill.scheduled_steps(opt, SETTINGS, generator, progress, losses):
        ids = tokens[idx, torch.randint(tokens.shape[1], (batch,), generator=generator)]
        ids = ids[:, : int((ids != 0).sum(1).max())]  # pads are masked out: the batch's longest caption is enough
        out = model(
            input_ids=ids, attention_mask=(ids != 0).long(), pixel_values=pixels(images[idx.numpy()]), return_loss=True
        )
        distill.descend(opt, out.loss, losses)
    model.eval()
    return losses


@torch.no_grad()
def heldout_recall(model, tokenizer, count: int = recipe.HELDOUT_IMAGES) -> dict:
    """Held-out recall per caption language and on the bilingual evaluation set."""
    images, _ = render_split("heldout", count, recipe.IMAGE_SIZE)
    img = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels(images)).pooler_output, dim=-1)
    out = {}
    for kind, name in (("scenes", "en"), ("scenes_zh", "zh"), ("scenes_bilingual", "bilingual")):
        ids = torch.from_numpy(tokenizer([scene_caption(kind, "heldout", i) for i in range(count)]).astype(np.int64))
        txt = model.get_text_features(input_ids=ids, attention_mask=(ids != 0).long()).pooler_output
        recall = recall_at(img.numpy(), torch.nn.functional.normalize(txt, dim=-1).numpy())
        out[name] = {k: round(v, 4) for k, v in recall.items()}
    return out


def card() -> dict:
    return {"name": NAME, "context": CONTEXT, "tower": TOWER, "settings": SETTINGS, "image_size": recipe.IMAGE_SIZE}


def build(out: Path) -> dict:
    from safetensors.torch import save_file

    from mcad_export.students.bert_text import wordpiece_tokenizer
    from mcad_export.students.cn_clip_family import cn_clip_package

    started = time.time()
    tokenizer = wordpiece_tokenizer(cn_clip_package(), CONTEXT, 21128)
    with staged_directory(out) as folder:
        model = build_model(len(tokenizer.vocab))
        losses = train(model, tokenizer)
        with torch.no_grad():  # the weights as they ship (float16), then the recall of exactly those
            for tensor in model.state_dict().values():
                tensor.copy_(tensor.half().float())
        recall = heldout_recall(model, tokenizer)
        model.config.evaluation = EVALUATION
        model.config.save_pretrained(folder)
        save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
        (folder / "preprocessor_config.json").write_text(json.dumps(dict(PREPROCESSOR, size=recipe.IMAGE_SIZE)))
        (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=1))
        result = dict(
            card(),
            heldout_recall=recall,
            final_loss=round(float(np.mean(losses[-50:])), 4),
            seconds=round(time.time() - started),
            host=platform.processor() or platform.machine(),
            torch=torch.__version__,
        )
        (folder / "card.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=SETTINGS["steps"], help="training steps (for a timing run)")
    args = parser.parse_args(argv)
    SETTINGS["steps"] = args.steps
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
