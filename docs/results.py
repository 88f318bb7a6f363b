"""docs/results.md from the results files in docs/results/, so that no figure in the docs is typed by hand.

    python docs/results.py             # render docs/results.md from docs/results/*.json
    python docs/results.py --update    # first copy the newest outputs in: out/demo/results.json -> demo.json,
                                       # out/tokenizer/sweep/sweep.json -> sweep.json, out/claims/<c>.json ->
                                       # claims_<c>.json; then render

Each JSON file is what the command that measured it wrote (make demo, experiments/sweep.py,
experiments/claims.py), copied unchanged. README.md's results table shows figures of demo.json, rounded as
shown (tests/test_results.py checks both that and that docs/results.md is this script's rendering).
"""

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python docs/results.py`
from common import atomic_write, cli, parse_args  # noqa: E402
from experiments.claims import verdict_line  # noqa: E402
from experiments.edits import edit_table  # noqa: E402
from support.eval_report import cell  # noqa: E402

CONFIG = dict(
    update=False,  # copy the newest outputs (out/...) into docs/results/ before rendering
    results_dir=str(ROOT / "docs" / "results"),  # the committed results files
    out=str(ROOT / "docs" / "results.md"),  # the page written
)
SOURCES = {"demo.json": "out/demo/results.json", "sweep.json": "out/tokenizer/sweep/sweep.json",
           "multimodality.json": "out/eval/synth/multimodality_default.json",
           "edits.json": "out/eval/synth/edits_default.json"}
# the demo table's columns: README.md shows six, results.md all that demo.json has (MultiModality: results
# files made before it became experiments/multimodality.py)
COLUMNS = ["R@1", "R@2", "R@3", "FID", "MMDist", "Diversity", "MultiModality", "gallery_R@1",
           "action_accuracy", "count_accuracy", "length_ratio", "length_within_25"]
README_COLUMNS = ["R@1", "R@3", "FID", "Diversity", "gallery_R@1", "action_accuracy"]
# eval.py's rows (each shown where demo.json has it) and their labels: *_seen, *_new: the clips with captions
# of both phrasings, drawn with a caption seen in train or a new one; *_new_minus_seen: the paired difference;
# tokenizer: the checks on real clips encoded and decoded; *_subset: OOD's one-segment clips
ROWS = {"ground_truth": "real", "generated": "generated", "tokenizer": "real, through the tokenizer",
        "ground_truth_seen": "real, seen phrasing", "ground_truth_new": "real, new phrasing",
        "generated_seen": "generated, seen phrasing", "generated_new": "generated, new phrasing",
        "ground_truth_new_minus_seen": "real, new − seen",
        "generated_new_minus_seen": "generated, new − seen",
        "ground_truth_subset": "real, single-segment", "generated_subset": "generated, single-segment"}
README_ROWS = ("ground_truth", "generated", "tokenizer", "ground_truth_new_minus_seen",
               "generated_new_minus_seen")  # the rest: in results.md


def demo_table(res, columns, rows=tuple(ROWS)):
    """The test and OOD rows of the demo's results.json as a markdown table, n beside each row; of
    `columns`, those some row has."""
    shown = [r for split in ("test", "ood") for name, r in res[split].items() if name in rows]
    columns = [c for c in columns if any(c in r for r in shown)]
    lines = ["| split | motions | clips | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for split in ("test", "ood"):
        for row, label in ROWS.items():
            if row in res[split] and row in rows:
                fig = res[split][row]
                cells = [cell(fig, c) for c in columns]
                lines.append(f"| {split} | {label} | {fig['n_clips']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def kinds_table(res):
    """Each checked kind's pass rate, real, generated and (where demo.json has it) real through the
    tokenizer, with its interval and number of clips."""
    rows = [r for r in ("ground_truth", "generated", "tokenizer") if r in res["test"]]
    lines = ["| split | kind | clips | " + " | ".join(ROWS[r] for r in rows) + " |", "|---" * (3 + len(rows))
             + "|"]
    for split in ("test", "ood"):
        for kind, n in [*res[split]["kinds"].items(), ("accuracy_macro", res[split]["n_checked"])]:
            name = "macro (mean of the kinds)" if kind == "accuracy_macro" else kind
            cells = [cell(res[split].get(r, {}), f"action_{kind}") for r in rows]
            lines.append(f"| {split} | {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def edit_section(edits):
    """experiments/edits.py on the test split: each kind of edit against the same texts from scratch."""
    return "\n".join(["## Editing (docs/results/edits.json)", "",
                      "`python experiments/edits.py --splits=test` with the demo's LM: every test clip an "
                      "edit applies to, one take per edit; the kept parts' MPJPE is between the source's "
                      "own reconstruction and the edit.", edit_table({"test": edits["test"]})])


def demo_section(res):
    tok, wall = res["tokenizer"], res["wall_s"]
    test, ood = res["test"], res["ood"]
    return "\n".join([
        "## make demo (docs/results/demo.json)", "",
        f"The embedded dataset ({res['data_dir']}), the default run ({res['lm_dir']}), evaluated by our "
        f"evaluator on {test['n_clips']} test and {ood['n_clips']} OOD clips drawn at random, "
        f"{test['replications']} replications on test and {ood['replications']} on OOD (the protocol's is "
        "20). Intervals: 95%; for the shares of clips (action and count accuracy, length within 25%) "
        "Wilson's, else a bootstrap over the clips and the replications (1,000 draws). Action "
        "accuracy: the share of the split's checkable clips "
        f"({test['n_checked']} test, {ood['n_checked']} OOD, one take each per replication) that pass the "
        "physical check of their text; on the real clips, the same checks (the ceiling), and on them encoded "
        "and decoded by the run's tokenizer, the ceiling of a model that writes its codes. Seen and new "
        "phrasing: the clips that have captions of both kinds (a caption a train clip has, or not), each "
        "drawn one way in one replication and the other way in the next; new − seen is their paired "
        "difference. FID: none on fewer clips than the evaluator's 64 dimensions. MultiModality: `python "
        "experiments/multimodality.py`, not a stage of the demo (its column: results made before).", "",
        demo_table(res, COLUMNS), "",
        kinds_table(res), "",
        f"Tokenizer on the test split ({tok['clips']} clips): MPJPE {tok['mpjpe_mm']:.1f} mm, utilisation "
        f"{tok['utilisation']:.3f}, perplexity {tok['perplexity']:.0f} of K = {tok['K']} (P = {tok['P']} "
        "codes per step).", "",
        "| stage | wall seconds |", "|---|---|",
        *(f"| {name} | {s:.0f} |" for name, s in wall.items()),
        f"| the whole demo (stages side by side where their inputs allow) | {res['total_s']:.0f} |"])


