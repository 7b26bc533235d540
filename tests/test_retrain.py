"""`mcad-export train-student` end to end at toy scale: data, teacher, distillation, atomic write."""

import json

from mcad_export.students import embedded

from .conftest import run_cli


def test_train_student_command_writes_a_loadable_student(tmp_path):
    out = tmp_path / "student"
    proc = run_cli("train-student", "--out", out, "--teacher-steps", 2, "--student-steps", 3, "--train-images", 256)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "card.json",
        "card.md",
        "open_clip_config.json",
        "student.safetensors",
    ]
    card = json.loads((out / "card.json").read_text())
    assert card["steps"]["teacher"] == 2 and card["steps"]["student"] == 3
    assert 0.0 <= card["heldout_recall"]["student_fp32"]["t2i_r1"] <= 1.0
    student = embedded.load(asset_dir=out)
    assert student.embed_dim == 128 and student.context_length == 77 and student.preprocess.image_size == 64
    assert "held-out t2i R@1" in proc.stdout
