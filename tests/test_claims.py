"""experiments/claims.py's verdict on hand cases, and run reuse: only with the same settings and code."""

import importlib.util
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import data
import model
import train
from experiments import choices, claims, code_hash, finished_run
from support.codes import Codes

ROOT = Path(__file__).resolve().parents[1]


def results(better, worse, metric="R@3", seeds=None):
    """{condition: {"runs": [{"seed": s, metric: value}, ...]}} from one list of values per condition, the
    runs of seeds 1, 2, ... unless `seeds` gives each condition's."""
    seeds = seeds or [list(range(1, len(v) + 1)) for v in (better, worse)]
    return {name: {"runs": [{"seed": s, metric: v} for s, v in zip(ss, values, strict=True)]}
            for name, values, ss in (("better", better, seeds[0]), ("worse", worse, seeds[1]))}


# Student's t quantile t(0.975, n - 1) from a printed table, for the hand cases' 3 and 4 seeds
T_TABLE = {3: 4.303, 4: 3.182}


def hand_interval(better, worse):
    """The paired differences' mean ± t · sd / √n, computed here from the numbers given."""
    d = [b - w for b, w in zip(better, worse, strict=True)]
    half = T_TABLE[len(d)] * statistics.stdev(d) / math.sqrt(len(d))
    return statistics.mean(d) - half, statistics.mean(d) + half


@pytest.mark.parametrize("better,worse,word", [
    ([0.50, 0.52, 0.55], [0.40, 0.43, 0.44], "reproduced"),  # d 0.10, 0.09, 0.11: [0.075, 0.125]
    # the seeds move both conditions together (0.30 to 0.60) and the differences hardly: paired, the gap
    # 0.023 is out of the noise (the old rule, against the 0.30 spread between seeds: "within seed noise")
    ([0.30, 0.60, 0.45], [0.28, 0.57, 0.43], "reproduced"),  # d 0.02, 0.03, 0.02: [0.009, 0.038]
    ([0.50, 0.52, 0.55], [0.55, 0.50, 0.58], "inconclusive"),  # d -0.05, 0.02, -0.03: [-0.107, 0.067]
    ([0.80, 0.90, 0.70, 0.85], [0.70, 0.95, 0.60, 0.80], "inconclusive"),  # n = 4: [-0.047, 0.147]
    ([0.40, 0.41, 0.42], [0.50, 0.52, 0.51], "contradicted"),  # d -0.10, -0.11, -0.09: [-0.125, -0.075]
    ([0.75, 0.75, 0.75], [0.75, 0.75, 0.75], "inconclusive"),  # no gap and no noise: [0, 0] holds 0
])
def test_verdict_from_the_paired_per_seed_differences(better, worse, word):
    v = claims.verdict(results(better, worse), "R@3", "better", "worse")
    assert v["verdict"] == word
    assert v["differences"] == pytest.approx([b - w for b, w in zip(better, worse, strict=True)])
    assert v["gap"] == pytest.approx(statistics.mean(better) - statistics.mean(worse))
    assert v["interval"] == pytest.approx(hand_interval(better, worse), abs=1e-4)  # the table's 3 decimals
    assert v["seeds"] == list(range(1, len(better) + 1)) and "t(0.975, n - 1)" in v["rule"]


def test_lower_is_better_figures_flip_the_direction():
    better, worse = [0.10, 0.12, 0.11], [0.20, 0.21, 0.23]
    v = claims.verdict(results(better, worse, "FID"), "FID", "better", "worse")
    assert v["verdict"] == "reproduced" and v["gap"] == pytest.approx(-0.1033, abs=1e-4)
    assert v["interval"] == pytest.approx(hand_interval(better, worse), abs=1e-4) and v["interval"][1] < 0
    reverse = claims.verdict(results(worse, better, "FID"), "FID", "better", "worse")
    assert reverse["verdict"] == "contradicted"