SEED_ROWS = [("test", k) for k in ("R@1", "R@3", "FID", "MMDist", "Diversity", "MultiModality",
                                   "action_accuracy", "action_accuracy_macro", "count_accuracy",
                                   "length_within_25")]
SEED_ROWS += [("ood", k) for k in ("R@1", "R@3", "FID", "action_accuracy")]


def seed_section(demo, second):
    """demo.json's generated figures beside a second seed's (the same data, evaluator and protocol draws; the
    tokenizer and the LM trained with another seed) and the run before them (its `before` figures)."""
    before = second["before"]
    lines = [f"## A second seed (docs/results/demo_seed{second['seed']}.json)", "", second["what"], "",
             f"| split | figure | {before['commit']} | demo.json (seed 1337) | seed {second['seed']} | "
             "seed spread | moved |", "|---|---|---|---|---|---|---|"]
    for split, k in SEED_ROWS:
        new, other, old = demo[split]["generated"], second[split]["generated"], before[split].get(k)
        if k not in new or k not in other:  # MultiModality: not in results made since issue 28
            continue
        moved = f"{new[k] - old:+.3f}" if old is not None else "–"
        lines.append(f"| {split} | {k} | {'–' if old is None else f'{old:.3f}'} | {cell(new, k)} | "
                     f"{cell(other, k)} | {abs(new[k] - other[k]):.3f} | {moved} |")
    for k, name in (("mpjpe_mm", "MPJPE (mm)"), ("utilisation", "utilisation")):
        new, other, old = demo["tokenizer"][k], second["tokenizer"][k], before["tokenizer"][k]
        lines.append(f"| tokenizer | {name} | {old:.3f} | {new:.3f} | {other:.3f} | {abs(new - other):.3f} | "
                     f"{new - old:+.3f} |")
    return "\n".join(lines)


