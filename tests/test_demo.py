"""demo.py (`make demo`): its stages are the scripts' own command lines, and results.json has the shape the
README promises, built from what eval.py and tokenizer.py write."""

import importlib
import json

import pytest

import demo
from bench.bench_demo import critical_path
from common import parse_args


def test_every_stage_is_a_valid_command_line_of_its_script():
    stages = demo.stages(demo.CONFIG)
    names = ["data", "tokenizer", "evaluator", "codes", "lm", "eval", "eval_ood", "samples", "edits"]
    assert [n for n, _ in stages] == names
    for _, argv in stages:
        script = importlib.import_module(argv[0].removesuffix(".py").replace("/", "."))
        parse_args(argv[1:], script.CONFIG, argv[0])  # raises SystemExit on anything it does not take
    samples = dict(stages)["samples"]
    assert sum(a.startswith("--text=") for a in samples) == len(demo.PROMPTS) == 7


def test_results_json_shape_and_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = ["R@1", "R@2", "R@3", "FID", "MMDist", "Diversity", "action_accuracy", "gallery_R@1",
             "gallery_R@10", "gallery_median_rank"]
    n = {"n_clips": 300, "n_checked": 40, "replications": 2}
    row = {**{k: 0.5 for k in names}, **{k + "_ci": [0.49, 0.51] for k in names}, "action_jump": 0.25, **n}
    generated = dict(row, length_within_25=0.9, length_within_25_ci=[0.85, 0.93])
    evaluation = {s: {**n, "kinds": {"jump": 40}, "ground_truth": dict(row, extra=1), "generated": generated}
                  for s in ("test", "ood")}
    evaluation["ood"]["generated_subset"] = dict(generated, n_clips=61, note="no FID: 61 clips, fewer than "
                                                 "the 64 dimensions")
    evaluation["test"] |= {"generated_new": dict(generated, n_clips=120), "tokenizer": {
        **n, "action_accuracy": 0.95, "action_accuracy_ci": [0.92, 0.97]}, "generated_new_minus_seen": {
        **n, "n_clips": 120, "R@1": -0.1, "R@1_ci": [-0.2, -0.05]}}
    (tmp_path / "out/eval/synth").mkdir(parents=True)
    ood = evaluation.pop("ood")
    (tmp_path / "out/eval/synth/default.json").write_text(json.dumps({**evaluation, "settings": {}}))
    (tmp_path / "out/eval/synth/default_ood.json").write_text(json.dumps({"ood": ood, "settings": {}}))
    (tmp_path / "out/tokenizer/default").mkdir(parents=True)
    (tmp_path / "out/tokenizer/default/metrics.json").write_text(json.dumps(
        {"split": "test", "clips": 1819, "mpjpe_mm": 20.8, "utilisation": 1.0, "perplexity": 598.4, "K": 1024,
         "P": 6, "feature_mae": 0.13}))
    wall = {"data": 35.0, "tokenizer": 369.1, "eval": 100.0, "eval_ood": 120.0}
    res = demo.results(demo.CONFIG, wall, 524.4)
    assert set(res) == {"lm_dir", "data_dir", "test", "ood", "tokenizer", "wall_s", "total_s"}
    assert res["wall_s"] == wall and res["tokenizer"]["mpjpe_mm"] == 20.8
    assert res["tokenizer"]["utilisation"] == 1
    for split in ("test", "ood"):
        rows = {"ground_truth", "generated"} | ({"generated_subset"} if split == "ood" else {
            "generated_new", "tokenizer", "generated_new_minus_seen"})
        assert set(res[split]) == rows | {"n_clips", "n_checked", "replications", "kinds"}
        assert res[split]["generated"]["length_within_25_ci"] == [0.85, 0.93]
        generated = res[split]["generated"]
        assert generated["R@3_ci"] == [0.49, 0.51] and generated["n_checked"] == 40
        assert "extra" not in res[split]["ground_truth"] and res[split]["ground_truth"]["action_jump"] == 0.25
    text = demo.summary(res, demo.CONFIG)
    assert "| test | generated | 300 | 0.500 [0.490, 0.510]" in text and "MPJPE 20.8 mm" in text
    assert "| ood | generated_subset | 61 |" in text and "(40 test, 40 OOD)" in text
    assert res["ood"]["generated_subset"]["note"].startswith("no FID: 61 clips")
    assert "| test | generated_new_minus_seen | 120 | -0.100 [-0.200, -0.050] |" in text
    assert "| test | tokenizer | 300 |" in text and "experiments/multimodality.py" in text
    assert "| the whole demo (stages side by side where their inputs allow) | 524 |" in text
    assert "a partial rerun" in demo.summary(dict(res, total_s=None), demo.CONFIG)


