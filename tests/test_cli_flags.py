"""The CLI is one module per command (mcad_export/cli/): the parser it assembles must offer exactly the commands,
flags, defaults, choices and help texts recorded in tests/cli_flags.json (written from the single-module CLI it
replaced). A deliberate change to a flag updates that file: `MCAD_WRITE_CLI_FLAGS=1 pytest tests/test_cli_flags.py`."""

import argparse
import json
import os

from .conftest import REPO

SNAPSHOT = REPO / "tests" / "cli_flags.json"


def flags() -> dict:
    from mcad_export.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    out = {}
    for name, command in sub.choices.items():
        out[name] = {
            "help": helps[name],
            "description": command.description,
            "flags": {
                ",".join(a.option_strings) or a.dest: {
                    "dest": a.dest,
                    "default": repr(a.default),
                    "nargs": repr(a.nargs),
                    "choices": repr(list(a.choices) if a.choices else None),
                    "required": a.required,
                    "help": a.help,
                }
                for a in command._actions
                if not isinstance(a, argparse._HelpAction)
            },
        }
    return out


def test_every_command_flag_default_and_help_is_as_recorded():
    live = flags()
    if os.environ.get("MCAD_WRITE_CLI_FLAGS"):
        SNAPSHOT.write_text(json.dumps(live, indent=1, sort_keys=True))
    recorded = json.loads(SNAPSHOT.read_text())
    assert list(live) == list(json.loads(SNAPSHOT.read_text(), object_pairs_hook=lambda p: dict(p))) or set(
        live
    ) == set(recorded)
    for name in recorded:
        assert live[name] == recorded[name], name


def test_each_command_is_one_module():
    from mcad_export.cli import COMMANDS

    for name, module in COMMANDS.items():
        assert module.__name__ == f"mcad_export.cli.{name.replace('-', '_')}"
        assert callable(module.add) and callable(module.run)
