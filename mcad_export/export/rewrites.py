"""Export-safe rewrites, applied in place to a loaded student before tracing.

Each rewrite is numerically identical in fp32 and exists because a downstream tool fails
without it (see ../shared/notes/toolchain.md):
- finite causal mask: a -inf additive mask makes int8 calibrators compute ~1e36 scales
  (ai-edge-quantizer aborts the process, QNN fails to compose the graph);
- plain matmul-softmax attention: fused SDPA / native MHA kernels do not lower in LiteRT and
  hide the mask from quantizers;
- int32 token ids are handled by the text wrapper's input dtype (int64 ArgMax is rejected by
  NPUs and several converters);
- BERT-family towers run a re-stated forward (students/bert_text.py) with a finite -1e4 mask instead of
  Hugging Face's finfo.min one, for the same calibrator reason.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..contract import FINITE_MASK_VALUE


class PlainMultiheadAttention(nn.Module):
    """nn.MultiheadAttention with the same parameters, computed as explicit matmul-softmax."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise NotImplementedError("only standard packed-projection MultiheadAttention is rewritten")
        self.num_heads = mha.num_heads
        self.head_dim = mha.head_dim
        self.batch_first = mha.batch_first
        self.in_proj_weight = mha.in_proj_weight
        self.in_proj_bias = mha.in_proj_bias
        self.out_proj = mha.out_proj

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=False,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        batch, q_len, width = query.shape
        k_len = key.shape[1]

        def heads(x):
            # -1 for the length: a graph with a dynamic token axis then needs no Shape/Gather/Concat chain per
            # reshape (the short-query encoder lost ~100 such nodes, and most of its latency, this way).
            return x.reshape(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)

        q = heads(F.linear(query, w_q, b_q)) * (self.head_dim**-0.5)
        k = heads(F.linear(key, w_k, b_k))
        v = heads(F.linear(value, w_v, b_v))
        scores = q @ k.transpose(-2, -1)
        if attn_mask is not None:
            mask = _additive(attn_mask, scores.dtype)
            if mask.dim() == 3:  # [batch * heads, q, k] as nn.MultiheadAttention accepts it
                mask = mask.view(batch, self.num_heads, q_len, k_len)
            scores = scores + mask
        if key_padding_mask is not None:
            scores = scores + _additive(key_padding_mask, scores.dtype)[:, None, None, :]
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, -1, width)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None


def _additive(mask: torch.Tensor, dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype).masked_fill(mask, FINITE_MASK_VALUE)
    return mask.to(dtype).clamp(min=FINITE_MASK_VALUE)


def make_export_safe(model: nn.Module) -> dict:
    """Rewrites `model` in place; returns counts of what changed (recorded in the manifest)."""
    counts = {"plain_attention": 0, "finite_masks": 0, "fused_attention_disabled": 0, "restated_bert_forward": 0}
    for parent in list(model.modules()):
        # BERT-family towers (students/bert_text.py) swap HF's forward for the same arithmetic in plain ops.
        if callable(getattr(parent, "use_restated_forward", None)):
            counts["restated_bert_forward"] += parent.use_restated_forward()
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(parent, name, PlainMultiheadAttention(child))
                counts["plain_attention"] += 1
        for name, buf in list(parent.named_buffers(recurse=False)):
            if "mask" in name and buf is not None and buf.is_floating_point() and torch.isinf(buf).any():
                parent._buffers[name] = buf.clamp(min=FINITE_MASK_VALUE)
                counts["finite_masks"] += 1
        # timm (fused_attn) and open_clip's own Attention (use_fsdpa) pick SDPA at run time.
        for flag in ("fused_attn", "use_fsdpa"):
            if getattr(parent, flag, False) is True:
                setattr(parent, flag, False)
                counts["fused_attention_disabled"] += 1
    return counts
