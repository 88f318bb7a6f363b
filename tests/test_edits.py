"""experiments/edits.py, the edit protocol: a continuation judged after its seam, and the protocol end to end
through its command line on a briefly trained run."""

import json

import numpy as np
import pytest

import data
import synth
from experiments import edits
from support import eval_physical as physical


def test_a_continuation_is_judged_after_its_seam_and_fails_on_a_cut():
    """A real walk followed by a real jump passes "jumps once" judged after the seam; the same with the jump
    moved 1 m away (a cut at the seam) fails, and so does the walk alone."""
    def first(kind, **p):
        for i in range(5000):
            plan = synth.plan_clip(i, 7)
            if physical.plan_action(plan) == (kind, plan["segments"][0]["p"]) and all(
                    plan["segments"][0]["p"].get(k) == v for k, v in p.items()):
                return synth.generate_clip(i, 7)["joints"]
        raise AssertionError(kind)

    walk, jump = first("walk", dir="forward"), first("jump", count=1)
    jump = jump - jump[:1, :1] * np.array([1, 0, 1]) + walk[-1:, :1] * np.array([1, 0, 1])  # where it ended
    joined = np.concatenate([walk, jump])
    checks = [("jump", {"count": 1})]
    assert edits.judge(joined, checks, seam=len(walk))
    cut = np.concatenate([walk, jump + np.array([1.0, 0, 0])])
    assert not edits.judge(cut, checks, seam=len(walk))
    assert not edits.judge(walk, checks, seam=len(walk) // 2)


def test_edit_protocol_on_the_tiny_run(lm_dir, tmp_path, capsys):
    """Every clip an edit applies to is edited once and made from scratch once; the rates lie in their
    intervals; the kept parts' and the tokenizer's MPJPE are measured; the command writes and prints them."""
    clips = [synth.generate_clip(i, 0, with_joints=False) for i in range(150)]
    ids = [c["id"] for c in clips]
    data.write_dataset(tmp_path / "ds", clips, name="ds", joints_num=22, splits={"train": ids, "test": ids},
                       source={"synth": {"size": 150, "seed": 0}})
    ds = data.MotionData(tmp_path / "ds")
    tasks = edits.edit_tasks(ds, ds.split("test"))
    out = tmp_path / "edits.json"
    edits.main([f"--lm_dir={lm_dir}", f"--data_dir={tmp_path / 'ds'}", "--splits=test", "--device=cpu",
                "--sample_temperature=1.0", f"--out={out}"])
    res, printed = json.loads(out.read_text())["test"], capsys.readouterr().out
    for kind in ("upper", "lower", "continuation"):
        n = sum(t[0] == kind for t in tasks)
        if not n:
            assert kind not in res
            continue
        r = res[kind]
        assert r["n"] == n and r["tokenizer_mpjpe_mm"] > 0 and r["kept_mpjpe_mm"] >= 0
        for name in ("edit", "scratch"):
            assert r[f"{name}_ci"][0] <= r[name] <= r[f"{name}_ci"][1]
        assert f"| test | {kind} | {n} | {edits.cell(r, 'edit')} | {edits.cell(r, 'scratch')} |" in printed
    assert res, "the tiny dataset should hold at least one clip an edit applies to"
    with pytest.raises(FileNotFoundError, match="no trained LM run"):
        edits.main([f"--lm_dir={tmp_path / 'nowhere'}", f"--data_dir={tmp_path / 'ds'}"])