def test_differences_pair_the_runs_by_seed_not_by_order():
    v = claims.verdict(results([0.30, 0.60, 0.45], [0.57, 0.43, 0.28], seeds=[[1, 2, 3], [2, 3, 1]]), "R@3",
                       "better", "worse")
    assert v["differences"] == pytest.approx([0.02, 0.03, 0.02]) and v["verdict"] == "reproduced"


def test_fewer_than_three_seeds_give_no_verdict():
    """Two seeds that the old rule called reproduced (a gap of 0.1 against a spread of 0.02) have no noise
    estimate worth the name: no verdict, and no interval."""
    v = claims.verdict(results([0.80, 0.82], [0.70, 0.71]), "R@3", "better", "worse")
    assert v["verdict"].startswith("no noise estimate") and v["interval"] is None and v["sd"] is None
    assert v["gap"] == pytest.approx(0.105) and claims.MIN_SEEDS == 3
    assert len(claims.CONFIG["seeds"].split(",")) >= claims.MIN_SEEDS  # the default gives a verdict


@pytest.mark.parametrize("seeds", [[[1, 2, 3], [1, 2, 4]], [[1, 2, 3], [1, 2]], [[1, 1, 2], [1, 2, 2]]])
def test_unpaired_seeds_are_an_error(seeds):
    better, worse = [0.5] * len(seeds[0]), [0.4] * len(seeds[1])
    with pytest.raises(ValueError, match="need the same seeds, each once, in both"):
        claims.verdict(results(better, worse, seeds=seeds), "R@3", "better", "worse")


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 20, 30, 31, 45, 100])
def test_the_t_quantiles_hold_97_5_percent_of_the_t_distribution(df):
    """t975 against the t density integrated numerically: half of the mass, less 2.5%, lies in [0, t]."""
    t = claims.t975(df)
    x = np.linspace(0, t, 400_001)
    density = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi) \
        * (1 + x**2 / df) ** (-(df + 1) / 2)
    assert np.trapezoid(density, x) == pytest.approx(0.475, abs=2e-5)


def test_every_run_is_scored_on_the_same_clips_and_on_new_phrasing(tmp_path, monkeypatch):
    """One draw of the clips for every condition and seed (a seed's own sampling seed, shared by its
    conditions), cached under a name that holds the draw; the rows on seen and on new phrasing give the
    figures "<name>_seen" and "<name>_new" they have (a FID on their half of the clips: not recorded)."""
    drawn, sampled = [], []
    row = dict.fromkeys(claims.FIGURES[1:], 0.5)

    def train(cfg, progress):
        run = Path(cfg["out_dir"]) / cfg["run_name"]
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({"val_motion_loss": 1.0}))
        return {"metrics": {"val_motion_loss": 1.0}}

    monkeypatch.setattr(claims.train, "train", train)
    monkeypatch.setattr(claims.evaluation, "_generator", lambda cfg: None)
    monkeypatch.setattr(claims.evaluation, "draw_clips",
                        lambda data, split, n, seed=0: drawn.append((split, n, seed)) or np.arange(n))
    monkeypatch.setattr(claims.evaluation, "evaluate_split",
                        lambda ev, d, clips, cfg, gen, **kw: sampled.append(cfg["seed"])
                        or {"generated": row, "generated_seen": {"R@3": 0.75, "action_accuracy": 0.5},
                            "generated_new": {"R@1": 0.1, "R@3": 0.25, "FID": 9.0}})

    class Data:
        def split(self, name):
            return np.arange(200)

    cfg = dict(claims.CONFIG)
    for seed in (1, 2):
        for condition in (dict(), dict(loss="motion")):
            settings = dict(condition, run_name=f"r{len(drawn)}", out_dir=str(tmp_path))
            figures = claims.lm_run(settings, seed, cfg, data=Data())
            assert figures == {"val_motion_loss": 1.0, **row, "R@3_seen": 0.75, "action_accuracy_seen": 0.5,
                               "R@1_new": 0.1, "R@3_new": 0.25}
    assert drawn == [("test", cfg["eval_clips"], cfg["clip_seed"])] * 4 and sampled == [1, 1, 2, 2]
    saved = [p.name for p in tmp_path.glob("r*/claims_*.json")]
    assert len(saved) == 4 and all(f"c{cfg['clip_seed']}x" in name for name in saved)


