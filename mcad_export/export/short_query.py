"""The short-query text encoder: the same weights, run on the real tokens only.

A CLIP text transformer with a causal mask pools at EOT, so positions after EOT cannot change the
embedding: a 7-token query need not pay for 77 positions. `text_forward.QueryText` re-states the
forward for one query with a dynamic `tokens` axis; the query path feeds ids up to the last EOT
(runtime/encoders.py).

Whether that is exact depends on the student: with a causal mask and EOT/argmax pooling it is
(proved per export: cosine vs the full-length PyTorch model on every held-out caption, >= 0.9999).
Without one (MobileCLIP2's text tower is bidirectional: `no_causal_mask`) padding tokens feed the
pooled token and the cut fails the check; the one-query forward then ships with
`cut_after_eot: false` (every runner feeds it all positions; it still skips most of the last
block), proved at full length, and `text.short_query` keeps the cut's numbers so bench counts the
full context for that student's physical limit. Length buckets are cuts, so only causal students
get them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import contract
from ..atomic import locks_folder
from ..errors import UnsupportedStudentError
from .text_forward import QueryText, is_exact

# Held-out captions a bidirectional tower's cut after EOT must shorten before a passing parity counts as proof.
MIN_CUT_SAMPLES = 16


@locks_folder("short-query")
def export_short_query(directory, *, buckets=None, progress=None) -> dict:
    """Exports text_encoder.dyn.onnx next to the contract's encoders and registers it in the manifest.

    Parity: every held-out caption run at its real length against the PyTorch fp32 reference at
    full length. An exact (causal) student must agree to cosine >= 0.9999 or the export fails.
    `buckets` (default contract.LENGTH_BUCKETS): static-length twins for NPU targets, each proved the
    same way on the captions that fit it; () for none.
    """
    import numpy as np
    import onnx

    from ..atomic import staged_directory
    from ..errors import ParityError
    from ..guard import reference_embeddings
    from ..manifest import dump_manifest, file_record, read_manifest
    from ..quantize.calibration import evaluation_inputs
    from ..runtime.encoders import onnx_session, real_lengths
    from ..students import reload_student
    from . import onnx_export, torch_inputs
    from .parity import compare
    from .rewrites import make_export_safe

    say = progress or (lambda message: None)
    root = Path(directory)
    manifest = read_manifest(root)
    say("loading the student for the short-query encoder")
    student = reload_student(manifest["student"])
    make_export_safe(student.text_encoder)
    ids = evaluation_inputs(root, manifest).for_encoder("text")
    lengths = real_lengths(ids).tolist()
    reference = reference_embeddings(root, manifest)["text_embeds"]
    try:
        module, bucket_module, bucket_names, exact = _forwards(student)
    except UnsupportedStudentError as e:
        _record_uncut_tower(root, manifest, student, ids, lengths, reference, e)  # raises, with the number
    # At full length the re-statement must be the exported model itself; this separates "the student is
    # bidirectional" from "these are not the weights that were exported" (or a re-statement bug).
    with torch.no_grad():
        full = np.concatenate(
            [bucket_module(*torch_inputs(ids[i : i + 1], bucket_names)).numpy() for i in range(len(ids))]
        )
    at_full_length = compare(reference, full)
    if not at_full_length["passed"]:
        raise ParityError(
            f"the reloaded student does not reproduce the exported text encoder at full length (min "
            f"cosine {at_full_length['cosine_min']:.6f}): its weights changed since the export; export "
            "again",
            at_full_length,
        )
    with staged_directory(root) as stage:
        path = stage / contract.SHORT_QUERY_ONNX
        say("exporting the short-query text encoder (dynamic token axis)")
        # Batch 1 (one query at a time, as the query path runs it): with only the token axis dynamic, every
        # reshape has a constant target and the graph carries no shape arithmetic.
        example = torch.from_numpy(ids[:1, : lengths[0]])
        onnx_export.export_encoder(
            module, example, path, contract.TEXT_INPUT, contract.TEXT_OUTPUT, input_axes={1: "tokens"}
        )
        simplified = onnx_export.simplify(path)
        # Weights in a side file: ONNX Runtime maps external data instead of copying it, so token-embedding
        # rows no query touches never become resident (measured: session +13 MB instead of +33 MB, peak 58 vs
        # 93 MB for the embedded student).
        onnx.save_model(
            onnx.load(str(path)),
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=contract.SHORT_QUERY_DATA,
            size_threshold=1024,
        )
        onnx_export.check_contract(
            path, contract.TEXT_INPUT, 6, ["tokens"], contract.TEXT_OUTPUT, manifest["embed_dim"]
        )
        say("checking the short-query encoder at each caption's real length")
        session = onnx_session(path, threads=0)
        embeds = np.concatenate(
            [session.run(None, {contract.TEXT_INPUT: ids[i : i + 1, :n]})[0] for i, n in enumerate(lengths)]
        )
        parity = {
            **compare(reference, embeds),
            "mean_tokens": round(float(np.mean(lengths)), 2),
            "context_length": int(ids.shape[1]),
            "against": "PyTorch fp32 at full length (reference embeddings)",
            "cut_samples": int(sum(n < ids.shape[1] for n in lengths)),
        }
        # A cut is proved only on captions it shortens: where none or few are (left padding, captions as long as
        # the context) a passing parity says nothing about short queries, so a tower that is not causal by
        # construction is fed every position.
        cut = parity["passed"] and (exact or parity["cut_samples"] >= MIN_CUT_SAMPLES)
        if not cut and exact:
            # A causal student must survive the cut: this is a re-statement bug, and nothing ships.
            manifest["text"]["short_query"] = {"shipped": False, "exact": exact, "parity": parity}
            _drop_stale_short_query(root, manifest)
            raise ParityError(
                f"the short-query text encoder disagrees with the full-length model although the "
                f"student is causal: min cosine {parity['cosine_min']:.6f} over {len(ids)} captions; "
                "not exported",
                parity,
            )
        if not cut:
            # Bidirectional: padding feeds the pooled token, so every query keeps all positions. The one-query
            # forward still saves the last block's rows; it ships fed whole, proved at full length.
            say("bidirectional text tower: checking the one-query encoder at full length")
            cut_parity = parity
            embeds = np.concatenate(
                [session.run(None, {contract.TEXT_INPUT: ids[i : i + 1]})[0] for i in range(len(ids))]
            )
            parity = _full_length_parity(reference, embeds, ids)
            if not parity["passed"]:
                raise ParityError(
                    f"the one-query text encoder disagrees with the full-length model at full length: "
                    f"min cosine {parity['cosine_min']:.6f}; not exported",
                    parity,
                )
        manifest["text"]["short_query"] = {
            "shipped": True,
            "exact": exact,
            "cut_after_eot": cut,
            "artifact": contract.SHORT_QUERY_ONNX,
            **({} if cut else {"cut_parity": cut_parity}),
        }
        fp32 = next(a for a in manifest["artifacts"] if a["path"] == contract.TEXT_ENCODER_ONNX)
        why = (
            "attention mask: padding is kept out of attention and pooling, so the real tokens alone give the "
            "same embedding"
            if student.text_masked
            else "causal mask and EOT pooling: positions after EOT cannot change the embedding"
            if cut
            else "no causal mask: padding tokens feed the pooled token (min cosine "
            f"{cut_parity['cosine_min']:.4f} when cut after EOT), so it is fed every position"
            if cut_parity["cut_samples"] >= MIN_CUT_SAMPLES
            else f"no causal mask, and only {cut_parity['cut_samples']} of {len(ids)} captions end before the "
            "context (left padding or long captions), too few to prove a cut: it is fed every position"
        )
        record = {
            **{k: fp32[k] for k in ("encoder", "format", "runtime", "precision")},
            "name": "text_encoder.dyn",
            "inputs": [{**fp32["inputs"][0], "shape": [1, "tokens"]}],
            "outputs": [{**fp32["outputs"][0], "shape": [1, fp32["outputs"][0]["shape"][1]]}],
            **file_record(stage, contract.SHORT_QUERY_ONNX),
            "simplify": simplified,
            "external_data": file_record(stage, contract.SHORT_QUERY_DATA),
            "dynamic_length": {
                "axis": 1,
                "max": int(ids.shape[1]),
                "exact": exact,
                "cut_after_eot": cut,
                "why": why,
                "parity": parity,
            },
        }
        manifest["artifacts"] = [
            a
            for a in manifest["artifacts"]
            if a["path"] not in (contract.SHORT_QUERY_ONNX, contract.SHORT_QUERY_TFLITE)
        ] + [record]
        twin = next((a for a in manifest["artifacts"] if a["path"] == contract.TEXT_ENCODER_TFLITE), None)
        if not cut and twin is not None and not student.text_masked:
            # The export made TFLite twins, and this one-query forward is fed every position: its TFLite twin is
            # static and exact, and XNNPACK runs it faster than ONNX Runtime at 77 positions (benchmarks/README).
            twin_record, outcome = _export_tflite_one_query(module, stage, ids, reference, twin, record, say)
            manifest["artifacts"] += [twin_record] if twin_record else []
            manifest["text"]["short_query"]["tflite"] = outcome
        previous = {b["path"]: b.get("sha256") for b in manifest["text"].get("length_buckets", [])}
        wanted = (
            sorted(
                {int(b) for b in (contract.LENGTH_BUCKETS if buckets is None else buckets) if 0 < int(b) < ids.shape[1]}
            )
            if cut
            else []
        )  # a bucket is a cut
        manifest["text"]["length_buckets"] = [
            _export_bucket(bucket_module, bucket_names, stage, tokens, ids, lengths, reference, fp32, say)
            for tokens in wanted
        ]
        (stage / contract.MANIFEST).write_text(dump_manifest(manifest), encoding="utf-8")
    kept = {b["path"] for b in manifest["text"]["length_buckets"]}
    for name, sha256 in previous.items():
        if name not in kept:
            _remove_own(root, name, sha256)
    return record


def _record_uncut_tower(root: Path, manifest: dict, student, ids, lengths, reference, why: Exception):
    """A tower with no re-statement here (a Hugging Face SigLIP text model): the query path feeds every position
    to text_encoder.onnx, which is exact by construction. What cutting after EOS would cost is measured in PyTorch on
    the held-out captions and recorded, so the skip says it with a number (SigLIP attends to its pads and pools
    the last position). Raises UnsupportedStudentError: nothing is exported."""
    import numpy as np
    import torch

    from ..atomic import write_text_atomic
    from ..manifest import dump_manifest
    from .parity import compare

    if student.text_masked:
        raise why
    try:
        with torch.no_grad():
            cut = np.concatenate(
                [
                    student.text_encoder(torch.from_numpy(ids[i : i + 1, :n]).long()).numpy()
                    for i, n in enumerate(lengths)
                ]
            )
    except Exception:  # noqa: BLE001 - a tower that cannot take a shorter input: only the first reason matters
        raise why from None
    parity = {**compare(reference, cut), "mean_tokens": round(float(np.mean(lengths)), 2)}
    if parity["passed"]:
        raise why  # the cut would be exact, but there is no re-statement to export it with
    manifest["text"]["short_query"] = {
        "shipped": False,
        "exact": False,
        "cut_after_eot": False,
        "cut_parity": parity,
        "why": f"{student.text_pooling}: padding feeds the pooled position, so the one-query path is "
        f"text_encoder.onnx fed every position (exact); cut after EOS: min cosine {parity['cosine_min']:.4f}",
    }
    write_text_atomic(root / contract.MANIFEST, dump_manifest(manifest), root=root)
    raise UnsupportedStudentError(
        f"no short-query encoder: this text tower pools the {student.text_pooling.split(' (')[0]} with its padding "
        f"attended, so every query is fed all {ids.shape[1]} positions by text_encoder.onnx, which is exact; cut after "
        f"EOS it would give mean cosine {parity['cosine_mean']:.4f} (min {parity['cosine_min']:.4f}) over "
        f"{len(ids)} held-out captions"
    )


def _forwards(student):
    """(one-query module, bucket module, the bucket's input names, exact). open_clip towers get
    text_forward.QueryText for both; a masked tower is both itself: fed only real tokens it needs no mask (traced
    with one input), while its static buckets take the mask like the full model."""
    names = list(contract.text_inputs(student.text_masked))
    if student.text_masked:
        tower = student.text_encoder.eval()
        return tower, tower, names, True
    module = QueryText(student.text_encoder.model).eval()
    return module, module, names, is_exact(student.text_encoder.model)


def _export_bucket(
    module, names: list[str], stage: Path, tokens: int, ids, lengths, reference, fp32: dict, say
) -> dict:
    """One static [1, tokens] text encoder, proved on every held-out caption that fits it (real length <= tokens)."""
    import numpy as np

    from ..errors import ParityError
    from ..manifest import file_record
    from ..runtime.encoders import onnx_session, text_feed
    from . import onnx_export, torch_inputs
    from .parity import compare

    fits = [i for i, n in enumerate(lengths) if n <= tokens]
    if not fits:
        raise ParityError(
            f"no held-out caption fits a {tokens}-token bucket, so it cannot be checked; choose larger "
            "buckets (--buckets)"
        )
    rel = contract.length_bucket_onnx(tokens)
    path = stage / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    say(f"exporting the {tokens}-token bucket of the text encoder")
    example = torch_inputs(ids[fits[0] : fits[0] + 1, :tokens], names)
    onnx_export.export_encoder(module, example, path, names, contract.TEXT_OUTPUT, input_axes={})
    simplified = onnx_export.simplify(path)
    onnx_export.check_contract(path, names, 6, [tokens], contract.TEXT_OUTPUT, fp32["outputs"][0]["shape"][1])
    session = onnx_session(path, threads=0)
    # Ids as the tokenizer pads them (zeros after EOT), cut to the bucket: what a static NPU graph is fed.
    embeds = np.concatenate([session.run(None, text_feed(names, ids[i : i + 1, :tokens]))[0] for i in fits])
    parity = {
        **compare(reference[fits], embeds),
        "covers": round(len(fits) / len(ids), 4),
        "against": "PyTorch fp32 at full length (reference embeddings), captions that fit",
    }
    if not parity["passed"]:
        raise ParityError(
            f"the {tokens}-token bucket disagrees with the full-length model: min cosine "
            f"{parity['cosine_min']:.6f} over {len(fits)} captions; not exported",
            parity,
        )
    return {
        "tokens": tokens,
        **file_record(stage, rel),
        "simplify": simplified,
        "inputs": [{**i, "shape": [1, tokens]} for i in fp32["inputs"]],
        "outputs": [{**fp32["outputs"][0], "shape": [1, fp32["outputs"][0]["shape"][1]]}],
        "parity": parity,
    }


def _full_length_parity(reference, embeds, ids) -> dict:
    """Parity of a one-query encoder fed every position of every held-out caption (a bidirectional tower's)."""
    from .parity import compare

    return {
        **compare(reference, embeds),
        "mean_tokens": float(ids.shape[1]),
        "context_length": int(ids.shape[1]),
        "against": "PyTorch fp32 at full length (reference embeddings)",
    }


def _export_tflite_one_query(module, stage: Path, ids, reference, twin: dict, record: dict, say):
    """(record or None, outcome): tflite/text_encoder.dyn.tflite, the one-query forward at a static [1, context],
    proved at full length. A secondary artifact: when it cannot be made, the ONNX one still ships and the
    manifest says why (text.short_query.tflite)."""
    from ..errors import first_line
    from ..manifest import file_record
    from ..runtime.encoders import tflite_embed
    from . import tflite_export

    say("converting the one-query text encoder to TFLite (static: a bidirectional tower sees every position)")
    path = stage / contract.SHORT_QUERY_TFLITE
    try:
        tflite_export.export_tflite(module, torch.from_numpy(ids[:1]), path, contract.TEXT_INPUT, contract.TEXT_OUTPUT)
    except Exception as error:  # litert-torch's lowering errors have no common type; the message is the record
        path.unlink(missing_ok=True)
        return None, {"shipped": False, "why": f"litert-torch: {type(error).__name__}: {first_line(error, 300)}"}
    say("checking the TFLite one-query encoder at full length")
    parity = _full_length_parity(reference, tflite_embed(path, ids), ids)
    if not parity["passed"]:
        path.unlink()
        return None, {"shipped": False, "why": f"parity min cosine {parity['cosine_min']:.6f}", "parity": parity}
    static = {k: v for k, v in record["dynamic_length"].items() if k != "axis"}  # static: every position fed
    artifact = {
        **{k: twin[k] for k in ("encoder", "format", "runtime", "precision", "inputs", "outputs", "signature")},
        "name": "text_encoder.dyn.tflite",
        **file_record(stage, contract.SHORT_QUERY_TFLITE),
        "converter": twin.get("converter", "litert-torch"),
        "dynamic_length": {**static, "parity": parity},
    }
    return artifact, {"shipped": True, "artifact": contract.SHORT_QUERY_TFLITE}


def _drop_stale_short_query(root: Path, manifest: dict) -> None:
    """Writes the manifest without short-query artifacts (and their quantized variants) or buckets, then deletes
    their files: an earlier run's encoder must not outlive a failed check."""
    from ..atomic import write_text_atomic
    from ..manifest import dump_manifest

    def derived(a):  # the short-query encoder, its variants, and the quantized buckets (compiled ones stay)
        return a.get("dynamic_length") or (a.get("length_bucket") and "target" not in a)

    stale = [a for a in manifest["artifacts"] if derived(a)]
    manifest["artifacts"] = [a for a in manifest["artifacts"] if not derived(a)]
    stale_buckets = manifest["text"].pop("length_buckets", [])
    write_text_atomic(root / contract.MANIFEST, dump_manifest(manifest), root=root)
    records = [r for a in stale for r in [a, *([a["external_data"]] if a.get("external_data") else [])]]
    for record in records + stale_buckets:
        if isinstance(record, dict) and record.get("path"):
            _remove_own(root, record["path"], record.get("sha256"))


def _remove_own(root: Path, relpath: str, sha256: str | None) -> None:
    """Deletes a file this stage once wrote, named as the contract names it and still holding the bytes its record
    lists; any other manifest string, or a file changed since, is left be."""
    import re

    own = re.compile(
        rf"^({re.escape(contract.LENGTH_BUCKET_DIR)}/text_encoder\.len[0-9]+(\.[a-z0-9]+)?\.onnx(\.data)?|"
        r"text_encoder\.dyn(\.[a-z0-9]+)?\.onnx(\.data)?|"
        rf"{re.escape(contract.TFLITE_DIR)}/text_encoder\.dyn(\.[a-z0-9]+)?\.tflite)$"
    )
    if own.match(relpath):
        from .. import confined

        confined.remove_file(root, relpath, sha256)
