"""experiments/checks.py, the physical checks' confusion matrix: on a few real clips of every one-action kind
each check passes its own kind's clips with their parameters and no other kind's with any parameters, and
the committed docs/results/checks.json is the command's output for the checks as they are, on target."""

import json
from pathlib import Path

import pytest

from experiments import checks
from support import eval_physical as physical

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small():
    """Four clips of each one-action kind (hops and lunges: OOD clips of another seed), as the command finds
    them, and their confusion matrix."""
    found = checks.find_clips(4, seed=0, ood_seed=1, scan=20000)
    return found, checks.confusion(found)


def test_every_check_passes_its_own_kind_and_no_other(small):
    found, result = small
    assert all(len(clips) == 4 for clips in found.values()), {k: len(v) for k, v in found.items()}
    for b, row in result["matrix"].items():
        for a, share in row.items():
            assert share == (1.0 if a == b else 0.0), f"{b} clips pass the {a} check: {share}"
    assert all(v == 0 for v in result["other_parameters"].values()), result["other_parameters"]


def test_a_walk_passes_at_any_speed_when_none_is_stated(small):
    found, _ = small
    for index, seed, params in found["walk"]:
        joints = checks.real_joints(index, seed)
        assert physical.physical_check(joints, "walk", {"dir": params["dir"]}), (index, params)


def test_the_command_writes_the_matrix_and_prints_it(tmp_path, capsys):
    out = tmp_path / "checks.json"
    checks.main(["--clips=1", f"--out={out}", "--scan=20000"])
    result = json.loads(out.read_text())
    assert set(result["matrix"]) == set(checks.KINDS) and result["n"] == dict.fromkeys(checks.KINDS, 1)
    assert "| walk | 1 | **1.00** |" in capsys.readouterr().out


def test_the_committed_matrix_is_on_target_for_the_checks_as_they_are():
    result = json.loads((ROOT / "docs" / "results" / "checks.json").read_text())
    assert result["settings"]["checks"] == list(physical.CHECKED), "rerun `python experiments/checks.py`"
    assert set(result["n"]) == set(checks.KINDS) and min(result["n"].values()) >= 20, result["n"]
    diagonal = [result["matrix"][a][a] for a in physical.CHECKED]
    off = [share for b, row in result["matrix"].items() for a, share in row.items() if a != b]
    assert min(diagonal) == result["min_diagonal"] >= checks.TARGETS["min_diagonal"]
    assert max(off) == result["worst_off_diagonal"] <= checks.TARGETS["worst_off_diagonal"]