def sweep_section(sweep):
    names = {"vq": "VQ", "rvq": "RVQ", "lfq2d": "2D-LFQ", "lfq1d": "1D-LFQ"}
    lines = ["## Codebook sweep, paper Figures 4/5 (docs/results/sweep.json)", "",
             f"{sweep['data_dir']}: every tokenizer trained {sweep['iters']} steps of batch "
             f"{sweep['batch_size']}, measured on the test split.", "",
             "| tokenizer | K | params | MPJPE (mm) | utilisation | perplexity |",
             "|---|---|---|---|---|---|"]
    for r in sweep["results"]:
        lines.append(f"| {names.get(r['kind'], r['kind'])} | {r['K']} | {r['params'] / 1e6:.2f}M | "
                     f"{r['mpjpe_mm']:.1f} | {r['utilisation']:.3f} | {r['perplexity']:.1f} |")
    return "\n".join(lines)


def claim_section(name, claim):
    figures = list(next(iter(claim["conditions"].values()))["mean"])
    runs = len(next(iter(claim["conditions"].values()))["runs"])
    cfg = claim["settings"]
    clips = (f"every run scored on the same {cfg['eval_clips']} clips (one draw)" if "clip_seed" in cfg else
             f"scored on {cfg['eval_clips']} random clips")  # claims before issue 28: a draw per seed
    new = ("; <figure>_seen and <figure>_new: on the captions of phrasings seen in training and of new ones, "
           f"{'each on half the clips' if cfg['replications'] == 1 else 'every clip both ways'}"
           if any(f.endswith("_new") for f in figures) else "")
    lines = [f"## Claim: {name}, paper {claim['paper']} (docs/results/claims_{name}.json)", "",
             f"{claim['split']} split, {runs} seeds per condition, each run {cfg['max_iters']} LM steps and "
             f"{clips} ({cfg['replications']} replication; action accuracy over every checkable clip of the "
             f"split{new}); mean ± half the spread between seeds.", "",
             "| condition | " + " | ".join(figures) + " |", "|---|" + "---|" * len(figures)]
    for condition, res in claim["conditions"].items():
        cells = [f"{res['mean'][f]:.3f} ± {res['spread'][f] / 2:.3f}" for f in figures]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    if "verdicts" not in claim:  # its verdict is by a rule since dropped: the gap and no verdict
        v = claim["verdict"]
        return "\n".join([*lines, "", f"{v['metric']}: {v['better']} − {v['worse']} = {v['gap']:+.3f} over "
                          f"{runs} seeds, each scored on its own clips: no verdict (measured before the rule "
                          "of experiments/claims.py, which needs 3 seeds or more, scored on the same clips; "
                          "to be rerun)."])
    return "\n".join([*lines, "", *(f"{verdict_line(v)}." for v in claim["verdicts"]), "",
                      f"Rule: {claim['verdicts'][0]['rule']}."])


FID_NOTE = " FID without its interval: some runs' intervals predate eval.py's shift by the bootstrap's bias."


