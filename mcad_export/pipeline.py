"""`mcad-export run`: every stage in order: export, short-query, quantize, verify, [compile], index, bench, report,
[bundle]."""
from __future__ import annotations


def run(args, console) -> int:
    from .cli import _bench, _bundle, _compile, _export, _index, _quantize, _report, _short_query, _summary, _verify

    manifest = _export(args, console)
    _summary(console, manifest, args.out)
    args.dir = args.out
    _short_query(args, console, optional=True)
    _quantize(args, console)
    _verify(args, console)
    if args.target:
        args.num_calib = getattr(args, "num_calib", 128)
        _compile(args, console)
    _index(args, console)
    from .errors import BudgetMissError

    try:
        _bench(args, console)
    except BudgetMissError:
        _report(args, console)  # the report explains the miss
        raise
    _report(args, console)
    if args.app:
        args.target_for_bundle = args.target[0] if args.target else None
        _bundle(args, console)
    card = manifest["student"].get("card", {}).get("student_fp32")
    if card:
        console.print(f"student held-out recall (fp32, from its card): t2i R@1 {card['t2i_r1']:.3f}, "
                      f"R@10 {card['t2i_r10']:.3f}")
    console.print(f"manifest: {args.out / 'manifest.json'}")
    return 0
