"""The student-loader registry (like open_clip's model-config registry): spec prefix -> loader function.

Loader modules import `register_loader` from here (not from the package), so registration never needs the
package that imports them: no import cycle between `students/__init__.py` and the families."""

from __future__ import annotations

from collections.abc import Callable

from .base import Student

LOADERS: dict[str, Callable[..., Student]] = {}


def register_loader(prefix: str):
    def decorate(fn):
        LOADERS[prefix] = fn
        return fn

    return decorate


def loader_prefixes() -> list[str]:
    return sorted(LOADERS)
