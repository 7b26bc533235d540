"""Every command the README and docs/ show still exists as written: each `mcad-export` line's subcommand and flags are
ones the parser offers, each `python -m` module imports, each script and file named is in the repo. (Running them
all would take the whole suite's time again: the stages themselves are what the other tests run.)"""

import argparse
import importlib.util
import re
import shlex

from .conftest import REPO

DOCUMENTS = [REPO / "README.md", REPO / "android_demo" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def fenced_commands():
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith("#"):
                    yield document.relative_to(REPO), line


def parser_flags() -> dict[str, set[str]]:
    from mcad_export.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}


def test_every_documented_command_exists_as_written():
    flags = parser_flags()
    checked = 0
    for document, line in fenced_commands():
        for part in re.split(r"\s*&&\s*", line):
            words = shlex.split(part)
            if not words:
                continue
            if words[0].endswith("mcad-export"):
                command = words[1]
                assert command in flags, f"{document}: `{part}`: no subcommand {command!r}"
                used = {w.split("=")[0] for w in words[2:] if w.startswith("--")}
                assert used <= flags[command], f"{document}: `{part}`: {sorted(used - flags[command])} not offered"
                checked += 1
            elif words[0] == "bash" and len(words) > 1:
                assert (REPO / words[1]).is_file() or (REPO / "android_demo" / words[1]).is_file(), part
                checked += 1
            elif "-m" in words and words[0].endswith("python"):
                module = words[words.index("-m") + 1]
                if module != "pytest":
                    assert importlib.util.find_spec(module), f"{document}: `{part}`: no module {module}"
                checked += 1
    assert checked >= 8, checked


def test_every_inline_command_names_real_flags():
    """Inline `mcad-export CMD ... --flag` spans of the docs: the subcommand exists and offers every flag named."""
    flags = parser_flags()
    checked = 0
    for document in DOCUMENTS:
        for span in re.findall(r"`((?:\.venv/bin/)?mcad-export [^`]+)`", document.read_text(encoding="utf-8")):
            words = span.split()
            command = words[1]
            if command.startswith(("-", "<", "[")) or command.upper() == command:
                continue  # `mcad-export --help`, `mcad-export COMMAND`: not a subcommand
            assert command in flags, f"{document.name}: `{span}`: no subcommand {command!r}"
            used = set(re.findall(r"(--[a-z0-9][a-z0-9-]*)", span))
            assert used <= flags[command], f"{document.name}: `{span}`: {sorted(used - flags[command])} not offered"
            checked += 1
    assert checked >= 40, checked
