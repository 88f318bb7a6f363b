"""The paper's claims about the language-model stage, rerun at small scale on the embedded dataset: one
command per claim, each condition trained with several seeds and evaluated by eval.py's protocol.

    python experiments/claims.py --claim=loss       # Table 10: loss on the whole sequence vs motion tokens
    python experiments/claims.py --claim=pretrain   # Table 9: a text-pretrained start vs from scratch
    python experiments/claims.py --claim=tokenizer  # Table 11 (generation): 2D- vs 1D-LFQ, whole pipeline
    python experiments/claims.py --claim=scale      # Table 2 (data): 10% / 30% / 100% of the training split
    python experiments/claims.py --claim=ood        # Table 5: narrow vs diverse train data, on the OOD split

They need what `make demo` leaves: the dataset with its 2D-LFQ codes (tokenizer run `default`) and the
evaluator. Each writes out/claims/<claim>.json (every run's figures, the mean and the spread over seeds per
condition, and the verdicts) and <claim>.png, and prints a table. Runs live in out/lm/claims/<claim>/; a rerun
skips the runs it has finished with the same settings and the same code (experiments.code_hash). They cost
hours of CPU: run once, outside the demo, and their files committed (docs/results/claims_<claim>.json).

Conditions get equal budgets: both tokenizers of the tokenizer claim train the default's steps at its batch
(their MPJPE is reported beside the LM figures); the pretrain claim, which at this scale tests pretraining on
the in-domain captions, has a control trained from scratch for the same total steps (text + motion).
Three kinds of condition are made here, through train.train's arguments: a share or subset of the train
clips (scale, ood: train_clips), text-only pretraining (pretrain: TextPairs) and a motion run that starts from
its model (pretrain: text_pretrained).
Every run, whatever its condition and seed, is scored on the same clips (one draw, `clip_seed`), so that
conditions differ only by their models (the interval below is then the seeds' noise on those clips, not that
of the clips' draw). The verdict (verdict(), RULE) compares the condition the paper finds
better with the other on each main figure by the paired per-seed differences: a seed's two runs share its
sampling seed and the clips, so their difference leaves out what the seed changes in both. A run's figures
include those on the captions of phrasings seen in training and of new ones ("<figure>_seen", "<figure>_new":
eval.py's rows generated_seen and generated_new); the pretrain claim gives a verdict on R@3_new too (does text
pretraining help sentences the model has not seen?).
The claims are the paper's, so every run is in the paper's format (train.PAPER_FORMAT: no length token, no
countdown, the loss on the whole sequence) and ends its motions itself, as the paper's model does; train.py's
and sample.py's defaults depart from it there (docs/lm.md).
"""

