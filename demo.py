"""`make demo`: the whole pipeline on the embedded dataset, each stage through its own command line, as the
README prints them: data -> tokenizer -> codes -> language model -> evaluator -> evaluation -> samples.

    python demo.py                          # everything (~20 min on 2 CPU cores) -> out/demo/
    python demo.py --from_stage=lm          # rerun from a stage on, keeping what the earlier ones wrote

Every stage writes where its script writes by default (data/synth, out/tokenizer/default, out/lm/default,
out/evaluator/synth, out/eval/synth/default.json), so the README's commands work on the demo's outputs.
The demo adds out/demo/: results.json (the figures of every stage and each stage's wall time), summary.md
(what it prints at the end) and samples/default/ (the prompts below: a GIF, .npy and .bvh for each).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import cli, parse_args, write_json
from support.report import COLUMNS, cell, edit_table

# settings: plain values, overridden by --key=value
CONFIG = dict(
    data_dir="data/synth",  # where data.py writes the embedded dataset (and everything reads it)
    size=20000,  # synth clips (85% train, 5% val, 10% test, plus the OOD split)
    eval_clips=192, replications=2,  # clips per split and protocol replications (the paper: all, 20)
    mm_texts=6, mm_samples=11,  # MultiModality: texts x generations each (the paper: 100 x 30)
    out_dir="out/demo",  # results.json, summary.md, samples/
    from_stage="data",  # rerun from this stage on (a name in STAGES)
    edit_samples=False,  # the "edits" stage: one edit of each kind on a test clip (sample.py --edit)
)
# Prompts: five in the dataset's words, two in words its captions never use (the vocabulary is synth.py's).
PROMPTS = ["a person walks forward.", "someone jumps twice.", "a man squats three times.",
           "a woman raises the left arm.", "the person turns to the right by 90 degrees.",
           "an individual strolls ahead at a relaxed pace.", "somebody crouches low, then bounces back up."]


def stages(cfg):
    """(name, argv after `python`) of each stage, in order. The tokenizer and the evaluator both need only
    the dataset, and the evaluation of the test split and of the OOD split only the models, so each pair runs
    side by side, one core each (STAGES_TOGETHER)."""
    data = f"--data_dir={cfg['data_dir']}"
    protocol = [f"--eval_clips={cfg['eval_clips']}", f"--replications={cfg['replications']}",
                f"--mm_texts={cfg['mm_texts']}", f"--mm_samples={cfg['mm_samples']}"]
    return [
        ("data", ["data.py", data, f"--size={cfg['size']}"]),
        ("tokenizer", ["tokenizer.py", data]),
        ("evaluator", ["eval.py", "--train_evaluator", data]),
        ("codes", ["tokenizer.py", "--encode", data]),
        ("lm", ["train.py", data]),
        ("eval", ["eval.py", data, *protocol, "--splits=test", "--edits"]),
        ("eval_ood", ["eval.py", data, *protocol, "--splits=ood", f"--out={ood_results(cfg)}"]),
        ("samples", ["sample.py", f"--out_dir={Path(cfg['out_dir']) / 'samples'}", "--bvh",
                     *(f"--text={p}" for p in PROMPTS)]),
        ("edits", ["demo.py", "--edit_samples", data, f"--out_dir={cfg['out_dir']}"]),
    ]


STAGES_TOGETHER = (("tokenizer", "evaluator"), ("eval", "eval_ood"))  # each pair side by side


def ood_results(cfg):  # eval_ood's JSON, beside eval's own out/eval/<dataset>/default.json
    return Path("out/eval") / Path(cfg["data_dir"]).name / "default_ood.json"


def run_stages(group, log_dir):
    """Run one stage, or several side by side (one thread each, their output to log_dir/<stage>.log, whose
    last lines are shown when they end), each script in a child process -> {name: wall seconds}."""
    together = len(group) > 1
    procs, t0 = {}, time.time()
    for name, argv in group:
        log = f"  (log: {log_dir / name}.log)" if together else ""
        print(f"\n=== {name}: python {' '.join(argv)}{log}", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1"} if together else None
        out = open(log_dir / f"{name}.log", "w") if together else None  # noqa: SIM115 (closed below)
        procs[name] = (subprocess.Popen([sys.executable, *argv], cwd=Path(__file__).parent, env=env,
                                        stdout=out, stderr=subprocess.STDOUT if together else None), out)
    wall = {}
    while len(wall) < len(procs):  # each stage's own wall time: poll them all
        for name, (proc, _) in procs.items():
            if name not in wall and proc.poll() is not None:
                wall[name] = round(time.time() - t0, 1)
        time.sleep(0.5)
    for name, (proc, out) in procs.items():
        status = proc.returncode
        if out:
            out.close()
            tail = (log_dir / f"{name}.log").read_text().splitlines()[-12:]
            print(f"\n--- {name} (last lines of {log_dir / name}.log)\n" + "\n".join(tail))
        if status != 0:
            for other, _ in procs.values():
                other.terminate()
            raise SystemExit(f"demo.py: stage {name!r} failed (exit status {status}; its message is above); "
                             f"fix it and go on from there with `python demo.py --from_stage={name}`")
    return wall


def results(cfg, wall_s):
    """out/demo/results.json: the evaluation rows, the tokenizer's test figures, the wall time per stage."""
    name = Path(cfg["data_dir"]).name
    evaluation = json.loads((Path("out/eval") / name / "default.json").read_text())
    evaluation["ood"] = json.loads(ood_results(cfg).read_text())["ood"]
    tokenizer = json.loads(Path("out/tokenizer/default/metrics.json").read_text())
    out = {"lm_dir": "out/lm/default", "data_dir": cfg["data_dir"]}
    for split in ("test", "ood"):  # every row (ground truth, generated; OOD's single-segment ones too)
        res = evaluation[split]
        out[split] = {row: {k: v for k, v in fig.items() if k.removesuffix("_ci") in COLUMNS or
                            k.startswith(("action_", "n_")) or k == "replications"}
                      for row, fig in res.items() if isinstance(fig, dict) and "n_clips" in fig}
        out[split] |= {k: res[k] for k in ("n_clips", "n_checked", "replications", "kinds")}
    out["edit"] = evaluation.get("edit", {}).get("test", {})  # eval.py --edits on the test split
    out["tokenizer"] = {k: tokenizer[k] for k in ("mpjpe_mm", "utilisation", "perplexity", "K", "P", "clips")}
    out["wall_s"] = wall_s
    return out


