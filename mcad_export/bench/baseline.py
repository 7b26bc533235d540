"""The PyTorch eager fp32 baseline, measured in its own process: `python -m mcad_export.bench.baseline CONFIG.json`.

What a user without this toolkit runs: the student loaded as trained, open_clip-style tokenize
to the full context length, `encode_text` in eager mode, then `torch.topk` over the same
gallery embeddings the optimised path searches. Prints one JSON object as the last stdout line.
"""

from __future__ import annotations

import json
import sys

from .stats import measure, memory_status


def main(cfg: dict) -> dict:
    import numpy as np
    import torch

    from ..manifest import read_manifest
    from ..students import reload_student

    torch.set_num_threads(cfg["threads"])
    manifest = read_manifest(cfg["dir"])
    student = reload_student(manifest["student"])
    text_encoder = student.text_encoder.eval()
    if student.family in ("open_clip", "embedded") and student.tokenizer.kind == "clip_bpe":
        import open_clip

        def tokenize(texts):
            return (open_clip.tokenize(texts, context_length=student.context_length),)
    else:
        from ..contract import text_inputs
        from ..runtime.encoders import text_feed

        names = text_inputs(student.text_masked)

        def tokenize(texts):
            # a BERT-family tower is run as Hugging Face users run it: ids and attention mask at full context
            feed = text_feed(names, student.tokenizer(texts))
            return tuple(torch.from_numpy(feed[n].astype(np.int64)) for n in names)

    gallery = torch.from_numpy(np.load(cfg["gallery"]).astype(np.float32))
    queries, k = cfg["queries"], cfg.get("k", 10)
    state = {"i": 0}

    def one_query():
        with torch.inference_mode():
            embeds = text_encoder(*tokenize([queries[state["i"] % len(queries)]]))
            torch.topk(gallery @ embeds[0], k)
        state["i"] += 1

    latency = measure(one_query, **cfg.get("measure", {}))
    return {
        "name": "pytorch-eager-fp32",
        "description": f"{student.id}: open_clip-style tokenize (context "
        f"{student.context_length}) + encode_text (eager fp32) + torch.topk over {len(gallery)} embeddings",
        "latency": latency,
        "peak_rss_mb": memory_status()["VmHWM"],
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(open(sys.argv[1]).read()))))