import fcntl
import json
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python experiments/claims.py`
import data as motion_data  # noqa: E402
import eval as evaluation  # noqa: E402
import model as lm_model  # noqa: E402
import tokenizer  # noqa: E402
import train  # noqa: E402
from common import (  # noqa: E402
    atomic_write,
    cli,
    parse_args,
    pick_device,
    write_json,
)
from experiments import code_hash, finished_run  # noqa: E402
from model import Kind  # noqa: E402
from support.eval_evaluator import load_evaluator  # noqa: E402
from support.model_pretrained import fresh_rows  # noqa: E402
from support.train_data import Pairs  # noqa: E402

# settings: plain values, overridden by --key=value
CONFIG = dict(
    claim="",  # loss | pretrain | tokenizer | scale | ood
    seeds="1,2,3",  # one run per condition and seed; a verdict needs MIN_SEEDS of them
    data_dir="data/synth", tokenizer_run="default",  # the demo's dataset and 2D-LFQ codes
    max_iters=250,  # LM steps per run (batch 16; the default run has 1000)
    text_iters=300,  # pretrain: steps of text-only language modelling before the motion fine-tuning
    tokenizer_iters=3000,  # tokenizer: steps of the 1D-LFQ tokenizer (the 2D default's 3000: equal budget)
    eval_clips=128, replications=1,  # the protocol per run (clips drawn from the split, replications); the
    # action checks take every checkable clip of the split
    clip_seed=0,  # the draw of those clips: one for every condition and seed, so runs compare like with like
    rprecision_batch=32,  # eval.py's: R-Precision within batches of this many clips (the protocol's 32); a
    # run needs eval_clips >= it for R@k, so a quick check on few clips wants a smaller one
    bootstrap=1000,  # draws of eval.py's per-run bootstrap intervals (a run's figures keep none of them: the
    # verdict's interval is over seeds), so fewer change no figure here, only the time
    out_dir="out/claims", device="auto",
)
# claim -> (paper table, main figures (a verdict on each), the better condition by the paper, the other,
# split evaluated, {condition: settings}): train.py's, and this file's own (train_hooks: task, init_from,
# train_fraction, train_subsets; a run's config.json records them too). A condition with no settings is
# train.py's defaults: one baseline run per seed, shared by every claim (runs are a function of their settings
# and seed).
CLAIMS = {
    "loss": ("Table 10", ("R@3",), "whole", "motion", "test",
             {"whole": dict(), "motion": dict(loss="motion")}),
    # what this tests at tiny scale: pretraining on the in-domain captions (no pretrained tiny model exists),
    # against a control given the same total steps (text + motion) on motion alone
    "pretrain": ("Table 9", ("R@3", "R@3_new"), "pretrained", "scratch, same steps", "test",
                 {"scratch": dict(), "scratch, same steps": dict(max_iters="<text + motion steps>"),
                  "pretrained": dict(init_from="<text run>")}),
    "tokenizer": ("Table 11", ("R@3",), "2D-LFQ", "1D-LFQ", "test",
                  {"2D-LFQ": dict(), "1D-LFQ": dict(tokenizer_run="<lfq1d run>")}),
    "scale": ("Table 2", ("R@3",), "100%", "10%", "test",
              {"10%": dict(train_fraction=0.1), "30%": dict(train_fraction=0.3), "100%": dict()}),
    "ood": ("Table 5", ("R@3",), "diverse", "narrow", "ood",
            {"narrow": dict(train_subsets="locomotion"), "diverse": dict(train_fraction="<narrow share>")}),
}
FIGURES = ["val_motion_loss", "R@1", "R@3", "FID", "action_accuracy"]
LOWER_IS_BETTER = {"val_motion_loss", "FID", "tokenizer_mpjpe_mm"}
# suffix -> (eval.evaluate_split's row, its figures a run records): the generated motions on every evaluated
# clip, and on the captions of phrasings seen in training and of new ones; with one replication each of these
# two has half the clips, too few for a FID worth reading
ROWS = {"": ("generated", FIGURES[1:]), "_seen": ("generated_seen", ["R@1", "R@3", "action_accuracy"]),
        "_new": ("generated_new", ["R@1", "R@3", "action_accuracy"])}
MIN_SEEDS = 3  # a verdict needs a noise estimate with some degrees of freedom: with 2 seeds t is 12.7
# Student's t quantile t(0.975, df) for df = 1..30 (scipy is no dependency); beyond, its Cornish-Fisher
# expansion (within 1e-4 there)
T975 = [12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788,
        2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639,
        2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423]
RULE = ("gap = the mean over n seeds of the paired differences better - worse (a seed's two runs scored on "
        "the same clips); 95% interval = gap ± t(0.975, n - 1) · sd / √n, sd their sample standard "
        "deviation; reproduced when the interval lies wholly on the paper's side of 0 (above it, below for "
        "a lower-is-better figure), contradicted when wholly on the other side, inconclusive when it holds "
        f"0 (the gap is within the seed noise); no verdict with fewer than {MIN_SEEDS} seeds")


def prepare(claim, seed, cfg, data):
    """The per-seed inputs a claim's conditions need: the text-pretrained run (pretrain), the 1D-LFQ
    tokenizer and its codes (tokenizer), the share of the train split that is the narrow subset (ood)."""
    root = f"claims/{claim}"
    if claim == "pretrain":
        name = f"{root}/text-s{seed}"
        lm_run(dict(task="text", max_iters=cfg["text_iters"], run_name=name), seed, cfg, evaluate=False)
        return {"init_from": f"out/lm/{name}", "max_iters": cfg["text_iters"] + cfg["max_iters"]}
    if claim == "tokenizer":
        name = f"claims_lfq1d_s{seed}"
        run_dir = Path("out/tokenizer") / name
        settings = dict(tokenizer.CONFIG, kind="lfq1d", data_dir=cfg["data_dir"], run_name=name, seed=seed,
                        max_iters=cfg["tokenizer_iters"], eval_clips=300, device=cfg["device"],
                        code=code_hash())
        given = {k: settings[k] for k in ("kind", "seed", "max_iters", "batch_size", "data_dir", "code")}
        if finished_run(run_dir, given) is None:
            tokenizer.train(settings, progress=False)
        meta = Path(cfg["data_dir"]) / "tokens" / name / "meta.json"
        if not meta.is_file() or "hold_frames" not in json.loads(meta.read_text()):  # none, or edges unheld
            tokenizer.encode_dataset(run_dir, cfg["data_dir"], pick_device(cfg["device"]))
        return {"tokenizer_run": name}
    if claim == "ood":
        train_clips = data.split("train")
        narrow = sum(data.texts[i].get("subset") == "locomotion" for i in train_clips)
        return {"train_fraction": narrow / len(train_clips)}
    return {}


class TextPairs(Pairs):
    """Text-only language modelling of the captions and part texts (Table 9 at tiny scale: no pretrained tiny
    model exists, so the pretrain claim pretrains one on text first): an instance is one of a clip's texts
    alone. The clips, and the lengths that bucket the batches, are the motion pairs'; a clip is kept when its
    whole motion sequence fits the context."""

    def fits(self, prompt, steps):
        return prompt + steps * self.codes.P + 2 <= self.lm.lm.config.max_position_embeddings

    def draw(self, i, rng, parts_prob, uncond_prob=0.0, rarity=0.0):
        return int(rng.integers(len(self.captions[i]) + len(self.parts[i] or {})))  # which text

    def build(self, i, choice):
        return text_ids(self.lm, [*self.captions[i], *(self.parts[i] or {}).values()][choice])

    def size(self, i, choice):
        n = len(self.build(i, choice)[0])
        return n, {"whole": n - 1, "motion": 0}  # every token is text

    def fixed(self, i, text_of=None):
        return text_ids(self.lm, self.captions[i if text_of is None else text_of][0])


def text_ids(lm, text):
    """A plain text as a training sequence: [<bos> where the tokenizer has one] + its tokens + <eos>, all of
    kind TEXT."""
    ids = ([] if lm.text.bos_id is None else [lm.text.bos_id]) + lm.text.encode(text) + [lm.eos_id]
    return ids, [Kind.TEXT] * len(ids)


def text_pretrained(run_dir, seed):
    """The model of the text-only run in run_dir, to start a motion run from, with its code and length rows
    drawn afresh as a pretrained checkpoint's new rows are (model_pretrained.fresh_rows): text-only training
    never had a code as its target, and its softmax pushed the code rows' logits down all along. Seeded as
    train.py seeds the model it builds."""
    torch.manual_seed(seed)
    lm = lm_model.load(run_dir)
    fresh_rows(lm.lm, torch.cat([lm.motion_ids, lm.length_ids]))
    return lm


def train_clips(data, subsets, fraction, seed):
    """The train split's clips a condition trains on: those of `subsets` (comma-separated; all when empty),
    then a random `fraction` of them (a function of the seed)."""
    clips = data.split("train")
    if subsets:
        wanted = set(subsets.split(","))
        clips = clips[[data.texts[i].get("subset") in wanted for i in clips]]
        if not len(clips):
            raise ValueError(f"{data.root}: no train clip in the subsets {sorted(wanted)}")
    n = max(1, round(fraction * len(clips)))
    return np.sort(np.random.default_rng(seed).permutation(clips)[:n])


def train_hooks(lm_cfg, data):
    """train.train's arguments for this file's settings: text-only pairs (task "text"), the text-pretrained
    model to start from (init_from), the train clips (train_subsets, train_fraction)."""
    hooks = {}
    if lm_cfg.get("task") == "text":
        if lm_cfg["loss"] != "whole":  # a caption alone has no motion token: no loss would count anything
            raise ValueError(f"task text trains on captions alone: it needs --loss=whole, got "
                             f"{lm_cfg['loss']}")
        hooks["pairs"] = TextPairs
    if lm_cfg.get("init_from"):
        hooks["lm"] = text_pretrained(lm_cfg["init_from"], lm_cfg["seed"])
    if "train_subsets" in lm_cfg or "train_fraction" in lm_cfg:
        hooks["clips"] = train_clips(data, lm_cfg.get("train_subsets", ""), lm_cfg.get("train_fraction", 1.0),
                                     lm_cfg["seed"])
    return hooks


def lm_run(settings, seed, cfg, evaluate=True, split="test", ev=None, data=None):
    """Train one LM (train.train, skipped when finished; settings: train.py's and train_hooks') and, with
    `evaluate`, score its generations on `split` by eval.py's protocol -> {figure: value}."""
    lm_cfg = dict(train.CONFIG, **train.PAPER_FORMAT, data_dir=cfg["data_dir"], seed=seed,
                  tokenizer_run=cfg["tokenizer_run"], max_iters=cfg["max_iters"],
                  eval_interval=cfg["max_iters"], device=cfg["device"],
                  length_iters=0)  # no length estimator: the LM ends its own motions, as the paper's
    lm_cfg.update(settings, code=code_hash())  # a run is reused only when its settings and code match
    run_dir = Path(lm_cfg["out_dir"]) / lm_cfg["run_name"]
    given = {**settings, **{k: lm_cfg[k] for k in ("seed", "max_iters", "data_dir", "tokenizer_run", "code")}}
    given.pop("run_name")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = open(run_dir.parent / f".{run_dir.name}.lock", "w")  # noqa: SIM115 (two claims at once share a
    fcntl.flock(lock, fcntl.LOCK_EX)  # baseline run: the second waits for the first's training and figures)
    try:
        return train_and_score(lm_cfg, given, seed, cfg, evaluate, split, ev, data)
    finally:
        lock.close()


def train_and_score(lm_cfg, given, seed, cfg, evaluate, split, ev, data):
    run_dir = Path(lm_cfg["out_dir"]) / lm_cfg["run_name"]
    metrics = finished_run(run_dir, given) or train.train(lm_cfg, progress=False,
                                                          **train_hooks(lm_cfg, data))["metrics"]
    if not evaluate:
        return metrics
    # shared runs are scored once; the clips' draw is in the name, as figures on other clips are not these
    # (and R@k on R-Precision's batch, named when not the protocol's)
    batch = "" if cfg["rprecision_batch"] == evaluation.CONFIG["rprecision_batch"] else \
        f"r{cfg['rprecision_batch']}"
    saved = run_dir / (f"claims_{split}_{cfg['eval_clips']}c{cfg['clip_seed']}x{cfg['replications']}{batch}"
                       ".json")
    if saved.is_file() and saved.stat().st_mtime > (run_dir / "metrics.json").stat().st_mtime:
        return json.loads(saved.read_text())
    clips = evaluation.draw_clips(data, split, cfg["eval_clips"], cfg["clip_seed"])
    # Diversity over fewer pairs when a split is small
    eval_cfg = dict(evaluation.CONFIG, replications=cfg["replications"], bootstrap=cfg["bootstrap"],
                    rprecision_batch=cfg["rprecision_batch"], lm_dir=str(run_dir),
                    seed=seed, device=cfg["device"], sample_lengths="model",  # the paper's: the LM ends it
                    seen_new=True,  # the rows on seen and on new phrasing (ROWS)
                    diversity_times=min(evaluation.CONFIG["diversity_times"], len(clips) - 1))
    result = evaluation.evaluate_split(ev, data, clips, eval_cfg, evaluation._generator(eval_cfg),
                                       checked_clips=data.split(split), progress=False)
    figures = {"val_motion_loss": metrics["val_motion_loss"]}
    for suffix, (row, names) in ROWS.items():  # no FID in a row of fewer clips than the evaluator has dims
        figures.update({k + suffix: result[row][k] for k in names if k in result.get(row, {})})
    write_json(saved, figures)
    return figures


def t975(df):
    """Student's t quantile t(0.975, df): the table, then the expansion."""
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired_differences(results, metric, better, worse):
    """{seed: better - worse on `metric`}: a difference is between the runs of one seed, so both conditions
    must have run the same seeds, each once."""
    seeds = {c: [r["seed"] for r in results[c]["runs"]] for c in (better, worse)}
    if sorted(seeds[better]) != sorted(seeds[worse]) or len(set(seeds[better])) != len(seeds[better]):
        raise ValueError(f"{better!r} ran the seeds {seeds[better]} and {worse!r} {seeds[worse]}: paired "
                         "differences need the same seeds, each once, in both")
    value = {c: {r["seed"]: r[metric] for r in results[c]["runs"]} for c in (better, worse)}
    return {s: value[better][s] - value[worse][s] for s in sorted(value[better])}


def verdict(results, metric, better, worse):
    """The paper's better condition against the other on `metric`, by RULE: the gap (better - worse, in the
    figure's units), the per-seed differences it is the mean of, their sd, the 95% interval, the verdict."""
    diffs = paired_differences(results, metric, better, worse)
    d = np.array(list(diffs.values()), dtype=float)
    out = {"metric": metric, "better": better, "worse": worse, "lower_is_better": metric in LOWER_IS_BETTER,
           "seeds": list(diffs), "differences": d.tolist(), "gap": float(d.mean()), "sd": None,
           "interval": None, "rule": RULE}
    if len(d) < MIN_SEEDS:
        return out | {"verdict": f"no noise estimate (fewer than {MIN_SEEDS} seeds)"}
    sd = float(d.std(ddof=1))
    half = t975(len(d) - 1) * sd / np.sqrt(len(d))
    low, high = out["gap"] - half, out["gap"] + half
    sign = -1 if out["lower_is_better"] else 1
    towards = sorted((sign * low, sign * high))  # the interval in the paper's direction: > 0 agrees with it
    word = "reproduced" if towards[0] > 0 else "contradicted" if towards[1] < 0 else "inconclusive"
    return out | {"sd": sd, "interval": [float(low), float(high)], "verdict": word}


def plot(path, claim, results, table, split, figures):
    fig, axes = plt.subplots(1, len(figures), figsize=(3 * len(figures), 3.2))
    names = list(results)
    for ax, metric in zip(axes, figures, strict=True):
        for x, name in enumerate(names):
            values = [r[metric] for r in results[name]["runs"]]
            ax.bar(x, np.mean(values), color="#9ecae1", width=0.6)
            ax.plot([x] * len(values), values, "o", color="#08519c", markersize=4)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_title(metric + (" (val)" if metric == "val_motion_loss" else f" ({split})"), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{claim}: paper {table}; bars = mean, dots = seeds", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


def run_conditions(cfg, seeds, data, ev):
    """Every condition's run for each seed -> {condition: {"runs": [{"seed": seed, figure: value, ...}]}}.
    A run without one of the claim's main figures stops the claim then, not after hours of runs."""
    _, main_figures, _, _, split, conditions = CLAIMS[cfg["claim"]]
    results = {name: {"runs": []} for name in conditions}
    for seed in seeds:
        made = prepare(cfg["claim"], seed, cfg, data)
        for name, settings in conditions.items():
            settings = {k: made[k] if str(v).startswith("<") else v for k, v in settings.items()}
            slug = name.replace("%", "pct").replace(", ", "-").replace(" ", "-")
            settings["run_name"] = (f"claims/{cfg['claim']}/{slug}-s{seed}" if settings
                                    else f"claims/baseline-s{seed}")
            figures = lm_run(settings, seed, cfg, split=split, ev=ev, data=data)
            missing = [f for f in main_figures if f not in figures]
            if missing:
                raise ValueError(f"{settings['run_name']}: no {', '.join(missing)} among its figures "
                                 f"{list(figures)}, which the verdicts need (a figure <name>_new is from "
                                 "eval.evaluate_split's row generated_new)")
            if cfg["claim"] == "tokenizer":  # each tokenizer's reconstruction beside what the LM makes of it
                run = Path("out/tokenizer") / settings.get("tokenizer_run", cfg["tokenizer_run"])
                figures["tokenizer_mpjpe_mm"] = json.loads((run / "metrics.json").read_text())["mpjpe_mm"]
            results[name]["runs"].append({"seed": seed, **figures})
            print(f"{cfg['claim']} {name} seed {seed}: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
    return results


def verdict_line(v):
    """A verdict in one line: the gap, and with a noise estimate the per-seed differences, sd and interval."""
    direction = " (lower is better)" if v["lower_is_better"] else ""
    head = f"{v['metric']}{direction}: {v['better']} − {v['worse']} = {v['gap']:+.3f}"
    if v["interval"] is None:
        return f"{head} over {len(v['seeds'])} seed(s): {v['verdict']}"
    low, high = v["interval"]
    return (f"{head} (per seed {', '.join(f'{d:+.3f}' for d in v['differences'])}; sd {v['sd']:.3f}; 95% "
            f"interval [{low:+.3f}, {high:+.3f}]): {v['verdict']}")


def run_claim(cfg):
    if cfg["claim"] not in CLAIMS:
        raise ValueError(f"--claim must be one of {', '.join(CLAIMS)}, got {cfg['claim']!r}")
    seeds = [int(s) for s in cfg["seeds"].split(",")]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds={cfg['seeds']}: a seed twice")
    if len(seeds) < MIN_SEEDS:
        print(f"{len(seeds)} seed(s): the claim's figures, but no verdict (it needs {MIN_SEEDS})")
    table, main_figures, better, worse, split, _ = CLAIMS[cfg["claim"]]
    data = motion_data.MotionData(cfg["data_dir"])
    ev = load_evaluator(Path("out/evaluator") / data.meta["name"], pick_device(cfg["device"]))
    t0 = time.time()
    results = run_conditions(cfg, seeds, data, ev)
    runs = [r for res in results.values() for r in res["runs"]]
    names = [k for k in runs[0] if k != "seed" and all(k in r for r in runs)]  # the table's: in every run
    for res in results.values():
        res["mean"] = {k: float(np.mean([r[k] for r in res["runs"]])) for k in names}
        res["spread"] = {k: float(np.ptp([r[k] for r in res["runs"]])) for k in names}
    out = {"claim": cfg["claim"], "paper": table, "split": split, "settings": cfg, "conditions": results,
           "verdicts": [verdict(results, f, better, worse) for f in main_figures],
           "seconds": round(time.time() - t0)}
    root = Path(cfg["out_dir"])
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / f"{cfg['claim']}.json", out)
    plot(root / f"{cfg['claim']}.png", cfg["claim"], results, table, split, names)
    print(f"\n{cfg['claim']} ({table}), {split} split, {len(seeds)} seeds, {out['seconds']} s; mean ± half "
          "the spread between seeds\n")
    print("| condition | " + " | ".join(names) + " |\n" + "|---" * (len(names) + 1) + "|")
    for name, res in results.items():
        cells = [f"{res['mean'][k]:.3f} ± {res['spread'][k] / 2:.3f}" for k in names]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("", *map(verdict_line, out["verdicts"]), f"(rule: {RULE})", sep="\n")
    print(f"wrote {root / cfg['claim']}.json and .png")
    return out


def main(argv):
    run_claim({**CONFIG, **parse_args(argv, CONFIG, "experiments/claims.py")})


if __name__ == "__main__":
    cli(main, "experiments/claims.py")
