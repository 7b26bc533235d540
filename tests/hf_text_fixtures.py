"""Tiny open_clip students with Hugging Face text towers (XLM-R, mT5) for the tests: a SentencePiece model trained
here, the text model's config folder beside the open_clip config (as `localize` finds it), and seeded weights saved
the way open_clip saves them."""

import json
import shutil
from pathlib import Path

from .test_sentencepiece import corpus

XLMR_SPM = dict(model_type="unigram", vocab_size=800)  # the trainer's defaults: <unk> 0, <s> 1, </s> 2, as XLM-R's
CONTEXT = 32


def train_xlmr_spm(folder: Path) -> Path:
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        input=str(corpus(folder / "corpus.txt")),
        model_prefix=str(folder / "xlmr"),
        minloglevel=2,
        num_threads=2,
        **XLMR_SPM,
    )
    return folder / "xlmr.model"


MT5_EXTRA_ROWS = 12  # mT5 pads its table past the pieces (250,100 -> 250,112)


def mt5_folder(folder: Path, spm_model: Path, extra_rows=MT5_EXTRA_ROWS) -> Path:
    """A Hugging Face mT5 folder's text side: config.json (gated-GELU, relative buckets), spiece.model, T5Tokenizer."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    pieces = spm.SentencePieceProcessor(model_file=str(spm_model)).get_piece_size()
    config = {
        "model_type": "mt5",
        "architectures": ["MT5ForConditionalGeneration"],
        "vocab_size": pieces + extra_rows,
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 2,
        "num_decoder_layers": 1,
        "num_heads": 4,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu",
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        "is_encoder_decoder": True,
        "tie_word_embeddings": False,
    }
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copyfile(spm_model, folder / "spiece.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    return folder


def nllb_folder(folder: Path, spm_model: Path, language="eng_Latn") -> Path:
    """A Hugging Face NLLB folder's text side: config.json (M2M100, pre-norm, sinusoidal positions), the SentencePiece
    model, and a tokenizer.json laid out as the hub's: the model's Unigram pieces behind fairseq's four specials,
    <mask>, then the 202 language codes as added tokens, `<code> $A </s>` (transformers 5 builds a different Unigram
    table when it converts an NLLB .model itself, so its file is made from XLM-R's converter, which keeps the
    scores), and tokenizer_config.json naming NllbTokenizer and the source language."""
    from tokenizers import processors
    from transformers import AutoTokenizer
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spm_model, folder / "sentencepiece.bpe.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer"}))
    backend = AutoTokenizer.from_pretrained(str(folder)).backend_tokenizer
    backend.add_special_tokens(list(FAIRSEQ_LANGUAGE_CODES))
    code = backend.token_to_id(language)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{language} $A </s>", pair=f"{language} $A $B </s>", special_tokens=[(language, code), ("</s>", 2)]
    )
    backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "NllbTokenizer", "src_lang": language})
    )
    rows = 1 + max(t["id"] for t in json.loads((folder / "tokenizer.json").read_text())["added_tokens"])
    config = {
        "model_type": "m2m_100",
        "architectures": ["M2M100ForConditionalGeneration"],
        "vocab_size": rows,
        "d_model": 32,
        "encoder_layers": 2,
        "decoder_layers": 1,
        "encoder_attention_heads": 4,
        "decoder_attention_heads": 4,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "max_position_embeddings": CONTEXT + 4,
        "scale_embedding": True,
        "activation_function": "relu",
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "decoder_start_token_id": 2,
        "is_encoder_decoder": True,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def text_model_folder(folder: Path, spm_model: Path, *, model_type="xlm-roberta", extra_rows=2) -> Path:
    """What a Hugging Face XLM-R folder holds for the text side: config.json, sentencepiece.bpe.model and the
    tokenizer class (the hub's xlm-roberta-base names none; AutoTokenizer then reads config.json's model_type)."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    pieces = spm.SentencePieceProcessor(model_file=str(spm_model)).get_piece_size()
    config = {
        "model_type": model_type,
        "architectures": ["XLMRobertaModel"],
        "vocab_size": pieces + extra_rows,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": CONTEXT + 2,
        "type_vocab_size": 1,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "layer_norm_eps": 1e-5,
        "hidden_act": "gelu",
    }
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copyfile(spm_model, folder / "sentencepiece.bpe.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer"}))
    return folder


def open_clip_config(hf_model_name="xlm-roberta-base", pooler="mean_pooler", proj="mlp") -> dict:
    return {
        "model_cfg": {
            "embed_dim": 16,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
            "text_cfg": {
                "hf_model_name": hf_model_name,
                "hf_tokenizer_name": hf_model_name,
                "hf_pooler_type": pooler,
                "hf_proj_type": proj,
                "context_length": CONTEXT,
            },
        },
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    }


def student(folder: Path, spm_model: Path, seed=0, kind="xlmr", **config) -> tuple[Path, Path]:
    """(open_clip config, weights): the model open_clip builds from the local folder, seeded, saved as safetensors.
    `kind` mt5: an mT5 tower named as open_clip's mt5 configs name it (google/mt5-base, found as mt5-base/)."""
    import torch
    from safetensors.torch import save_file

    if kind == "mt5":
        text = mt5_folder(folder / "mt5-base", spm_model)
        config.setdefault("hf_model_name", "google/mt5-base")
    elif kind == "nllb":
        text = nllb_folder(folder / "nllb-200-distilled-600M", spm_model)
        config.setdefault("hf_model_name", "facebook/nllb-200-distilled-600M")
    else:
        text = text_model_folder(folder / "xlm-roberta-base", spm_model)
    cfg = open_clip_config(**config)
    path = folder / "open_clip_config.json"
    path.write_text(json.dumps(cfg))
    torch.manual_seed(seed)
    model = reference_model(cfg, text)
    with torch.no_grad():  # open_clip leaves an HF tower's weights at HF init; spread them so parity means something
        for p in model.text.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    weights = folder / "student.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return path, weights


def reference_model(cfg: dict, text_folder: Path):
    """open_clip's own model for the config, its text model read from text_folder (the parity reference)."""
    import hashlib
    import tempfile

    import open_clip

    model_cfg = json.loads(json.dumps(cfg["model_cfg"]))
    model_cfg["text_cfg"].update(hf_model_name=str(text_folder), hf_model_pretrained=False)
    name = "mcadtest-xlmr-" + hashlib.sha256(json.dumps(model_cfg, sort_keys=True).encode()).hexdigest()[:10]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{name}.json").write_text(json.dumps(model_cfg))
        open_clip.add_model_config(Path(tmp) / f"{name}.json")
        return open_clip.create_model(name, pretrained=None, pretrained_text=False).eval()
