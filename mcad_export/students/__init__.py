"""Student loaders, registered by spec prefix (like open_clip's model-config registry).

`load_student("open_clip:ViT-B-32", weights=...)`, `load_student("hf:/path/to/clip")`,
`load_student(None)` -> the embedded default. A new model family is one module that calls
`registry.register_loader("prefix")` and is imported at the bottom of this file.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from ..errors import InputError, UnknownStudentError
from .base import Preprocess, Student
from .registry import LOADERS as _LOADERS
from .registry import loader_prefixes, register_loader

DEFAULT_SPEC = "embedded"


def load_student(spec: str | None = None, weights=None, *, random_init: bool = False) -> Student:
    spec = spec or DEFAULT_SPEC
    prefix, _, arg = spec.partition(":")
    if prefix not in _LOADERS:
        close = difflib.get_close_matches(prefix, _LOADERS, n=1)
        hint = f" (did you mean {close[0]}:...?)" if close else ""
        raise UnknownStudentError(
            f"unknown student {spec!r}{hint}; use one of: "
            + ", ".join(f"{p}:..." for p in loader_prefixes() if p != DEFAULT_SPEC)
            + ", or omit --student"
        )
    from ..usage import note

    note("loader", prefix)
    if random_init:
        import torch

        # Seeded, so a reload (short-query export, baseline) gets the very weights the export had;
        # fork_rng keeps the caller's random state untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            student = _LOADERS[prefix](arg, weights=weights, random_init=random_init)
    else:
        student = _LOADERS[prefix](arg, weights=weights, random_init=random_init)
    # Enough to load the same student again from the manifest (the bench's PyTorch baseline).
    # (A loader whose argument holds paths of its own records the resolved spec itself.)
    student.info.setdefault("spec", spec if prefix not in ("hf", "dual") else f"{prefix}:{Path(arg).resolve()}")
    if weights is not None:
        student.info["weights_path"] = str(Path(weights).resolve())
    return student


def reload_student(recorded: dict) -> Student:
    """The student a manifest's `student` record describes, loaded again from the same local files."""
    spec = recorded.get("spec") or recorded["id"]  # older manifests: the id is the spec for open_clip/embedded
    weights = recorded.get("weights_path")
    if weights and not Path(weights).is_file():
        raise InputError(f"the exported student's weights {weights} are gone; pass the student again")
    return load_student(spec, weights, random_init=recorded.get("random_init", False))


# Registration happens on import; keep this list the only place that names the families.
from . import cn_clip_family, dual_encoder, embedded, hf_clip, open_clip_family  # noqa: E402,F401

__all__ = ["Preprocess", "Student", "load_student", "reload_student", "register_loader", "loader_prefixes"]