def choice_section(choice):
    """A choice measured on val (experiments/choices.py): each candidate's figures, the default first."""
    rows = choice["candidates"]
    first = next(iter(rows.values()))
    every = list(dict.fromkeys(k for fig in rows.values() for k in fig))  # a row may lack some: "–"
    names = [k for k in every if not k.endswith("_ci") and k not in ("replications", "n_clips", "n_checked",
             "clips", "R@2", "MMDist", "Diversity") and not k.startswith("gallery_") and (not k.startswith(
             "action_") or k.startswith("action_accuracy"))]  # the rest (each kind): in the JSON
    what = (f"all {first['clips']} val clips through encode and decode (deterministic); the reconstruction's "
            f"action accuracy over the {first['n_checked']} checkable ones" if "clips" in first else
            f"{first['n_clips']} val clips drawn at random, {first['replications']} replication(s); action "
            f"accuracy over all {first['n_checked']} checkable val clips; 95% intervals: a bootstrap over "
            "the clips" if "n_clips" in first else "")
    if "upper_edit" in every:
        what += ("; " if what else "") + ("the edit protocol (experiments/edits.py) on every val clip an "
                                          "edit applies to, one take each (<kind>_edit) and the same texts "
                                          "from scratch (<kind>_scratch); 95% intervals: a bootstrap over "
                                          "the clips")
    lines = [f"## Choice on val: {choice['choice']} (docs/results/choices_{choice['choice']}.json)", "",
             f"{what}. The first row is the default.{FID_NOTE if 'FID' in names else ''}", "",
             "| candidate | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name, fig in rows.items():
        lines.append(f"| {name} | " + " | ".join("–" if k not in fig else cell({k: fig[k]} if k == "FID" else
                                                                               fig, k) for k in names) + " |")
    return "\n".join(lines)


def phrasing_section(gap):
    """How far the LM follows new phrasing (experiments/phrasing.py): eval.py's seen / new rows on val and the
    caption's worth in nats for each."""
    worth, rows = gap["caption_worth"], gap.get("rows", {})
    first = next(iter(rows.values()), {})
    lines = ["## The gap between seen and new phrasing, on val (docs/results/phrasing_val.json)", "",
             f"The caption's worth: {worth['worth_seen']:.3f} nats per motion token in a seen phrasing, "
             f"{worth['worth_new']:.3f} in a new one (seen − new {worth['worth_seen_minus_new']:+.4f} "
             f"[{worth['worth_seen_minus_new_ci'][0]:+.4f}, {worth['worth_seen_minus_new_ci'][1]:+.4f}]; "
             f"{worth['clips']} val clips with both). Generated and real motions: eval.py on val, "
             f"{first.get('n_clips', '?')} drawn clips with both phrasings, {first.get('replications', '?')} "
             f"replication(s) each way; action and count accuracy over the {first.get('n_checked', '?')} "
             "checkable val clips; 95% intervals (Wilson's for shares, a paired bootstrap for differences):",
             "",
             "| row | R@3 | action accuracy | count accuracy |", "|---|---|---|---|"]
    for row, fig in rows.items():
        lines.append(f"| {ROWS.get(row, row)} | " + " | ".join(
            cell(fig, k) if k in fig else "–" for k in ("R@3", "action_accuracy", "count_accuracy")) + " |")
    return "\n".join(lines)


def render(results_dir):
    results_dir = Path(results_dir)
    parts = ["# Results", "", "Rendered by `python docs/results.py` from the files in docs/results/; do not "
             "edit by hand. Every figure in README.md and docs/ comes from one of these files."]
    if (results_dir / "demo.json").is_file():
        parts += ["", demo_section(json.loads((results_dir / "demo.json").read_text()))]
    if (results_dir / "edits.json").is_file():
        parts += ["", edit_section(json.loads((results_dir / "edits.json").read_text()))]
    for path in sorted(results_dir.glob("demo_seed*.json")):
        parts += ["", seed_section(json.loads((results_dir / "demo.json").read_text()),
                                   json.loads(path.read_text()))]
    if (results_dir / "phrasing_val.json").is_file():
        parts += ["", phrasing_section(json.loads((results_dir / "phrasing_val.json").read_text()))]
    if (results_dir / "sweep.json").is_file():
        parts += ["", sweep_section(json.loads((results_dir / "sweep.json").read_text()))]
    choices = sorted(results_dir.glob("choices_*.json"))
    if choices:
        parts += ["", "The choices below were each measured on the recipe of their day: those made before "
                  "the length token, the countdown and the length estimator became the default (issue 21: "
                  "choices_lengths.json) were not remeasured on them, except the sampling settings."]
    for path in choices:
        parts += ["", choice_section(json.loads(path.read_text()))]
    for path in sorted(results_dir.glob("claims_*.json")):
        parts += ["", claim_section(path.stem.removeprefix("claims_"), json.loads(path.read_text()))]
    return "\n".join(parts) + "\n"


def update(results_dir):
    """Copy the newest outputs of the measuring commands into results_dir, unchanged."""
    claims = sorted((ROOT / "out/claims").glob("*.json"))
    choices = sorted((ROOT / "out/choices").glob("*.json"))
    sources = (dict(SOURCES) | {f"claims_{p.stem}.json": str(p) for p in claims}
               | {f"choices_{p.stem}.json": str(p) for p in choices})
    for name, source in sources.items():
        if (ROOT / source).is_file():
            shutil.copyfile(ROOT / source, Path(results_dir) / name)
            print(f"{source} -> {Path(results_dir) / name}")


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "docs/results.py")}
    Path(cfg["results_dir"]).mkdir(parents=True, exist_ok=True)
    if cfg["update"]:
        update(cfg["results_dir"])
    text = render(cfg["results_dir"])
    atomic_write(Path(cfg["out"]), lambda p: p.write_text(text))
    print(f"wrote {cfg['out']}")


if __name__ == "__main__":
    cli(main, "docs/results.py")