def test_stages_start_after_what_they_need_two_at_a_time(tmp_path, monkeypatch):
    """run_all on four stand-in stages (a; b and c after a; d after b): each starts only once what it needs
    has ended, b and c run side by side on one core each, a stage alone gets both cores, and one left alone
    with nothing to start beside it is told to take the second core (SIGUSR1, once); a failing stage stops
    the run naming it."""
    monkeypatch.setattr(demo, "NEEDS", {"a": (), "b": ("a",), "c": ("a",), "d": ("b",)})
    trace = tmp_path / "trace.txt"

    def stage(name, seconds):
        code = (f"import os, signal, time; f = open({str(trace)!r}, 'a'); f.write('{name} start %f %s\\n' % "
                f"(time.time(), os.environ['OMP_NUM_THREADS'])); f.flush(); signal.signal(signal.SIGUSR1, "
                f"lambda *_: (f.write('{name} more %f -\\n' % time.time()), f.flush())); "
                f"time.sleep({seconds}); f.write('{name} end %f -\\n' % time.time())")
        return name, ["-c", code]

    seen = {}
    wall, total = demo.run_all([stage("a", 0.2), stage("b", 0.5), stage("c", 3), stage("d", 0.2)], tmp_path,
                               seen.__setitem__)
    events = {(n, what): (float(t), threads) for n, what, t, threads in
              (line.split() for line in trace.read_text().splitlines())}
    assert set(wall) == {"a", "b", "c", "d"} and seen == wall and total >= 0.2 + 3
    assert events["b", "start"][0] >= events["a", "end"][0] <= events["c", "start"][0]
    assert events["d", "start"][0] >= events["b", "end"][0]
    assert events["c", "start"][0] < events["b", "end"][0]  # side by side
    assert events["a", "start"][1] == "2" and events["b", "start"][1] == events["c", "start"][1] == "1"
    assert events["d", "start"][0] < events["c", "end"][0]  # d did not wait for c, which it does not need
    assert events["d", "end"][0] <= events["c", "more"][0] < events["c", "end"][0]  # then c is alone
    assert [line.split()[1] for line in trace.read_text().splitlines()].count("more") == 1
    with pytest.raises(SystemExit, match="stage 'b' failed"):
        demo.run_all([stage("a", 0), ("b", ["-c", "raise SystemExit(3)"])], tmp_path)



def test_from_stage_must_name_a_stage():
    with pytest.raises(ValueError, match="--from_stage must be one of data, tokenizer, evaluator, codes, lm"):
        demo.main(["--from_stage=nope"])


def test_bench_demo_takes_the_longest_chain_of_stages():
    """bench/bench_demo.py's critical path on demo.NEEDS, against the chains worked out by hand: the OOD
    evaluation outlasts the test one here, the evaluator (beside the tokenizer) is on no longest chain."""
    wall = {"data": 60, "tokenizer": 500, "evaluator": 400, "codes": 30, "lm": 450, "eval": 200,
            "eval_ood": 300, "samples": 30, "edits": 20}
    assert critical_path(demo.NEEDS, wall) == (1340.0, ["data", "tokenizer", "codes", "lm", "eval_ood"])
    wall |= {"evaluator": 1200}  # now longer than tokenizer + codes + lm
    assert critical_path(demo.NEEDS, wall) == (1560.0, ["data", "evaluator", "eval_ood"])
