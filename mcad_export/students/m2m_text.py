"""NLLB text towers (open_clip's nllb-clip configs: the encoder of a Hugging Face M2M100 model).

Until export the tower runs the untouched Hugging Face encoder (the parity reference); `use_restated_forward` switches
it to the same arithmetic in plain ops, as bert_text does for BERT: the scaled token embedding, the sinusoidal
position table read from `padding_idx + 1` on (fairseq's make_positions for right-padded text), a finite -1e4
padding mask, pre-norm layers (norm, attention, residual; norm, feed-forward, residual) and the final norm. The
tokenizer's contract ids swap fairseq's 0 and 1 as XLM-R's do (runtime/spm_tokenizer.py), and so does the table.
"""

from __future__ import annotations

from torch import nn

from ..contract import FINITE_MASK_VALUE
from ..errors import InputError
from .bert_text import BertTextTower, multi_head_attention

M2M_TYPES = ("m2m_100",)


class M2M100TextTower(BertTextTower):
    """(input_ids, attention_mask) -> L2-normalised [B, D] over an M2M100 encoder (`M2M100Model.encoder`)."""

    def __init__(self, encoder, pooling: str, projection=None):
        nn.Module.__init__(self)  # BertTextTower's checks read BERT's embeddings, which this encoder has not
        if pooling not in ("mean", "cls"):
            raise InputError(f"an NLLB text tower pools by mean or cls, not {pooling!r}")
        self.model, self.pooling, self.projection = encoder, pooling, projection
        # Hugging Face derives positions from the ids (not padding_idx); contract ids never hold fairseq's <s>, the
        # id the swap moves onto padding_idx, so the untouched forward numbers them as fairseq does
        self.restated, self.position_offset, self.rows_swapped = False, 0, None

    def token_table(self) -> nn.Embedding:
        return self.model.embed_tokens

    def restated_forward(self, ids, attention_mask):
        encoder = self.model
        n = ids.shape[1]
        start = encoder.embed_positions.padding_idx + 1
        x = encoder.embed_tokens(ids) + encoder.embed_positions.weights[start : start + n]
        additive = None
        if attention_mask is not None:
            additive = (1.0 - attention_mask.to(x.dtype))[:, None, None, :] * FINITE_MASK_VALUE
        for layer in encoder.layers:
            x = x + _attention(layer.self_attn, layer.self_attn_layer_norm(x), additive)
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        return encoder.layer_norm(x)


def _attention(attn, x, additive):
    q = attn.q_proj(x) * attn.scaling
    return attn.out_proj(
        multi_head_attention(q, attn.k_proj(x), attn.v_proj(x), attn.num_heads, attn.head_dim, additive)
    )
