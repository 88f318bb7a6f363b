"""experiments/claims.py's verdict on hand cases, and run reuse: only with the same settings and code."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import data
import model
import train
from experiments import choices, claims, code_hash, finished_run
from support.codes import Codes


def results(better, worse, metric="R@3"):
    """{condition: {"runs": [{metric: value}, ...]}} from one list of values per condition."""
    return {name: {"runs": [{metric: v} for v in values]} for name, values in (("better", better),
                                                                                ("worse", worse))}


def test_one_seed_gives_no_verdict():
    v = claims.verdict(results([0.9], [0.1]), "R@3", "better", "worse")
    assert v["verdict"].startswith("no noise estimate") and v["seed_spread"] == 0


@pytest.mark.parametrize("better,worse,word", [
    ([0.80, 0.82], [0.70, 0.71], "reproduced"),  # gap 0.105 > spread 0.02
    ([0.80, 0.90], [0.78, 0.80], "same direction, within seed noise"),  # gap 0.06 < spread 0.10
    ([0.70, 0.71], [0.80, 0.82], "not reproduced"),
    ([0.75, 0.75], [0.75, 0.75], "not reproduced"),  # no gap is no direction
])
def test_verdict_against_the_seed_spread(better, worse, word):
    v = claims.verdict(results(better, worse), "R@3", "better", "worse")
    assert v["verdict"] == word
    assert v["gap"] == pytest.approx(sum(better) / len(better) - sum(worse) / len(worse))


def test_lower_is_better_figures_flip_the_direction():
    v = claims.verdict(results([0.10, 0.11], [0.30, 0.31], "FID"), "FID", "better", "worse")
    assert v["verdict"] == "reproduced" and v["gap"] == pytest.approx(-0.2)


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


class StandIn:
    """A tokenizer whose codes are the features themselves; `decode` gives them back (lossless) or the first
    pose held still, its velocities zeroed (a reconstruction that lost the motion)."""

    def __init__(self, still):
        self.still = still

    def encode(self, feats):
        return feats

    def decode(self, codes):
        import motion

        T = codes.shape[1]
        return motion.hold_still(codes[:, :1], T, 22)[:, :T] if self.still else codes


def test_reconstruction_checks_pass_on_a_lossless_tokenizer_and_fail_on_a_still_one(tmp_path):
    import data
    import synth

    clips = [synth.generate_clip(i, 7, with_joints=False) for i in range(120)]
    ids = [c["id"] for c in clips]
    data.write_dataset(tmp_path / "ds", clips, name="ds", joints_num=22, splits={"train": ids, "val": ids},
                       source={"synth": {"size": 120, "seed": 7}})
    ds = data.MotionData(tmp_path / "ds")
    lossless = choices.reconstruction_passes(StandIn(False), ds, ds.split("val"))
    assert len(lossless) >= 10 and all(lossless)  # real clips pass their own checks
    assert not any(choices.reconstruction_passes(StandIn(True), ds, ds.split("val")))


def test_the_sampling_choice_starts_from_the_defaults():
    import sample

    assert choices.SAMPLING[0] == tuple(sample.DEFAULTS[k] for k in ("temperature", "top_p", "guidance"))


def test_text_pretraining_then_a_motion_run_from_it(codes_dir, tmp_path):
    """Table 9 at tiny scale: TextPairs trains on captions and part texts alone (every counted token is text,
    so the history's motion loss is undefined), and text_pretrained starts a motion run from exactly those
    weights and vocabularies, its code and length rows drawn afresh."""
    cfg = dict(train.CONFIG, data_dir=str(codes_dir / "ds"), tokenizer_run="t", out_dir=str(tmp_path),
               batch_size=8, max_iters=4, warmup_iters=2, eval_interval=4, eval_iters=1, lr=1e-3,
               length_iters=0, device="cpu")
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
    train.build_or_load(dict(cfg, resume=False), tmp_path / "tuned", Codes(codes_dir / "ds", "t", ds), ds,
                        0, 1, started)
    saved = load_file(str(tmp_path / "tuned" / "model" / "model.safetensors"))
    assert all(torch.equal(saved[k], start[k]) for k in saved)


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
