"""The short-query text encoder: the same weights, run on the real tokens only.

A CLIP text transformer with a causal mask pools at EOT, so positions after EOT cannot change the
embedding: a 7-token query need not pay for 77 positions. open_clip's `encode_text` adds the full
77-row positional table and the 77x77 mask, which pins the traced graph to 77; this module
re-states the same forward with both sliced to the input's length, so the ONNX graph has a
dynamic `tokens` axis. The query path then feeds ids up to the last EOT (runtime/encoders.py).

Whether that is exact depends on the student: with a causal mask and EOT/argmax pooling it is
(proved per export: cosine vs the full-length PyTorch model on every held-out caption, >= 0.9999);
without one (MobileCLIP2's text tower is bidirectional: `no_causal_mask`) padding tokens feed the
pooled token, the check fails, and nothing is shipped: the manifest records the numbers
(`text.short_query`) so bench counts the full context for that student's physical limit.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedStudentError

EXACT_POOLS = ("argmax", "eos", "first")


def text_parts(model) -> dict:
    """The pieces of an open_clip text tower (CLIP keeps them on the model, CustomTextCLIP on .text)."""
    text = model.text if hasattr(getattr(model, "text", None), "token_embedding") else model
    if not hasattr(text, "token_embedding") or not hasattr(text, "positional_embedding"):
        raise UnsupportedStudentError("the short-query encoder needs an open_clip-style text tower "
                                      "(token_embedding, positional_embedding, transformer, ln_final)")
    if getattr(text, "cls_emb", None) is not None or getattr(text, "use_pad_mask", False):
        raise UnsupportedStudentError("text towers with a class token or padding mask are not re-stated here")
    pool = getattr(text, "pool_type", None) if text is not model else getattr(model, "text_pool_type", "argmax")
    eos = getattr(text, "eos_id", None) if text is not model else getattr(model, "text_eos_id", None)
    return {"tower": text, "pool": pool or "argmax", "eos": eos, "causal": getattr(text, "attn_mask", None) is not None}


class ShortQueryText(nn.Module):
    """int32 ids [B, n] (n <= context length) -> L2-normalised [B, D], sliced to n positions."""

    def __init__(self, model):
        super().__init__()
        parts = text_parts(model)
        self.tower, self.pool, self.eos = parts["tower"], parts["pool"], parts["eos"]
        if self.pool not in EXACT_POOLS and self.pool != "last":
            raise UnsupportedStudentError(f"text pooling {self.pool!r} is not supported by the short-query encoder")

    def forward(self, ids):
        t = self.tower
        n = ids.shape[1]
        x = t.token_embedding(ids) + t.positional_embedding[:n]
        mask = t.attn_mask[:n, :n] if getattr(t, "attn_mask", None) is not None else None
        x = t.ln_final(t.transformer(x, attn_mask=mask))
        rows = torch.arange(x.shape[0])
        if self.pool == "argmax":
            pooled = x[rows, ids.argmax(dim=-1)]
        elif self.pool == "eos":
            pooled = x[rows, (ids == self.eos).int().argmax(dim=-1)]
        elif self.pool == "first":
            pooled = x[:, 0]
        else:
            pooled = x[:, -1]
        proj = t.text_projection
        if proj is not None:
            pooled = proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
        return F.normalize(pooled, dim=-1)


def is_exact(model) -> bool:
    parts = text_parts(model)
    return parts["causal"] and parts["pool"] in EXACT_POOLS


def export_short_query(directory, *, progress=None) -> dict:
    """Exports text_encoder.dyn.onnx next to the contract's encoders and registers it in the manifest.

    Parity: every held-out caption run at its real length against the PyTorch fp32 reference at
    full length. An exact (causal) student must agree to cosine >= 0.9999 or the export fails.
    """
    import numpy as np
    import onnx

    from .. import contract
    from ..atomic import staged_directory, write_text_atomic
    from ..errors import ParityError
    from ..manifest import dump_manifest, file_record, read_manifest
    from ..quantize.calibration import evaluation_inputs
    from ..runtime.encoders import onnx_session, real_length
    from ..students import reload_student
    from . import onnx_export
    from .parity import compare
    from .rewrites import make_export_safe

    say = progress or (lambda message: None)
    root = Path(directory)
    manifest = read_manifest(root)
    say("loading the student for the short-query encoder")
    student = reload_student(manifest["student"])
    make_export_safe(student.text_encoder)
    model = student.text_encoder.model
    module = ShortQueryText(model).eval()
    exact = is_exact(model)
    ids = evaluation_inputs(root, manifest).for_encoder("text")
    lengths = [real_length(row) for row in ids]
    reference = np.load(root / manifest["evaluation"]["reference"])["text_embeds"]
    # At full length the re-statement must be the exported model itself; this separates "the student is
    # bidirectional" from "these are not the weights that were exported" (or a re-statement bug).
    with torch.no_grad():
        full = np.concatenate([module(torch.from_numpy(ids[i:i + 64])).numpy() for i in range(0, len(ids), 64)])
    at_full_length = compare(reference, full)
    if not at_full_length["passed"]:
        raise ParityError(f"the reloaded student does not reproduce the exported text encoder at full length (min "
                          f"cosine {at_full_length['cosine_min']:.6f}): its weights changed since the export; export "
                          "again", at_full_length)
    with staged_directory(root) as stage:
        path = stage / contract.SHORT_QUERY_ONNX
        say("exporting the short-query text encoder (dynamic token axis)")
        # Batch 1 (one query at a time, as the query path runs it): with only the token axis dynamic, every
        # reshape has a constant target and the graph carries no shape arithmetic.
        example = torch.from_numpy(ids[:1, : lengths[0]])
        onnx_export.export_encoder(module, example, path, contract.TEXT_INPUT, contract.TEXT_OUTPUT,
                                   input_axes={1: "tokens"})
        simplified = onnx_export.simplify(path)
        # Weights in a side file: ONNX Runtime maps external data instead of copying it, so token-embedding
        # rows no query touches never become resident (measured: session +13 MB instead of +33 MB, peak 58 vs
        # 93 MB for the embedded student).
        onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=contract.SHORT_QUERY_DATA, size_threshold=1024)
        onnx_export.check_contract(path, contract.TEXT_INPUT, 6, ["tokens"], contract.TEXT_OUTPUT, manifest["embed_dim"])
        say("checking the short-query encoder at each caption's real length")
        session = onnx_session(path, threads=0)
        embeds = np.concatenate([session.run(None, {contract.TEXT_INPUT: ids[i:i + 1, :n]})[0]
                                 for i, n in enumerate(lengths)])
        parity = {**compare(reference, embeds), "mean_tokens": round(float(np.mean(lengths)), 2),
                  "context_length": int(ids.shape[1]), "against": "PyTorch fp32 at full length (reference embeddings)"}
        if not parity["passed"]:
            # Not shipped: a query path that changes the embedding is not a speed-up. The manifest keeps the
            # numbers so bench knows every query of this student costs the full context.
            manifest["text"]["short_query"] = {"shipped": False, "exact": exact, "parity": parity}
            # A short-query encoder from an earlier run (and its quantized variants) goes too.
            stale = [a for a in manifest["artifacts"] if a.get("dynamic_length")]
            manifest["artifacts"] = [a for a in manifest["artifacts"] if not a.get("dynamic_length")]
            write_text_atomic(root / contract.MANIFEST, dump_manifest(manifest))
            for a in stale:
                for name in (a["path"], (a.get("external_data") or {}).get("path")):
                    if name:
                        (root / name).unlink(missing_ok=True)
            why = ("although the student is causal (a bug in the re-statement)" if exact else
                   "because the text tower has no causal mask: padding tokens feed the pooled token")
            raise ParityError(f"the short-query text encoder disagrees with the full-length model {why}: min cosine "
                              f"{parity['cosine_min']:.6f} over {len(ids)} captions; not exported", parity)
        manifest["text"]["short_query"] = {"shipped": True, "exact": exact, "artifact": contract.SHORT_QUERY_ONNX}
        fp32 = next(a for a in manifest["artifacts"] if a["path"] == contract.TEXT_ENCODER_ONNX)
        record = {**{k: fp32[k] for k in ("encoder", "format", "runtime", "precision")},
                  "name": "text_encoder.dyn",
                  "inputs": [{**fp32["inputs"][0], "shape": [1, "tokens"]}],
                  "outputs": [{**fp32["outputs"][0], "shape": [1, fp32["outputs"][0]["shape"][1]]}],
                  **file_record(stage, contract.SHORT_QUERY_ONNX), "simplify": simplified,
                  "external_data": file_record(stage, contract.SHORT_QUERY_DATA),
                  "dynamic_length": {"axis": 1, "max": int(ids.shape[1]), "exact": exact,
                                     "why": "causal mask and EOT pooling: positions after EOT cannot change the "
                                            "embedding", "parity": parity}}
        manifest["artifacts"] = [a for a in manifest["artifacts"] if a["path"] != contract.SHORT_QUERY_ONNX] + [record]
        (stage / contract.MANIFEST).write_text(dump_manifest(manifest), encoding="utf-8")
    return record
