"""`mcad-export` command line. Each subcommand is a thin shell over one stage's entry function."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import McadError

DEFAULT_OUT = "mcad-out"


def _add_student_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--student", metavar="SPEC",
                   help="open_clip:<ARCH> | open_clip:<config.json> | hf:<DIR>; default: the embedded student")
    p.add_argument("--weights", metavar="FILE", type=Path,
                   help=".pt/.pth (loaded with weights_only=True) or .safetensors; plain state dict or open_clip "
                        "training checkpoint")
    p.add_argument("--random-init", action="store_true",
                   help="no weights: an untrained model of the architecture (benchmarks only; accuracy meaningless)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcad-export",
        description="Deploy distilled CLIP-style students: export, verify and package image and text encoders.")
    parser.add_argument("--version", action="version", version=f"mcad-export {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="the whole pipeline that exists so far, on the embedded student by default",
                       description="Load the student, export both encoders to ONNX with parity checks, and "
                                   "print a summary. Later stages (quantize, index, bench, report, bundle) join here.")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help=f"output folder (default: ./{DEFAULT_OUT})")
    _add_student_args(p)
    p.add_argument("--no-verify", action="store_true", help="report parity misses instead of failing")

    p = sub.add_parser("export", help="export image and text encoders to ONNX with a parity check",
                       description="Writes image_encoder.onnx, text_encoder.onnx, tokenizer/ and manifest.json "
                                   "atomically into --out (see ARCHITECTURE.md for the contract).")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _add_student_args(p)
    p.add_argument("--no-verify", action="store_true",
                   help="keep the files even if parity (min cosine >= 0.9999) fails; the miss is still reported")
    p.add_argument("--samples", type=int, default=64, help="parity samples per encoder (default 64)")

    p = sub.add_parser("train-student", help="retrain the embedded default student (~25 min on 2 CPU cores)",
                       description="Renders the scene data, trains the teacher, distills the student MCAD-style "
                                   "and writes student.safetensors, its config and card (atomically).")
    from .training import recipe
    p.add_argument("--out", type=Path, default=None, help="folder to write (default: the packaged student)")
    p.add_argument("--teacher-steps", type=int, default=recipe.TEACHER_STEPS)
    p.add_argument("--student-steps", type=int, default=recipe.STUDENT_STEPS)
    p.add_argument("--train-images", type=int, default=recipe.TRAIN_IMAGES)
    return parser


def main(argv=None) -> int:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    err = Console(stderr=True, highlight=False)
    try:
        return _dispatch(args, Console(highlight=False))
    except McadError as e:
        err.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]: nothing half-written was kept")
        return 130


def _dispatch(args, console) -> int:
    if args.command == "export":
        manifest = _export(args, console)
        _summary(console, manifest, args.out)
        return 0
    if args.command == "run":
        from .pipeline import run

        return run(args, console)
    if args.command == "train-student":
        return _train(args, console)
    raise AssertionError(args.command)


def _export(args, console) -> dict:
    from .export import export_student, ensure_writable
    from .students import load_student

    ensure_writable(args.out)  # fail before minutes of work, not after
    with _status(console, "loading the student") as status:
        student = load_student(args.student, args.weights, random_init=args.random_init)
        return export_student(student, args.out, verify=not args.no_verify,
                              samples=getattr(args, "samples", 64), progress=status)


class _status:
    """A rich spinner whose text each stage updates; invisible when output is not a terminal."""

    def __init__(self, console, text):
        self.console, self.text = console, text

    def __enter__(self):
        self._live = self.console.status(self.text)
        self._live.__enter__()
        return lambda message: self._live.update(message)

    def __exit__(self, *exc):
        return self._live.__exit__(*exc)


def _summary(console, manifest: dict, out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"{manifest['student']['id']} -> {out}")
    for col in ("artifact", "format", "precision", "size MB", "parity min cos", "status"):
        table.add_column(col)
    for a in manifest["artifacts"]:
        p = a.get("parity", {})
        table.add_row(a["path"], a["format"], a["precision"], f"{a['size_bytes'] / 1e6:.1f}",
                      f"{p['cosine_min']:.7f}" if p else "-",
                      "[green]ok[/]" if p.get("passed", True) else "[red]parity miss[/]")
    console.print(table)
    for failure in manifest["export"].get("parity_failures", []):
        console.print(f"[yellow]warning:[/] {failure}")


def _train(args, console) -> int:
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .students.embedded import ASSET_DIR
    from .training.retrain import retrain

    out = args.out or ASSET_DIR
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(), console=console) as progress:
        tasks = {}

        def report(stage, step, total, loss):
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total, loss=0.0)
            progress.update(tasks[stage], completed=step, total=total, loss=loss)

        card = retrain(Path(out), progress=report, teacher_steps=args.teacher_steps,
                       student_steps=args.student_steps, train_images=args.train_images)
    r = card["heldout_recall"]["student_fp32"]
    console.print(f"student written to {out}: held-out t2i R@1 {r['t2i_r1']:.3f}, R@10 {r['t2i_r10']:.3f} "
                  f"({card['train_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
