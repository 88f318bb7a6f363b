"""The design choices that were once chosen on the test split, measured again on the val split (issue 17:
choose on val, report test once). Each candidate is made with the demo's recipe and scored on val by eval.py's
protocol; the choice reads val figures only.

    python experiments/choices.py --choice=tokenizer_steps  # 1000 / 2000 / 3000 (the default) tokenizer steps
    python experiments/choices.py --choice=sampling         # temperature / top-p / guidance on the default LM
    python experiments/choices.py --choice=edit_guidance    # guidance for edits (experiments/edits.py on val)
    python experiments/choices.py --choice=length_token     # the LM writes the length first, or step by step
    python experiments/choices.py --choice=lengths          # the length estimator's median / draw, or the LM
    python experiments/choices.py --choice=phrasing --eval_clips=256 --replications=2  # issue 30's levers
    python experiments/choices.py --choice=count_lengths    # counts at the length given: median / draw / real
    python experiments/choices.py --choice=conditioning --eval_clips=256 --replications=2  # issue 30, round 2
    python experiments/choices.py --choice=rarity --eval_clips=256 --replications=2        # issue 30, round 3

They need what `make demo` leaves: the dataset, the tokenizer run `default`, the LM run `default` (the
chosen candidate of the LM choices: the demo's recipe) and the evaluator. Each writes
out/choices/<choice>.json (every candidate's figures with their 95% intervals, n) and prints a table;
`python docs/results.py --update` copies them into docs/results/. Runs live in out/tokenizer/choices_*
and out/lm/choices/; a rerun skips the runs it has finished with the same settings and code
(experiments.code_hash).

The choices decided for good and deleted with their switches were last here in commit a4c2a31: held_edges
(the tokenizer holds a clip's edge poses), motion_clock (the motion starts at a fixed position), edit_training
(no part-mixed training samples) and the length_token choice's ±25% slack (the length is kept exactly); their
results stay in docs/results/choices_*.json. The phrasing choice's training levers (train.py --word_dropout,
--text_vocab: neither helped new phrasing) were last here in commit 11ba3a5.
"""

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python experiments/choices.py`
import data as motion_data  # noqa: E402
import eval as evaluation  # noqa: E402
import sample  # noqa: E402
import tokenizer  # noqa: E402
import train  # noqa: E402
from common import cli, parse_args, pick_device, write_json  # noqa: E402
from experiments import code_hash, finished_run  # noqa: E402
from experiments.edits import evaluate_edits  # noqa: E402
from support.eval_evaluator import load_evaluator  # noqa: E402
from support.eval_physical import checked_actions, reconstruction_passes  # noqa: E402
from support.eval_report import cell  # noqa: E402

CONFIG = dict(
    choice="",  # tokenizer_steps | sampling | edit_guidance | length_token | lengths | phrasing |
    # count_lengths | conditioning | rarity: one, or several (a,b)
    data_dir="data/synth",
    eval_clips=192, replications=1,  # the protocol on val (its action checks: every checkable val clip)
    tokenizer_steps="1000,2000",  # the candidates beside the default run's 3000
    out_dir="out/choices", seed=0, device="auto",
)
GUIDANCE = (1.25, 1.5, 2.5, 3.0)  # phrasing (issue 30): classifier-free guidance beside the default's
# sampling candidates: (temperature, top_p, guidance); the first is sample.DEFAULTS
SAMPLING = [(0.4, 0.95, 2.0), (1.0, 1.0, 2.0), (0.0, 1.0, 2.0), (0.4, 0.95, 1.0)]


def score_lm(lm_dir, cfg, ev, data, **sampling):
    """eval.py's protocol on val for an LM run's generations (sampling: eval.py's sample_* settings). Kept in
    out_dir/scores/ under a hash of the run's files and the protocol's settings: the default run is a
    candidate of several choices, and processes side by side share what one has scored."""
    run = Path(lm_dir)
    key = json.dumps([(run / "config.json").read_text(), (run / "metrics.json").read_text(),
                      sorted({**sample.DEFAULTS, **sampling}.items()), cfg["eval_clips"], cfg["replications"],
                      cfg["seed"]])  # the defaults resolved: a score outlives no change of them
    path = Path(cfg["out_dir"]) / "scores" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    eval_cfg = dict(evaluation.CONFIG, replications=cfg["replications"], lm_dir=str(lm_dir),
                    seed=cfg["seed"], device=cfg["device"], **{f"sample_{k}": v for k, v in sampling.items()})
    clips = evaluation.draw_clips(data, "val", cfg["eval_clips"], cfg["seed"])
    res = evaluation.evaluate_split(ev, data, clips, eval_cfg, evaluation._generator(eval_cfg),
                                    checked_clips=data.split("val"), progress=False)
    figures = dict(res["generated"])  # and the phrasing rows' figures (eval.py), <figure>_seen|_new|_gap
    for row, suffix in (("seen", "_seen"), ("new", "_new"), ("new_minus_seen", "_gap")):
        for fig, value in res.get(f"generated_{row}", {}).items():
            name = fig.removesuffix("_ci")
            if name in ("R@3", "action_accuracy", "count_accuracy"):
                figures[fig.replace(name, name + suffix)] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, figures)
    return figures


def score_tokenizer(run_dir, ev, data, device):
    """A tokenizer on val: MPJPE, FID and utilisation (eval.evaluate_tokenizer), and the share of the val
    split's checkable clips whose reconstruction (encode -> decode) still passes its physical check."""
    tok = tokenizer.load(run_dir, device)
    val = data.split("val")
    passed = reconstruction_passes(tok, data, checked_actions(data, val))
    return evaluation.evaluate_tokenizer(ev, tok, data, val) | {
        "reconstruction_action_accuracy": float(np.mean(passed)), "n_checked": len(passed)}


def edit_figures(lm_dir, data, cfg, **sampling):
    """The edit protocol (experiments/edits.py) on every val clip an edit applies to, flat: <kind>_edit,
    <kind>_scratch, n."""
    res = evaluate_edits(data, data.split("val"), lm_dir, sampling, cfg["seed"], pick_device(cfg["device"]))
    keys = ("edit", "scratch", "n")
    return {f"{kind}_{k}": v for kind, r in res.items() for k, v in r.items() if k.startswith(keys)}


def lm_run(name, settings, cfg):
    """Train an LM with the demo's recipe and these settings (skipped when finished) -> its folder."""
    lm_cfg = dict(train.CONFIG, data_dir=cfg["data_dir"], run_name=f"choices/{name}", device=cfg["device"],
                  **settings, code=code_hash())
    run_dir = Path(lm_cfg["out_dir"]) / lm_cfg["run_name"]
    if finished_run(run_dir, {**settings, "code": lm_cfg["code"]}) is None:
        train.train(lm_cfg, progress=False)
    return run_dir


def candidates(choice, cfg, ev, data):
    """{candidate: figures} of a choice, the chosen one first."""
    device = pick_device(cfg["device"])
    if choice == "tokenizer_steps":
        out = {"3000 (default)": score_tokenizer(Path("out/tokenizer/default"), ev, data, device)}
        for steps in [int(s) for s in cfg["tokenizer_steps"].split(",")]:
            run = Path("out/tokenizer") / f"choices_steps{steps}"
            settings = dict(tokenizer.CONFIG, data_dir=cfg["data_dir"], run_name=run.name, max_iters=steps,
                            device=cfg["device"], code=code_hash())
            if finished_run(run, {"max_iters": steps, "code": settings["code"]}) is None:
                tokenizer.train(settings, progress=False)
            out[str(steps)] = score_tokenizer(run, ev, data, device)
        return out
    if choice == "sampling":
        return {f"T {t}, top-p {p}, guidance {g}" + (" (default)" if k == 0 else ""):
                score_lm("out/lm/default", cfg, ev, data, **({} if k == 0 else dict(temperature=t, top_p=p,
                                                                                     guidance=g)))
                for k, (t, p, g) in enumerate(SAMPLING)}
    if choice == "edit_guidance":  # editing (experiments/edits.py): does more guidance make the model follow
        return {f"guidance {g}" + (" (default)" if g == sample.DEFAULTS["guidance"] else ""):  # the text when
                edit_figures("out/lm/default", data, cfg, guidance=g)  # other parts are forced?
                for g in (sample.DEFAULTS["guidance"], 2.5, 4.0)}
    if choice == "length_token":  # issue 21, first look: the LM writes the length first, or step by step
        paper = lm_run("paper_format", train.PAPER_FORMAT, cfg)
        run = lm_run("length_token", {"length_token": True, "countdown": False}, cfg)
        return {"step by step": score_lm(paper, cfg, ev, data, lengths="model"),
                "length token": score_lm(run, cfg, ev, data, lengths="model"),
                "length token, positions counting down": score_lm("out/lm/default", cfg, ev, data,
                                                                  lengths="model")}
    if choice == "lengths":  # issue 21: who decides how long a motion is (sample.py --lengths), on either LM
        out = {f"countdown LM, {name}{' (default)' * (how == sample.DEFAULTS['lengths'])}": score_lm(
            "out/lm/default", cfg, ev, data, lengths=how) for name, how in (
            ("the length estimator's median", "median"), ("a draw from the length estimator", "draw"),
            ("its own length token", "model"))}
        paper = lm_run("paper_format", train.PAPER_FORMAT, cfg)
        return out | {"paper's format, the length estimator's median": score_lm(paper, cfg, ev, data),
                      "paper's format, step by step until </mot>": score_lm(paper, cfg, ev, data,
                                                                             lengths="model")}
    if choice == "phrasing":  # issue 30: what helps new phrasing (the rows generated_seen / _new, the gap)
        return {"default": score_lm("out/lm/default", cfg, ev, data)} | {
            f"guidance{g}": score_lm("out/lm/default", cfg, ev, data, guidance=g) for g in GUIDANCE}
    if choice == "conditioning":  # issue 30, second round: does the instruction count more when trained so?
        # Two training seeds: the gap moves with it. The committed file was made when the default loss was
        # the whole sequence (its "default" and "default_seed1" are this list's whole_loss runs) and caption
        # draws were even, as every run here keeps them
        return {name: score_lm(lm_run(name, {"caption_rarity": 0.0, **settings}, cfg), cfg, ev, data)
                for name, settings in (
                    ("motion_loss", {}), ("whole_loss", {"loss": "whole"}),
                    ("uncond_prob0.2", {"loss": "whole", "uncond_prob": 0.2}),
                    ("whole_loss_seed1", {"loss": "whole", "seed": 1}), ("motion_loss_seed1", {"seed": 1}))}
    if choice == "rarity":  # issue 30, third round: val's seen captions are mostly a clip's plainest, which
        # many train clips share (a caption string's count in train: 9 on average for those, 1.5 else); drawn
        # with odds count^-r, the other phrasings get the steps. Two training seeds each; and guidance again,
        # on the (even-draw) motion-loss LM the first round did not have
        even, even1 = (lm_run(name, {"caption_rarity": 0.0, **seed}, cfg) for name, seed in (
            ("motion_loss", {}), ("motion_loss_seed1", {"seed": 1})))
        out = {}
        for r in (1, 2):  # the default first
            for name, seed in ((f"rarity{r}", {}), (f"rarity{r}_seed1", {"seed": 1})):
                label = name + " (default)" * (r == train.CONFIG["caption_rarity"] and not seed)
                out[label] = score_lm(lm_run(name, {"caption_rarity": float(r), **seed}, cfg), cfg, ev, data)
        out |= {"even draws": score_lm(even, cfg, ev, data),
                "even draws, seed 1": score_lm(even1, cfg, ev, data)}
        for g in (2.5, 3.0):
            out |= {f"even draws, guidance {g}": score_lm(even, cfg, ev, data, guidance=g),
                    f"even draws, seed 1, guidance {g}": score_lm(even1, cfg, ev, data, guidance=g)}
        return out
    if choice == "count_lengths":  # issue 30, part 3: does "three squats" fit whatever length it is given?
        return {f"{name}{' (default)' * (how == sample.DEFAULTS['lengths'])}": score_lm(
            "out/lm/default", cfg, ev, data, lengths=how) for name, how in (
            ("the length estimator's median", "median"), ("a draw from the length estimator", "draw"),
            ("the clip's real length", "real"))}
    raise ValueError(f"--choice: tokenizer_steps, sampling, edit_guidance, length_token, lengths, phrasing, "
                     f"count_lengths, conditioning or rarity, got {choice!r}")


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "experiments/choices.py")}
    data = motion_data.MotionData(cfg["data_dir"])
    ev = load_evaluator(Path("out/evaluator") / data.meta["name"], pick_device(cfg["device"]))
    for choice in cfg["choice"].split(","):
        t0 = time.time()
        results = candidates(choice, cfg, ev, data)
        out = {"choice": choice, "split": "val", "settings": cfg, "candidates": results,
               "seconds": round(time.time() - t0)}
        Path(cfg["out_dir"]).mkdir(parents=True, exist_ok=True)
        write_json(Path(cfg["out_dir"]) / f"{choice}.json", out)
        names = [k for k in dict.fromkeys(k for fig in results.values() for k in fig)
                 if not k.endswith("_ci") and k != "replications"]
        print(f"\n{choice} on val ({out['seconds']} s)\n\n| candidate | " + " | ".join(names) + " |\n"
              + "|---" * (len(names) + 1) + "|", flush=True)
        for name, fig in results.items():
            cells = [cell(fig, k) if isinstance(fig.get(k), float) else str(fig.get(k, "–")) for k in names]
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    cli(main, "experiments/choices.py")
