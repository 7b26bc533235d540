"""Which registry entries really ran, for the test suite's registry-coverage check.

When MCAD_REGISTRY_LOG names a file (tests/conftest.py sets it for the whole session, CLI children included), each
dispatch through a registry appends one line `<registry>:<name>` to it: a student loader, a compile backend, a
verify runner, a precision the gate judged. tests/test_registries.py then checks every registered entry appears,
so coverage means a call, not a string somewhere in a test's source. Unset (every real run): nothing happens.
"""

from __future__ import annotations

import os


def note(registry: str, name: str) -> None:
    path = os.environ.get("MCAD_REGISTRY_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:  # one short O_APPEND write: lines from processes never mix
            f.write(f"{registry}:{name}\n")
