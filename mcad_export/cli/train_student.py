"""`mcad-export train-student`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from ..render import esc

NAME = "train-student"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = None


def add(sub) -> None:
    p = sub.add_parser(
        "train-student",
        help="retrain the embedded default student (~25 min on 2 CPU cores)",
        description="Renders the scene data, trains the teacher, distills the student MCAD-style "
        "and writes student.safetensors, its config and card (atomically).",
    )
    from ..training import recipe

    p.add_argument("--out", type=Path, default=None, help="folder to write (default: the packaged student)")
    p.add_argument("--teacher-steps", type=int, default=recipe.TEACHER_STEPS)
    p.add_argument("--student-steps", type=int, default=recipe.STUDENT_STEPS)
    p.add_argument("--train-images", type=int, default=recipe.TRAIN_IMAGES)


def run(args, console) -> int:
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..students.embedded import ASSET_DIR
    from ..training.retrain import retrain

    out = args.out or ASSET_DIR
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks = {}

        def report(stage, step, total, loss):
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total, loss=0.0)
            progress.update(tasks[stage], completed=step, total=total, loss=loss)

        card = retrain(
            Path(out),
            progress=report,
            teacher_steps=args.teacher_steps,
            student_steps=args.student_steps,
            train_images=args.train_images,
        )
    r = card["heldout_recall"]["student_fp32"]
    console.print(
        f"student written to {esc(out)}: held-out t2i R@1 {r['t2i_r1']:.3f}, R@10 {r['t2i_r10']:.3f} "
        f"({card['train_seconds']:.0f} s)"
    )
    return 0
