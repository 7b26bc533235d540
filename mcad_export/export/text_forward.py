"""open_clip's text forward re-stated for one query: sliced to its tokens, in 2-D, pooled row only at the end.

open_clip's `encode_text` adds the full 77-row positional table and the 77x77 mask, which pins a
traced graph to 77 positions. `QueryText` re-states the same computation with both sliced to the
input's length, so one graph serves any length (the short-query encoder) or a fixed one (the
length buckets of static NPU targets). Because it runs one query at a time it also:
- works on [tokens, width] matrices: ONNX Runtime then runs each Linear as one Gemm with no
  Reshape on either side (the embedded student's graph: 161 -> ~90 nodes after ORT's fusions;
  per-node cost is most of its latency);
- folds the 1/sqrt(head_dim) scale into the query weights;
- runs the last block's attention query, output projection and MLP on the pooled row only: no
  other row of the last block reaches the embedding (about 5/6 of that block's matmuls).
Every change is exact arithmetic up to fp32 rounding, and each export proves it against the
full-length PyTorch model (export/short_query.py). Blocks of another shape fall back to the tower's
own transformer call, still sliced.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..contract import FINITE_MASK_VALUE
from ..errors import UnsupportedStudentError
from .rewrites import PlainMultiheadAttention

EXACT_POOLS = ("argmax", "eos", "first")


def text_parts(model) -> dict:
    """The pieces of an open_clip text tower (CLIP keeps them on the model, CustomTextCLIP on .text)."""
    text = model.text if hasattr(getattr(model, "text", None), "token_embedding") else model
    if not hasattr(text, "token_embedding") or not hasattr(text, "positional_embedding"):
        raise UnsupportedStudentError(
            "the short-query encoder needs an open_clip-style text tower "
            "(token_embedding, positional_embedding, transformer, ln_final)"
        )
    if getattr(text, "cls_emb", None) is not None or getattr(text, "use_pad_mask", False):
        raise UnsupportedStudentError("text towers with a class token or padding mask are not re-stated here")
    pool = getattr(text, "pool_type", None) if text is not model else getattr(model, "text_pool_type", "argmax")
    eos = getattr(text, "eos_id", None) if text is not model else getattr(model, "text_eos_id", None)
    return {"tower": text, "pool": pool or "argmax", "eos": eos, "causal": getattr(text, "attn_mask", None) is not None}


def is_exact(model) -> bool:
    """Whether cutting a query after EOT cannot change its embedding: a causal mask and EOT/first pooling."""
    parts = text_parts(model)
    return parts["causal"] and parts["pool"] in EXACT_POOLS


def _standard_block(block) -> bool:
    # open_clip's ResidualAttentionBlock after export/rewrites.py (self-attention only).
    return (
        isinstance(getattr(block, "attn", None), PlainMultiheadAttention)
        and not hasattr(block, "ln_1_kv")
        and all(hasattr(block, name) for name in ("ln_1", "ls_1", "ln_2", "mlp", "ls_2"))
    )


class _QueryAttention(nn.Module):
    """A PlainMultiheadAttention's weights as separate Q, K, V projections, the query scale folded into Q.

    Separate rather than one packed [3W, W] Gemm: per-tensor INT8 then gets one scale per projection (packed,
    the scaled-down Q shared K's and V's range and the quantized short-query encoders missed the R@1 gate).
    """

    def __init__(self, attn: PlainMultiheadAttention):
        super().__init__()
        width = attn.in_proj_weight.shape[1]
        weight = attn.in_proj_weight.detach()
        bias = attn.in_proj_bias.detach() if attn.in_proj_bias is not None else torch.zeros(3 * width)
        scale = attn.head_dim**-0.5
        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        for proj, w, b, factor in zip((self.q, self.k, self.v), weight.chunk(3), bias.chunk(3), (scale, 1.0, 1.0)):
            proj.weight = nn.Parameter(w * factor, requires_grad=False)
            proj.bias = nn.Parameter(b * factor, requires_grad=False)
        self.out_proj, self.heads, self.head_dim, self.width = attn.out_proj, attn.num_heads, attn.head_dim, width

    def _heads(self, x):
        return x.reshape(-1, self.heads, self.head_dim).transpose(0, 1)  # [heads, rows, head_dim]

    def forward(self, h, mask, rows):
        """h [n, W] -> [n or len(rows), W]; with `rows`, only those query rows are computed."""
        q = self._heads(self.q(h if rows is None else h[rows]))
        k, v = self._heads(self.k(h)), self._heads(self.v(h))
        scores = q @ k.transpose(1, 2)
        if mask is not None:
            scores = scores + (mask if rows is None else mask[rows])
        out = (scores.softmax(-1) @ v).transpose(0, 1).reshape(-1, self.width)
        return self.out_proj(out)


class QueryText(nn.Module):
    """int32 ids [1, n] (n <= context length) -> L2-normalised [1, D]: one query, only its n positions."""

    def __init__(self, model):
        super().__init__()
        parts = text_parts(model)
        self.tower, self.pool, self.eos = parts["tower"], parts["pool"], parts["eos"]
        if self.pool not in EXACT_POOLS and self.pool != "last":
            raise UnsupportedStudentError(f"text pooling {self.pool!r} is not supported by the short-query encoder")
        blocks = list(getattr(self.tower.transformer, "resblocks", []))
        self.restated = bool(blocks) and all(_standard_block(b) for b in blocks)
        self.attention = nn.ModuleList([_QueryAttention(b.attn) for b in blocks] if self.restated else [])
        # Finite (rewrites.py) and sliced per input; a buffer so the traced graph slices a constant.
        mask = getattr(self.tower, "attn_mask", None)
        self.register_buffer(
            "mask", None if mask is None else mask.detach().clamp(min=FINITE_MASK_VALUE).float(), persistent=False
        )

    def pooled_row(self, ids):
        if self.pool == "argmax":
            return ids[0].argmax(dim=-1, keepdim=True)
        if self.pool == "eos":
            return (ids[0] == self.eos).int().argmax(dim=-1, keepdim=True)
        if self.pool == "first":
            return torch.zeros(1, dtype=torch.long)
        return torch.full((1,), ids.shape[1] - 1, dtype=torch.long)

    def forward(self, ids):
        t = self.tower
        n = ids.shape[1]
        mask = self.mask[:n, :n] if self.mask is not None else None
        rows = self.pooled_row(ids)
        if self.restated:
            x = t.token_embedding(ids[0]) + t.positional_embedding[:n]  # [n, W]
            blocks = list(t.transformer.resblocks)
            for i, (block, attention) in enumerate(zip(blocks, self.attention)):
                last = i == len(blocks) - 1
                attended = attention(block.ln_1(x), mask, rows if last else None)
                x = (x[rows] if last else x) + block.ls_1(attended)
                x = x + block.ls_2(block.mlp(block.ln_2(x)))
            pooled = t.ln_final(x)  # [1, W]
        else:
            x = t.token_embedding(ids) + t.positional_embedding[:n]
            pooled = t.ln_final(t.transformer(x, attn_mask=mask))[0, rows]
        proj = t.text_projection
        if proj is not None:
            pooled = proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
        return F.normalize(pooled, dim=-1)