def test_a_claim_stops_at_the_first_run_without_its_main_figures(monkeypatch):
    """The pretrain claim's verdict on new phrasing needs R@3_new: missing, the claim stops after one run."""
    runs = []
    monkeypatch.setattr(claims, "lm_run", lambda settings, seed, cfg, **kw: runs.append(seed) or {"R@3": 0.5})
    with pytest.raises(ValueError, match="no R@3_new among its figures"):
        claims.run_conditions(dict(claims.CONFIG, claim="pretrain"), [1, 2, 3], None, None)
    assert runs == [1, 1]  # the text run, then the first scored run


def test_the_results_page_shows_each_verdict_with_its_interval_and_rule():
    spec = importlib.util.spec_from_file_location("docs_results", ROOT / "docs" / "results.py")
    page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(page)
    res = results([0.50, 0.52, 0.55], [0.40, 0.43, 0.44])
    for c in res.values():
        c["mean"] = c["spread"] = {"R@3": 0.5}
    claim = {"paper": "Table 9", "split": "test", "settings": dict(claims.CONFIG), "conditions": res,
             "verdicts": [claims.verdict(res, "R@3", "better", "worse")]}
    text = page.claim_section("pretrain", claim)
    assert "R@3: better − worse = +0.100 (per seed +0.100, +0.090, +0.110; sd 0.010; 95% interval " \
           "[+0.075, +0.125]): reproduced." in text
    assert f"Rule: {claims.RULE}." in text and "the same 128 clips" in text


def test_a_run_is_reused_only_with_the_same_settings_and_code(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"seed": 1, "max_iters": 250, "code": code_hash()}))
    (tmp_path / "metrics.json").write_text(json.dumps({"val_motion_loss": 1.0}))
    assert finished_run(tmp_path, {"seed": 1, "code": code_hash()}) == {"val_motion_loss": 1.0}
    assert finished_run(tmp_path, {"seed": 2, "code": code_hash()}) is None
    assert finished_run(tmp_path, {"seed": 1, "code": "other"}) is None
    (tmp_path / "config.json").write_text(json.dumps({"seed": 1}))  # made before runs recorded their code
    assert finished_run(tmp_path, {"seed": 1, "code": code_hash()}) is None


def test_claims_give_their_conditions_equal_budgets():
    """The tokenizer claim trains the 1D tokenizer for the 2D default's steps; the pretrain claim has a
    from-scratch control with the pretrained run's total steps (text + motion)."""
    import tokenizer

    assert claims.CONFIG["tokenizer_iters"] == tokenizer.CONFIG["max_iters"]
    table, metric, better, worse, split, conditions = claims.CLAIMS["pretrain"]
    assert (better, worse) == ("pretrained", "scratch, same steps")
    assert conditions[worse]["max_iters"].startswith("<")


def test_claims_run_in_the_papers_format(tmp_path, monkeypatch):
    """The claims are the paper's: their LMs have no length token and no countdown, whatever train.py's
    defaults (which have both)."""
    seen = {}
    monkeypatch.setattr(claims.train, "train", lambda cfg, progress: seen.update(cfg) or {"metrics": {}})
    claims.lm_run({"run_name": "r", "out_dir": str(tmp_path)}, 1, dict(claims.CONFIG), evaluate=False)
    assert claims.train.CONFIG["length_token"] and claims.train.CONFIG["countdown"]
    assert seen["length_token"] is False and seen["countdown"] is False and seen["seed"] == 1


def test_the_sampling_choice_starts_from_the_defaults():
    import sample

    assert choices.SAMPLING[0] == tuple(sample.DEFAULTS[k] for k in ("temperature", "top_p", "guidance"))


