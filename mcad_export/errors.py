"""Typed errors with a graded policy (in the spirit of optimum's exporters).

- McadError subclasses are user-facing: the CLI prints `error: <message>` on one line and exits
  with the class's exit code. Messages say what is wrong and how to fix it.
- ShapeMismatchError is always fatal. ParityError is fatal unless the user opts out of
  verification (then it is reported with numbers). FidelityGateError always fails the command.
"""

from __future__ import annotations


class McadError(Exception):
    exit_code = 2


class InputError(McadError):
    """Bad user input: paths, specs, options."""


class CheckpointError(InputError):
    """A weights file that is missing, unreadable, not a checkpoint, or unsafe."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that would need to execute code to load."""


class WeightsMismatchError(CheckpointError):
    """Weights that do not fit the architecture."""


class UnknownStudentError(InputError):
    pass


class UnsupportedStudentError(InputError):
    pass


class OutputDirError(InputError):
    pass


class TamperedFileError(InputError):
    """A file whose bytes no longer match the sha256 its manifest or index records."""


class UnsafeFolderError(InputError):
    """A link, hard link or foreign entry at a name mcad-export owns in an export or app folder (confined.py)."""


class FolderBusyError(InputError):
    """Another mcad-export stage holds the export folder's write lock."""


class GalleryIndexError(InputError):
    """A gallery index that cannot be built from what was given, or read back."""


class BudgetMissError(McadError):
    """`bench --enforce-budget`: the query path missed the memory or latency budget."""

    exit_code = 6


class CompileError(McadError):
    """A target toolchain refused the model, is missing, or would run part of it off the NPU."""

    exit_code = 7


class ExportError(McadError):
    exit_code = 3


class ShapeMismatchError(ExportError):
    """An exported graph's inputs/outputs do not have the contract's shapes. Always fatal."""


class ParityError(ExportError):
    """Exported encoder disagrees with PyTorch beyond tolerance."""

    def __init__(self, message: str, results: dict | None = None):
        super().__init__(message)
        self.results = results or {}


class FidelityGateError(McadError):
    """An artifact retrieves measurably worse than PyTorch fp32. Always fails the command."""

    exit_code = 4


def first_line(error, limit: int = 200) -> str:
    """A third-party error (or text) as one short line for an `error:` message: its first non-empty line,
    whitespace collapsed, cut at a word boundary with an ellipsis rather than mid-word."""
    text = error if isinstance(error, str) else str(error)
    line = next((" ".join(x.split()) for x in text.splitlines() if x.strip()), "")
    if not line:
        return text if isinstance(error, str) else type(error).__name__
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    return (cut[: cut.rfind(" ")] if " " in cut[limit // 2 :] else cut).rstrip(" ,;:") + "…"
