"""The fidelity gate: does an artifact still retrieve like PyTorch fp32?

Each artifact replaces its own tower only; the other tower is PyTorch fp32 (the reference
embeddings saved at export), so a miss is attributable to exactly one file.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import recall_at


@dataclass(frozen=True)
class Gate:
    max_r1_drop: float = 0.005        # 0.5 recall points
    min_top10_overlap: float = 0.95
    min_cosine_mean: float = 0.99

    def misses(self, record: dict) -> list[str]:
        out = []
        drop = record["recall_at_1_fp32"] - record["recall_at_1"]
        if drop > self.max_r1_drop + 1e-9:
            out.append(f"R@1 {record['recall_at_1']:.3f} vs fp32 {record['recall_at_1_fp32']:.3f} "
                       f"(drop {100 * drop:.1f} points > {100 * self.max_r1_drop:.1f})")
        if record["top10_overlap"] < self.min_top10_overlap:
            out.append(f"top-10 overlap {record['top10_overlap']:.3f} < {self.min_top10_overlap}")
        if record["cosine_mean"] < self.min_cosine_mean:
            out.append(f"mean cosine {record['cosine_mean']:.4f} < {self.min_cosine_mean}")
        return out


DEFAULT_GATE = Gate()


def top_k_overlap(queries_a, gallery_a, queries_b, gallery_b, k: int = 10) -> float:
    top_a = np.argsort(-(queries_a @ gallery_a.T), axis=1)[:, :k]
    top_b = np.argsort(-(queries_b @ gallery_b.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_a, top_b)]))


def score(encoder: str, embeds: np.ndarray, reference: dict) -> dict:
    """Cosine vs the PyTorch reference and retrieval with this tower swapped in."""
    ref_img, ref_txt = reference["image_embeds"], reference["text_embeds"]
    embeds = embeds / np.linalg.norm(embeds, axis=1, keepdims=True).clip(1e-12)
    cos = (embeds * (ref_img if encoder == "image" else ref_txt)).sum(1)
    img, txt = (embeds, ref_txt) if encoder == "image" else (ref_img, embeds)
    recall, recall_fp32 = recall_at(img, txt), recall_at(ref_img, ref_txt)
    return {
        "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
        "recall_at_1": recall["t2i_r1"], "recall_at_5": recall["t2i_r5"], "recall_at_10": recall["t2i_r10"],
        "recall_at_1_fp32": recall_fp32["t2i_r1"], "recall_at_5_fp32": recall_fp32["t2i_r5"],
        "recall_at_10_fp32": recall_fp32["t2i_r10"],
        "i2t_recall_at_1": recall["i2t_r1"], "i2t_recall_at_5": recall["i2t_r5"], "i2t_recall_at_10": recall["i2t_r10"],
        "i2t_recall_at_1_fp32": recall_fp32["i2t_r1"],
        "top10_overlap": top_k_overlap(txt, img, ref_txt, ref_img),
    }
