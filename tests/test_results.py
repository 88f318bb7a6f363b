"""Numbers that cannot drift: README.md's results table shows the figures of the committed results file
(docs/results/demo.json) rounded as shown, docs/results.md is what `python docs/results.py` renders from
docs/results/, and nothing in the repository points at a file outside it."""

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- results: docs/results/demo.json -->"


def results_module():
    spec = importlib.util.spec_from_file_location("docs_results", ROOT / "docs" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_table():
    """The markdown table right under MARK in README.md: (header cells, body rows of cells)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(MARK) + 1
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip().strip("|").split("|")])
    return table[0], table[2:]


def test_readme_results_table_equals_the_committed_file_as_rounded():
    demo = json.loads((ROOT / "docs" / "results" / "demo.json").read_text())
    header, rows = readme_table()
    assert header[:3] == ["split", "motions", "clips"] and len(rows) >= 4, header
    labels = {label: row for row, label in results_module().ROWS.items()}
    checked = 0
    for row in rows:
        figures = demo[row[0]][labels[row[1]]]
        assert int(row[2]) == figures["n_clips"], row
        for name, shown in zip(header[3:], row[3:], strict=True):
            key = name.replace(" ", "_")
            if shown in ("–", "-"):
                assert key not in figures, f"README shows no {name} for {row[0]} {row[1]}, the file has one"
                continue
            value, _, interval = shown.partition(" [")
            texts = [(value, figures[key])]
            if interval:
                texts += list(zip(interval.rstrip("]").split(", "), figures[f"{key}_ci"], strict=True))
            for text, true in texts:
                decimals = len(text.partition(".")[2])
                assert text == f"{true:.{decimals}f}", f"README {row[0]} {row[1]} {name}: {text} != {true}"
                checked += 1
    assert checked >= 40, checked


def test_results_page_is_the_rendering_of_the_results_files():
    page = (ROOT / "docs" / "results.md").read_text()
    assert page == results_module().render(ROOT / "docs" / "results"), \
        "docs/results.md is stale: run `python docs/results.py`"


def test_the_results_table_is_the_one_the_renderer_prints(tmp_path):
    """The README table has the renderer's figures, so a rerun of the demo updates both the same way."""
    module = results_module()
    demo = json.loads((ROOT / "docs" / "results" / "demo.json").read_text())
    table = module.demo_table(demo, module.README_COLUMNS, module.README_ROWS)
    readme = (ROOT / "README.md").read_text()
    assert f"{MARK}\n{table}\n" in readme


@pytest.mark.parametrize("pattern", [r"DESIGN\.md", r"\.\./shared"])
def test_nothing_points_outside_the_repository(pattern):
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    allowed = {"tests/test_results.py",  # this test's own patterns
               "tests/conftest.py", "tests/test_readme.py"}  # the tests' real-data fixtures beside the clone
    hits = [f for f in tracked if f not in allowed and (ROOT / f).is_file() and f.endswith((".py", ".md"))
            and re.search(pattern, (ROOT / f).read_text(errors="ignore"))]
    assert not hits, f"{pattern} named in {hits}"
