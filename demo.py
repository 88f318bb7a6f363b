"""`make demo`: the whole pipeline on the embedded dataset, each stage through its own command line, as the
README prints them: data -> tokenizer -> codes -> language model -> evaluator -> evaluation -> samples.

    python demo.py                          # everything (~18 min on 2 idle CPU cores) -> out/demo/
    python demo.py --from_stage=lm          # rerun from a stage on, keeping what the earlier ones wrote

Every stage writes where its script writes by default (data/synth, out/tokenizer/default, out/lm/default,
out/evaluator/synth, out/eval/synth/default.json), so the README's commands work on the demo's outputs. The
edit protocol (`python experiments/edits.py --splits=test`) and MultiModality (experiments/multimodality.py)
are commands of their own, not stages: each has its results file in docs/results/.
The demo adds out/demo/: results.json (the figures of every stage and each stage's wall time), summary.md
(what it prints at the end) and samples/default/ (the prompts below: a GIF, .npy and .bvh for each).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sample
from common import cli, parse_args, write_json
from data import MotionData
from experiments.edits import edit_tasks
from motion import FPS, FRAMES_PER_CODE
from support.eval_report import COLUMNS, cell

# settings: plain values, overridden by --key=value
CONFIG = dict(
    data_dir="data/synth",  # where data.py writes the embedded dataset (and everything reads it)
    size=20000,  # synth clips (85% train, 5% val, 10% test, plus the OOD split)
    eval_clips=192, replications=2,  # clips per split and protocol replications (the paper: all, 20): the
    # test split's seen and new phrasing rows need two (each clip drawn both ways)
    ood_replications=1,  # OOD has no such rows; its intervals come from its 192 clips
    # (MultiModality, 100 texts x 30 takes: its own command, experiments/multimodality.py, not a stage)
    out_dir="out/demo",  # results.json, summary.md, samples/
    from_stage="data",  # rerun from this stage on (a name in STAGES)
    edit_samples=False,  # the "edits" stage: one edit of each kind on a test clip (sample.py --edit)
    seed=1337,  # the tokenizer's and the LM's
)
# Prompts: five in the dataset's plain phrasing, two with words its captions never use ("an individual",
# "somebody", "bounces"; the vocabulary is support/synth_captions.py's).
PROMPTS = ["a person walks forward.", "someone jumps twice.", "a man squats three times.",
           "a woman raises the left arm.", "the person turns to the right by 90 degrees.",
           "an individual strolls ahead at a relaxed pace.", "somebody crouches low, then bounces back up."]


def stages(cfg):
    """(name, argv after `python`) of each stage, in order; each starts once the stages it NEEDS are done."""
    data = f"--data_dir={cfg['data_dir']}"
    protocol = [f"--eval_clips={cfg['eval_clips']}", f"--replications={cfg['replications']}"]
    return [
        ("data", ["data.py", data, f"--size={cfg['size']}"]),
        ("tokenizer", ["tokenizer.py", data, f"--seed={cfg['seed']}"]),
        ("evaluator", ["eval.py", "--train_evaluator", data]),
        ("codes", ["tokenizer.py", "--encode", data]),
        ("lm", ["train.py", data, f"--seed={cfg['seed']}"]),
        ("eval", ["eval.py", data, *protocol, "--splits=test"]),
        ("eval_ood", ["eval.py", data, f"--eval_clips={cfg['eval_clips']}",
                      f"--replications={cfg['ood_replications']}", "--splits=ood",
                      f"--out={ood_results(cfg)}"]),
        ("samples", ["sample.py", f"--out_dir={Path(cfg['out_dir']) / 'samples'}", "--bvh",
                     *(f"--text={p}" for p in PROMPTS)]),
        ("edits", ["demo.py", "--edit_samples", data, f"--out_dir={cfg['out_dir']}"]),
    ]


# what each stage reads: the tokenizer and the evaluator need only the dataset, the evaluations of the test
# and the OOD split only the models, so such stages run side by side
NEEDS = {"data": (), "tokenizer": ("data",), "evaluator": ("data",), "codes": ("tokenizer",),
         "lm": ("codes",), "eval": ("lm", "evaluator"), "eval_ood": ("lm", "evaluator"),
         "samples": ("lm",), "edits": ("lm",)}


def ood_results(cfg):  # eval_ood's JSON, beside eval's own out/eval/<dataset>/default.json
    return Path("out/eval") / Path(cfg["data_dir"]).name / "default_ood.json"


def next_stage(pending, done, running):
    """The stage to start now, and its threads, or None: the first pending one whose NEEDS are done, on one
    core beside another stage, or on both when nothing else runs or could (2 cores: two stages at a time)."""
    ready = [s for s in pending if all(d in done for d in NEEDS[s[0]])]
    if not ready or sum(running.values()) >= 2:
        return None
    return ready[0], 2 if not running and len(ready) == 1 else 1


def ignore_sigusr1():  # in a stage's process until common.cli handles it: a signal sent earlier is dropped
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # (an ignored signal stays ignored across exec)


def run_all(todo, log_dir, on_done=lambda name, seconds: None):
    """Run the stages `todo` ((name, argv) each, in a child process) as their NEEDS allow; on_done(name,
    seconds) as each ends well. A stage on both cores prints here; stages side by side write
    log_dir/<stage>.log, whose last lines are shown when they end. -> ({name: wall seconds}, the whole run's
    wall seconds)."""
    done = set(NEEDS) - {name for name, _ in todo}  # the stages not rerun (--from_stage) are done
    pending, running, procs, wall, t0 = list(todo), {}, {}, {}, time.time()
    while pending or running:
        while (start := next_stage(pending, done, running)) is not None:
            (name, argv), threads = start
            pending.remove((name, argv))
            out = open(log_dir / f"{name}.log", "w") if threads == 1 else None  # noqa: SIM115 (closed below)
            log = f"  (log: {out.name})" if out else ""
            print(f"\n=== {name}: python {' '.join(argv)}{log}", flush=True)
            procs[name] = (subprocess.Popen([sys.executable, *argv], cwd=Path(__file__).parent, stdout=out,
                                            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                                            stderr=subprocess.STDOUT if out else None,
                                            preexec_fn=ignore_sigusr1), out, time.time())
            running[name] = threads
        for name in [n for n in running if procs[n][0].poll() is not None]:
            proc, out, started = procs[name]
            wall[name], done = round(time.time() - started, 1), done | {name}
            del running[name]
            if out:
                out.close()
                tail = Path(out.name).read_text().splitlines()[-12:]
                print(f"\n--- {name} (last lines of {out.name})\n" + "\n".join(tail), flush=True)
            if proc.returncode != 0:
                for other in running:
                    procs[other][0].terminate()
                raise SystemExit(f"demo.py: stage {name!r} failed (exit status {proc.returncode}; its "
                                 "message is above); fix it and go on from there with `python demo.py "
                                 f"--from_stage={name}`")
            on_done(name, wall[name])
            if len(running) == 1 and next_stage(pending, done, running) is None and 1 in running.values():
                alone = next(iter(running))  # its partner's core would idle until it ends: hand it over
                procs[alone][0].send_signal(signal.SIGUSR1)  # (common.cli: it doubles its threads)
                running[alone] = 2
        time.sleep(0.5)
    return wall, round(time.time() - t0, 1)


def results(cfg, wall_s, total_s=None):
    """out/demo/results.json: the evaluation rows, the tokenizer's test figures, the wall time per stage and
    of the whole demo (total_s: None after a partial rerun)."""
    name = Path(cfg["data_dir"]).name
    evaluation = json.loads((Path("out/eval") / name / "default.json").read_text())
    evaluation["ood"] = json.loads(ood_results(cfg).read_text())["ood"]
    tokenizer = json.loads(Path("out/tokenizer/default/metrics.json").read_text())
    out = {"lm_dir": "out/lm/default", "data_dir": cfg["data_dir"]}
    for split in ("test", "ood"):  # every row (ground truth, generated; OOD's single-segment ones too)
        res = evaluation[split]
        out[split] = {row: {k: v for k, v in fig.items() if k.removesuffix("_ci") in COLUMNS or
                            k.startswith(("action_", "n_")) or k in ("replications", "note")}
                      for row, fig in res.items() if isinstance(fig, dict) and "n_clips" in fig}
        out[split] |= {k: res[k] for k in ("n_clips", "n_checked", "replications", "kinds")}
    out["tokenizer"] = {k: tokenizer[k] for k in ("mpjpe_mm", "utilisation", "perplexity", "K", "P", "clips")}
    out["wall_s"], out["total_s"] = wall_s, total_s
    return out


def summary(res, cfg):
    """The markdown the demo ends with: the results table, where everything is, the time per stage."""
    cols = ["R@1", "R@2", "R@3", "FID", "MMDist", "Diversity", "gallery_R@1", "action_accuracy"]
    lines = ["## Results (our evaluator; 95% intervals: Wilson's for action accuracy, else a bootstrap over "
             "the clips and the replications)", "",
             "| split | motions | clips | " + " | ".join(cols) + " |", "|---" * (len(cols) + 3) + "|"]
    for split in ("test", "ood"):
        for row, fig in res[split].items():
            if isinstance(fig, dict) and "n_clips" in fig:
                cells = [cell(fig, c) for c in cols]
                lines.append(f"| {split} | {row} | {fig['n_clips']} | " + " | ".join(cells) + " |")
    lines += ["", f"{res['test']['replications']} replications (OOD: {res['ood']['replications']}); action "
              "accuracy: the share of the split's "
              f"checkable clips ({res['test']['n_checked']} test, {res['ood']['n_checked']} OOD) that pass "
              "the physical check of their text; tokenizer: the same checks on the real clips encoded and "
              "decoded. *_seen, *_new: the clips with captions of both phrasings, drawn with a caption seen "
              "in train or a new one; *_new_minus_seen: the paired difference. *_subset: OOD's "
              "single-segment clips. MultiModality: `python experiments/multimodality.py`."]
    tok = res["tokenizer"]
    lines += ["", f"Tokenizer (test split, {tok['clips']} clips): MPJPE {tok['mpjpe_mm']:.1f} mm, "
              f"utilisation {tok['utilisation']:.3f}, perplexity {tok['perplexity']:.0f} of K = {tok['K']}, "
              f"P = {tok['P']} codes per step.", "",
              "## Outputs", "",
              f"- dataset: {cfg['data_dir']}/ (codes in {cfg['data_dir']}/tokens/default/)",
              "- tokenizer: out/tokenizer/default/ (metrics.json)",
              "- language model: out/lm/default/ (model/, metrics.json, loss_curve.png)",
              f"- evaluator: out/evaluator/{Path(cfg['data_dir']).name}/",
              f"- evaluation: out/eval/{Path(cfg['data_dir']).name}/default.json (OOD: default_ood.json)",
              f"- samples: {Path(cfg['out_dir']) / 'samples' / 'default'}/ (a GIF, .npy and .bvh per prompt; "
              "edit_*: one edit of each kind, the source beside the edit)",
              f"- this summary: {Path(cfg['out_dir']) / 'summary.md'}, figures: "
              f"{Path(cfg['out_dir']) / 'results.json'}", "",
              "## Wall time", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {s:.0f} |" for name, s in res["wall_s"].items()]
    total = "–: a partial rerun" if res["total_s"] is None else f"{res['total_s']:.0f}"
    lines.append(f"| the whole demo (stages side by side where their inputs allow) | {total} |")
    return "\n".join(lines)


def edit_samples(cfg):
    """The edits stage: the first test clip of each kind of experiments/edits.py's edit protocol, edited with
    its text by sample.py --edit (a GIF of the source beside the edit, kept limbs blue)."""
    data = MotionData(cfg["data_dir"])
    first = {}
    for kind, i, text, keep, *_ in edit_tasks(data, data.split("test")):
        first.setdefault(kind, (i, text, keep))
    for kind, (i, text, keep) in first.items():
        steps = len(data.motion(i)) // FRAMES_PER_CODE
        what = f"--keep={keep}" if keep else f"--keep_seconds={steps // 2 * FRAMES_PER_CODE / FPS}"
        print(f"{kind} edit of test clip {data.ids[i]}:", flush=True)
        sample.main([f"--edit={data.ids[i]}", f"--data_dir={cfg['data_dir']}", f"--text={text}", what,
                     f"--out_dir={Path(cfg['out_dir']) / 'samples'}"])


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "demo.py")}
    if cfg["edit_samples"]:
        return edit_samples(cfg)
    names = [name for name, _ in stages(cfg)]
    if cfg["from_stage"] not in names:
        raise ValueError(f"--from_stage must be one of {', '.join(names)}, got {cfg['from_stage']!r}")
    out_dir = Path(cfg["out_dir"])
    times = out_dir / "wall_s.json"  # kept between runs, so that --from_stage reports every stage's time
    wall_s = json.loads(times.read_text()) if times.is_file() and cfg["from_stage"] != "data" else {}
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)

    def record(name, seconds):  # each stage's time as it ends: a later --from_stage still reports it
        wall_s[name] = seconds
        write_json(times, wall_s)
    _, total_s = run_all(stages(cfg)[names.index(cfg["from_stage"]):], out_dir / "logs", record)
    total_s = total_s if cfg["from_stage"] == "data" else None
    res = results(cfg, {name: wall_s[name] for name in names if name in wall_s}, total_s)
    write_json(out_dir / "results.json", res)
    text = summary(res, cfg)
    (out_dir / "summary.md").write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    cli(main, "demo.py")
