"""Every published number has a file: the measured tables of README and docs/ are rendered from committed result JSON
(scripts/tables.py), and this test fails when a table and its file disagree."""

import importlib.util
import json

from .conftest import REPO


def _tables():
    spec = importlib.util.spec_from_file_location("tables", REPO / "scripts" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_marked_table_equals_its_result_file():
    tables = _tables()
    assert tables.sync(check=True) == [], "run scripts/tables.py (or commit the result file it reads)"


def test_every_table_is_published_and_has_its_file():
    tables = _tables()
    text = "\n".join(d.read_text(encoding="utf-8") for d in tables.DOCUMENTS if d.is_file())
    for name, (files, _) in tables.TABLES.items():
        assert f"<!-- table:{name} -->" in text, f"table {name} is rendered nowhere"
        for file in [files] if isinstance(files, str) else files:
            data = json.loads((tables.RESULTS / file).read_text(encoding="utf-8"))
            assert isinstance(data, dict) and data, file
        # a header, its separator and at least one measured row
        assert tables.render(name).count("\n") >= 3, name


def test_a_changed_number_is_caught(tmp_path, monkeypatch):
    tables = _tables()
    readme = tmp_path / "README.md"
    body = tables.render("embedded-onnx-gate")
    readme.write_text(f"<!-- table:embedded-onnx-gate -->\n{body}<!-- /table -->\n")
    monkeypatch.setattr(tables, "DOCUMENTS", [readme])
    monkeypatch.setattr(tables, "REPO", tmp_path)
    assert tables.sync(check=True) == []
    readme.write_text(readme.read_text().replace("| pass |", "| pass!|", 1))
    assert tables.sync(check=True) == ["README.md: embedded-onnx-gate"]
