"""`mcad-export run`: every stage in order: export, short-query, quantize, verify, [compile], index, bench, report,
[bundle]."""

from __future__ import annotations


def preflight(args) -> None:
    """Every option `run` will use, checked before the first stage (a typo must not cost minutes of export)."""
    from pathlib import Path

    from .cli import bench_settings
    from .errors import InputError
    from .export import ensure_writable
    from .quantize.calibration import check_calibration_options
    from .runtime.images import require_folder

    ensure_writable(args.out)
    if args.target:
        from .compile.targets import resolve

        for spec in args.target:
            resolve(spec)
    if args.app is not None and not (Path(args.app) / "app" / "src" / "main").is_dir():
        raise InputError(
            f"--app {args.app} is not the Android demo (no app/src/main); use --app android_demo from the repo"
        )
    if args.images is not None:
        require_folder(args.images)
    check_calibration_options(args.calib_images, args.calib_captions, args.num_calib)
    bench_settings(args).check_values()
    if args.sim_samples < 1:
        raise InputError(f"--sim-samples must be positive, got {args.sim_samples}")


def run(args, console) -> int:
    from .atomic import folder_lock

    preflight(args)
    with folder_lock(args.out, "run"):
        return _stages(args, console)


def _stages(args, console) -> int:
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
        console.print(
            f"student held-out recall (fp32, from its card): t2i R@1 {card['t2i_r1']:.3f}, R@10 {card['t2i_r10']:.3f}"
        )
    console.print(f"manifest: {args.out / 'manifest.json'}")
    return 0