def test_text_pretraining_then_a_motion_run_from_it(codes_dir, tmp_path):
    """Table 9 at tiny scale: TextPairs trains on captions and part texts alone (every counted token is text,
    so the history's motion loss is undefined), and text_pretrained starts a motion run from exactly those
    weights and vocabularies, its code and length rows drawn afresh."""
    cfg = dict(train.CONFIG, **train.PAPER_FORMAT, data_dir=str(codes_dir / "ds"), tokenizer_run="t",
               out_dir=str(tmp_path), batch_size=8, max_iters=4, warmup_iters=2, eval_interval=4,
               eval_iters=1, lr=1e-3, length_iters=0, device="cpu")
    with pytest.raises(ValueError, match="task text trains on captions alone: it needs --loss=whole"):
        claims.train_hooks(dict(cfg, task="text", loss="motion"), None)
    pre = train.train(dict(cfg, run_name="text", task="text"), progress=False,
                      **claims.train_hooks(dict(cfg, task="text"), None))
    assert all(np.isnan(h["motion"]) and np.isfinite(h["text"]) for h in pre["history"])
    assert pre["metrics"]["val_text_loss"] < pre["history"][0]["text"] and pre["metrics"]["task"] == "text"
    lm = model.load(tmp_path / "text")
    ids, kinds = claims.text_ids(lm, "a man walks.")
    assert ids[-1] == lm.eos_id and set(kinds) == {model.Kind.TEXT}
    assert lm.text.decode(ids).count("a man walks") == 1
    started = claims.train_hooks(dict(cfg, init_from=str(tmp_path / "text")), None)["lm"]
    before, after = load_file(str(tmp_path / "text" / "model" / "model.safetensors")), started.lm.state_dict()
    table = "transformer.wte.weight"  # GPT-2: the embedding, tied to the head
    assert started.motion_ids.tolist() == lm.motion_ids.tolist()
    codes = torch.cat([started.motion_ids, started.length_ids])  # the rows text training never predicted
    text_rows = torch.ones(len(before[table]), dtype=torch.bool)
    text_rows[codes] = False
    assert torch.equal(after[table][text_rows], before[table][text_rows])  # the text rows as pretrained
    # the code and length rows start afresh, as new rows on a pretrained model: near the text rows' mean,
    # all distinct
    fresh = after[table][codes]
    assert not torch.allclose(fresh, before[table][codes])
    assert (fresh.mean(0) - before[table][text_rows].mean(0)).abs().max() < 3 * before[table].std()
    assert torch.cdist(fresh, fresh).add(torch.eye(len(codes)) * 1e9).min() > 1e-3
    assert all(torch.equal(before[k], after[k]) for k in before if k != table)
    # train.train starts the motion run from exactly that model
    start = {k: v.clone() for k, v in after.items()}
    ds = data.MotionData(codes_dir / "ds")
    got = train.build_or_load(dict(cfg, resume=False), tmp_path / "tuned", Codes(codes_dir / "ds", "t", ds),
                              ds, 0, 1, started).lm.state_dict()
    assert got.keys() == start.keys() and all(torch.equal(got[k], start[k]) for k in start)


def test_train_subsets_and_fraction_pick_the_named_clips(codes_dir):
    ds = data.MotionData(codes_dir / "ds")
    clips = ds.split("train")
    lines = (codes_dir / "ds" / "texts.jsonl").read_text().splitlines()
    subsets = [json.loads(line)["subset"] for line in lines]
    wanted = sorted({subsets[i] for i in clips})[:2]
    picked = claims.train_clips(ds, ",".join(wanted), 1.0, seed=1337)
    assert picked.tolist() == [i for i in clips if subsets[i] in wanted]
    third = claims.train_clips(ds, "", 0.3, seed=1337)
    assert len(third) == round(0.3 * len(clips)) and set(third) < set(clips)
    assert claims.train_clips(ds, "", 0.3, seed=2).tolist() != third.tolist()
    with pytest.raises(ValueError, match=r"no train clip in the subsets \['nope'\]"):
        claims.train_clips(ds, "nope", 1.0, seed=1337)