def summary(res, cfg):
    """The markdown the demo ends with: the results table, where everything is, the time per stage."""
    cols = ["R@1", "R@2", "R@3", "FID", "MMDist", "Diversity", "action_accuracy"]
    lines = ["## Results (our evaluator; 95% intervals: a bootstrap over the clips and the replications)", "",
             "| split | motions | clips | " + " | ".join(cols) + " |", "|---" * (len(cols) + 3) + "|"]
    for split in ("test", "ood"):
        for row, fig in res[split].items():
            if isinstance(fig, dict) and "n_clips" in fig:
                cells = [cell(fig, c) for c in cols]
                lines.append(f"| {split} | {row} | {fig['n_clips']} | " + " | ".join(cells) + " |")
    lines += ["", f"{res['test']['replications']} replications; action accuracy: the share of the split's "
              f"checkable clips ({res['test']['n_checked']} test, {res['ood']['n_checked']} OOD) that pass "
              "the physical check of their text. *_subset: OOD's single-segment clips."]
    if res.get("edit"):
        lines.append(edit_table({"test": res["edit"]}))
    tok = res["tokenizer"]
    lines += ["", f"Tokenizer (test split, {tok['clips']} clips): MPJPE {tok['mpjpe_mm']:.1f} mm, "
              f"utilisation {tok['utilisation']:.3f}, perplexity {tok['perplexity']:.0f} of K = {tok['K']}, "
              f"P = {tok['P']} codes per step.", "",
              "## Outputs", "",
              f"- dataset: {cfg['data_dir']}/ (codes in {cfg['data_dir']}/tokens/default/)",
              "- tokenizer: out/tokenizer/default/ (metrics.json)",
              "- language model: out/lm/default/ (model/, metrics.json, loss_curve.png)",
              f"- evaluator: out/evaluator/{Path(cfg['data_dir']).name}/",
              f"- evaluation: out/eval/{Path(cfg['data_dir']).name}/default.json",
              f"- samples: {Path(cfg['out_dir']) / 'samples' / 'default'}/ (a GIF, .npy and .bvh per prompt; "
              "edit_*: one edit of each kind, the source beside the edit)",
              f"- this summary: {Path(cfg['out_dir']) / 'summary.md'}, figures: "
              f"{Path(cfg['out_dir']) / 'results.json'}", "",
              "## Wall time", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {s:.0f} |" for name, s in res["wall_s"].items()]
    side_by_side = "; ".join(" and ".join(group) for group in STAGES_TOGETHER)
    lines.append(f"| total (side by side: {side_by_side}) | {total_wall(res['wall_s']):.0f} |")
    return "\n".join(lines)


def total_wall(wall_s):
    """The demo's wall time: the stages one after another, each side-by-side group counted once (its
    longest)."""
    total = sum(wall_s.values())
    for group in STAGES_TOGETHER:
        together = [s for name, s in wall_s.items() if name in group]
        total += max(together, default=0) - sum(together)
    return total


def edit_samples(cfg):
    """The edits stage: the first test clip of each kind of eval.py's edit protocol, edited with its text
    by sample.py --edit (a GIF of the source beside the edit, kept limbs blue)."""
    import sample
    from data import MotionData
    from motion import FPS, FRAMES_PER_CODE
    from support.editing import edit_tasks

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
    todo = stages(cfg)[names.index(cfg["from_stage"]):]
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    while todo:
        group = [todo.pop(0)]
        pair = next((g for g in STAGES_TOGETHER if group[0][0] in g), ())
        while todo and todo[0][0] in pair:
            group.append(todo.pop(0))
        wall_s.update(run_stages(group, out_dir / "logs"))
        write_json(times, wall_s)
    res = results(cfg, {name: wall_s[name] for name in names if name in wall_s})
    write_json(out_dir / "results.json", res)
    text = summary(res, cfg)
    (out_dir / "summary.md").write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    cli(main, "demo.py")
