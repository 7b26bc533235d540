"""The fidelity gate: does an artifact still retrieve like PyTorch fp32?

Each artifact replaces its own tower only; the other tower is PyTorch fp32 (the reference
embeddings saved at export), so a miss is attributable to exactly one file.

Degenerate students: an untrained tower maps every input to nearly the same direction (mean pairwise
cosine of its fp32 embeddings ~0.9 and up), or spreads them without any relation between a caption and
its image (a ViT-B-32 at random init: pairwise cosine 0.70 text / 0.44 image, yet fp32 t2i R@10 0.070 over
128 pairs, chance 0.078). Either way rankings are decided by noise and R@1 / top-10 overlap measure
nothing (that ViT-B-32: top-10 overlap 0.92 for an INT8 tower with cosine 0.998). Such students are gated on
cosine vs fp32 alone (mean and min) and every record says which test found them degenerate. Trained
students keep the full gate: their fp32 rankings are far above chance and their embeddings spread.

Evaluation sets in more than one language (a reference carrying `languages`, one per caption) are judged per
language too: each language's captions rank against the whole gallery, and an R@1 drop in one of them fails the
gate by the same paired test, even when gains in another language hide it in the overall number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import hit_probability, recall_at, t2i_hits_at_1

# fp32 R@10 at or below this many times chance (10 / pairs): the reference itself cannot rank
CHANCE_FACTOR = 2.0


@dataclass(frozen=True)
class Gate:
    max_r1_drop: float = 0.005  # 0.5 recall points
    min_top10_overlap: float = 0.95
    min_cosine_mean: float = 0.99
    min_cosine_min: float = 0.98  # degenerate students only (see module docstring)
    degenerate_pairwise_cosine: float = 0.8
    # Trained students: no sample may be destroyed. The embedded student's passing INT8 variants reach >= 0.987 per
    # sample; a caption an artifact breaks falls far below.
    min_cosine_floor: float = 0.9
    # An R@1 drop is damage only when the queries it loses outnumber those it gains beyond chance: one-sided exact
    # McNemar test on the captions whose hit flips (see r1_paired_test).
    r1_alpha: float = 0.05

    def misses(self, record: dict) -> list[str]:
        if record.get("degenerate"):
            out = []
            if record["cosine_mean"] < self.min_cosine_mean:
                out.append(f"mean cosine {record['cosine_mean']:.4f} < {self.min_cosine_mean}")
            if record["cosine_min"] < self.min_cosine_min:
                out.append(
                    f"min cosine {record['cosine_min']:.4f} < {self.min_cosine_min} (degenerate: "
                    f"{' and '.join(record.get('degenerate_because') or ['embeddings'])}; ranking metrics are "
                    "noise, so cosine is the gate)"
                )
            return out
        out = []
        drop = record["recall_at_1_fp32"] - record["recall_at_1"]
        paired = record.get("r1_paired") or {}
        # Records without the paired test (written before it existed) are judged on the drop alone.
        significant = paired.get("p_value", 0.0) < self.r1_alpha
        if drop > self.max_r1_drop + 1e-9 and significant:
            out.append(
                f"R@1 {record['recall_at_1']:.3f} vs fp32 {record['recall_at_1_fp32']:.3f} "
                f"(drop {100 * drop:.1f} points > {100 * self.max_r1_drop:.1f}"
                + (
                    f"; {paired['lost']} captions lost vs {paired['gained']} gained, paired p = "
                    f"{paired['p_value']:.3g} < {self.r1_alpha}"
                    if paired
                    else ""
                )
                + ")"
            )
        for language, part in (record.get("per_language") or {}).items():
            drop, paired = part["recall_at_1_fp32"] - part["recall_at_1"], part["r1_paired"]
            if drop > self.max_r1_drop + 1e-9 and paired["p_value"] < self.r1_alpha:
                out.append(
                    f"{language} captions: R@1 {part['recall_at_1']:.3f} vs fp32 {part['recall_at_1_fp32']:.3f} "
                    f"(drop {100 * drop:.1f} points > {100 * self.max_r1_drop:.1f}; {paired['lost']} lost vs "
                    f"{paired['gained']} gained, paired p = {paired['p_value']:.3g} < {self.r1_alpha})"
                )
        if record["cosine_min"] < self.min_cosine_floor:
            out.append(
                f"min cosine {record['cosine_min']:.4f} < {self.min_cosine_floor} (a sample the artifact destroys)"
            )
        if record["top10_overlap"] < self.min_top10_overlap:
            out.append(f"top-10 overlap {record['top10_overlap']:.3f} < {self.min_top10_overlap}")
        if record["cosine_mean"] < self.min_cosine_mean:
            out.append(f"mean cosine {record['cosine_mean']:.4f} < {self.min_cosine_mean}")
        return out


DEFAULT_GATE = Gate()


def r1_paired_test(hits_fp32: np.ndarray, hits: np.ndarray, alpha: float) -> dict:
    """Exact one-sided McNemar test on the captions whose R@1 hit differs between fp32 and the artifact.

    Under "no damage" a flip is as likely to lose a caption as to gain one, so `lost` ~ Binomial(lost + gained, 1/2);
    p_value = P(X >= lost). Deterministic (no resampling): the same embeddings give the same verdict.
    `min_detectable_drop`: the smallest R@1 drop this sample can call damage (every flip a loss: 2^-n < alpha)."""
    import math

    lost = int((hits_fp32 & ~hits).sum())
    gained = int((~hits_fp32 & hits).sum())
    n = lost + gained
    tail = sum(math.comb(n, i) for i in range(lost, n + 1))
    p_value = tail / 2**n if n else 1.0
    needed = math.ceil(math.log2(1 / alpha)) if alpha > 0 else n + 1
    samples = max(len(hits), 1)
    return {
        "lost": lost,
        "gained": gained,
        "p_value": float(f"{p_value:.6g}"),
        "alpha": alpha,
        "significant": bool(p_value < alpha),
        "samples": len(hits),
        "min_detectable_drop": round(needed / samples, 6),
    }


def top_k_overlap(queries_a, gallery_a, queries_b, gallery_b, k: int = 10) -> np.ndarray:
    """Per query: the share of its top-k under (a) that is also in its top-k under (b)."""
    top_a = np.argsort(-(queries_a @ gallery_a.T), axis=1)[:, :k]
    top_b = np.argsort(-(queries_b @ gallery_b.T), axis=1)[:, :k]
    return np.array([len(set(a) & set(b)) / k for a, b in zip(top_a, top_b)])


def mean_pairwise_cosine(embeds: np.ndarray, limit: int = 1000) -> float:
    """Mean cosine between distinct rows (the first `limit`): ~0 for a spread embedding, ~1 when degenerate."""
    x = embeds[:limit] / np.linalg.norm(embeds[:limit], axis=1, keepdims=True).clip(1e-12)
    n = len(x)
    if n < 2:
        return 0.0
    total = float(np.square(x.sum(0)).sum())  # sum over all pairs incl. i == j, which add n
    return (total - n) / (n * (n - 1))


def degeneracy(reference: dict, threshold: float, recall_fp32: dict) -> dict:
    pairwise = {tower: round(mean_pairwise_cosine(reference[f"{tower}_embeds"]), 4) for tower in ("image", "text")}
    pairs = len(reference["text_embeds"])
    chance = min(10, pairs) / max(pairs, 1)
    # text -> image, the direction the gate ranks by; image -> text counts captions repeated across the set
    at_chance = recall_fp32["t2i_r10"] <= CHANCE_FACTOR * chance
    why = [f"mean pairwise cosine >= {threshold}"] * (max(pairwise.values()) >= threshold) + [
        f"fp32 t2i R@10 <= {CHANCE_FACTOR:g} x chance ({chance:.3f})"
    ] * at_chance
    return {
        "pairwise_cosine_mean_fp32": pairwise,
        "fp32_ranking_at_chance": at_chance,
        "degenerate": bool(why),
        "degenerate_because": why,
    }


def with_languages(reference: dict, manifest: dict) -> dict:
    """`reference` plus each caption's language when the manifest's evaluation set has several (per-language gate)."""
    from ..data.scenes import caption_languages

    languages = caption_languages(manifest["evaluation"]["samples"], len(reference["text_embeds"]))
    return reference if languages is None else {**reference, "languages": languages}


def per_language(encoder: str, img, txt, reference: dict, cos, hits, hits_fp32, overlap, alpha: float) -> dict:
    """Text->image R@1 (vs fp32, with the paired test), top-10 overlap and, for the text tower, cosine, over each
    language's captions; every caption still ranks against the whole gallery. `cos`, `hits`, `hits_fp32` and
    `overlap` are score's per-caption numbers."""
    ref_img, ref_txt, languages = reference["image_embeds"], reference["text_embeds"], reference["languages"]
    r1, r1_fp32 = hit_probability(txt @ img.T, 1), hit_probability(ref_txt @ ref_img.T, 1)
    out = {}
    for language in sorted(set(languages.tolist())):
        rows = languages == language
        out[language] = {
            "captions": int(rows.sum()),
            "recall_at_1": float(r1[rows].mean()),
            "recall_at_1_fp32": float(r1_fp32[rows].mean()),
            "r1_paired": r1_paired_test(hits_fp32[rows], hits[rows], alpha),
            "top10_overlap": float(overlap[rows].mean()),
            **(
                {"cosine_mean": float(cos[rows].mean()), "cosine_min": float(cos[rows].min())}
                if encoder == "text"
                else {}
            ),
        }
    return out


