"""T5-family text towers (open_clip's mT5 towers: the encoder stack of a Hugging Face T5 / MT5 model).

Until export the tower runs the untouched Hugging Face encoder (the parity reference); `use_restated_forward` switches
it to the same arithmetic in plain ops, as bert_text does for BERT: the relative position bias of the first block
(Hugging Face's own `compute_bias`, so one graph serves any length) plus a finite -1e4 padding mask instead of
finfo.min, unscaled matmul-softmax attention (T5 folds the 1/sqrt(d) into its initialisation), the blocks' RMS
norms and feed-forward modules called as they are (plain ops already). Pooling and projection are bert_text's.
"""

from __future__ import annotations

from torch import nn

from ..contract import FINITE_MASK_VALUE
from ..errors import InputError
from .bert_text import BertTextTower, multi_head_attention

T5_TYPES = ("t5", "mt5")
T5_POOLINGS = ("mean", "cls")  # a T5 encoder has no pooler


class T5TextTower(BertTextTower):
    """(input_ids, attention_mask) -> L2-normalised [B, D] over a T5 encoder stack (`MT5Model.encoder`)."""

    def __init__(self, stack, pooling: str, projection=None):
        nn.Module.__init__(self)  # BertTextTower's checks read BERT's embeddings, which a T5 stack has not
        if pooling not in T5_POOLINGS:
            raise InputError(f"a T5 text tower pools by {' or '.join(T5_POOLINGS)}, not {pooling!r}")
        self.model, self.pooling, self.projection = stack, pooling, projection
        self.restated, self.position_offset, self.rows_swapped = False, 0, None

    def restated_forward(self, ids, attention_mask):
        stack = self.model
        x = stack.embed_tokens(ids)
        n = ids.shape[1]
        bias = stack.block[0].layer[0].SelfAttention.compute_bias(n, n)  # [1, heads, n, n]
        if attention_mask is not None:
            bias = bias + (1.0 - attention_mask.to(x.dtype))[:, None, None, :] * FINITE_MASK_VALUE
        for block in stack.block:
            attention, feed_forward = block.layer[0], block.layer[-1]
            x = x + _attention(attention.SelfAttention, attention.layer_norm(x), bias)
            x = feed_forward(x)  # RMS norm, (gated) dense, residual
        return stack.final_layer_norm(x)


def _attention(attn, x, bias):
    heads, size = attn.n_heads, attn.key_value_proj_dim
    return attn.o(multi_head_attention(attn.q(x), attn.k(x), attn.v(x), heads, size, bias))