def score(encoder: str, embeds: np.ndarray, reference: dict, gate: Gate = DEFAULT_GATE, population=None) -> dict:
    """Cosine vs the PyTorch reference and retrieval with this tower swapped in.

    `population`: the whole held-out reference when `reference` is a subset of it (a length bucket sees only the
    captions that fit): whether the student is degenerate is a property of the student, judged on all of it."""
    ref_img, ref_txt = reference["image_embeds"], reference["text_embeds"]
    embeds = embeds / np.linalg.norm(embeds, axis=1, keepdims=True).clip(1e-12)
    cos = (embeds * (ref_img if encoder == "image" else ref_txt)).sum(1)
    img, txt = (embeds, ref_txt) if encoder == "image" else (ref_img, embeds)
    recall, recall_fp32 = recall_at(img, txt), recall_at(ref_img, ref_txt)
    hits, hits_fp32 = t2i_hits_at_1(img, txt), t2i_hits_at_1(ref_img, ref_txt)
    paired = r1_paired_test(hits_fp32, hits, gate.r1_alpha)
    overlap = top_k_overlap(txt, img, ref_txt, ref_img)
    return {
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "cosine_p1": float(np.percentile(cos, 1)),
        "r1_paired": paired,
        "recall_at_1": recall["t2i_r1"],
        "recall_at_5": recall["t2i_r5"],
        "recall_at_10": recall["t2i_r10"],
        "recall_at_1_fp32": recall_fp32["t2i_r1"],
        "recall_at_5_fp32": recall_fp32["t2i_r5"],
        "recall_at_10_fp32": recall_fp32["t2i_r10"],
        "i2t_recall_at_1": recall["i2t_r1"],
        "i2t_recall_at_5": recall["i2t_r5"],
        "i2t_recall_at_10": recall["i2t_r10"],
        "i2t_recall_at_1_fp32": recall_fp32["i2t_r1"],
        "top10_overlap": float(overlap.mean()),
        **(
            {"per_language": per_language(encoder, img, txt, reference, cos, hits, hits_fp32, overlap, gate.r1_alpha)}
            if reference.get("languages") is not None and len(set(reference["languages"].tolist())) > 1
            else {}
        ),
        **(
            degeneracy(reference, gate.degenerate_pairwise_cosine, recall_fp32)
            if population is None
            else degeneracy(
                population,
                gate.degenerate_pairwise_cosine,
                recall_at(population["image_embeds"], population["text_embeds"]),
            )
        ),
    }
