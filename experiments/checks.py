"""Do the physical checks tell kinds apart (issue 28)? Their confusion matrix over real synth clips.

    python experiments/checks.py                       # 40 clips per kind -> docs/results/checks.json
    python experiments/checks.py --clips=20 --out=/tmp/checks.json

Rows are the one-action kinds B (a whole-body kind alone, or a gesture on "stand": every kind synth makes
as a one-segment plan; stand_up never comes alone, it follows a sit-down), columns the checks A of
support/eval_physical.py. A cell is the share of B's clips that pass A's check with any parameters synth's
grammar can state for A (synth.PARAMS); on the diagonal, with the clip's own parameters. `other_parameters`
is the share of A's clips that pass A's check with some other parameters (a slow walk as a fast one, a jump
counted three times instead of two). The clips are train clips of the synth dataset with `seed`, as
eval.py sees real clips (their features back to joints); hops and lunges, which only the OOD split holds,
are OOD clips of another seed (`ood_seed`), so that no clip the OOD evaluation scores is among them.
Targets: the diagonal at least 0.95, every other cell at most 0.05.
"""

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python experiments/checks.py`
import synth  # noqa: E402
from common import cli, parallel_map, parse_args, write_json  # noqa: E402
from motion import recover_from_ric  # noqa: E402
from support.eval_physical import CHECKED, physical_check  # noqa: E402

# settings: plain values, overridden by --key=value
CONFIG = dict(
    clips=40,  # clips per kind (the first found, in index order)
    seed=0,  # synth seed of the train clips (the dataset's: data.py's default)
    ood_seed=1,  # synth seed of the hop and lunge clips (OOD split; not the dataset's)
    scan=100000,  # clip indices scanned for them (plans only: cheap)
    workers=1,  # processes that generate and check the clips
    out="docs/results/checks.json",
)
KINDS = ("stand", "walk", "sidestep", "circle", "run", "turn", "jump", "squat", "kick", "lunge", "hop",
         "sit_down", "wave", "raise", "clap", "punch", "arms_out", "reach", "hips", "stretch")
TARGETS = {"min_diagonal": 0.95, "worst_off_diagonal": 0.05}


def one_action(plan):
    """(kind, parameters) of a non-static one-segment plan: a whole-body kind alone or a gesture on stand."""
    if plan["subset"] == "static" or len(plan["segments"]) != 1:
        return None
    seg = plan["segments"][0]
    if seg["gesture"]:
        return (seg["gesture"], seg["gp"]) if seg["kind"] == "stand" else None
    return seg["kind"], seg["p"]


def find_clips(per_kind, seed, ood_seed, scan):
    """{kind: [(index, seed, parameters)]}: the first per_kind one-action clips of each kind, in index order:
    train clips of `seed`, and for synth.OOD_KINDS the OOD clips of `ood_seed`."""
    found = {kind: [] for kind in KINDS}
    for s, split, kinds in ((seed, "train", set(KINDS) - set(synth.OOD_KINDS)),
                            (ood_seed, "ood", set(synth.OOD_KINDS))):
        for index in range(scan):
            plan = synth.plan_clip(index, s)
            action = one_action(plan) if plan["split"] == split else None
            if action and action[0] in kinds and len(found[action[0]]) < per_kind:
                found[action[0]].append((index, s, action[1]))
            if all(len(found[k]) == per_kind for k in kinds):
                break
    return found


def parameter_sets(kind):  # every parameter combination synth's grammar can state for the kind
    names, choices = list(synth.PARAMS[kind]), synth.PARAMS[kind].values()
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*choices)]


def real_joints(index, seed):  # what eval.py sees of a real clip: its features back to joints
    return recover_from_ric(synth.generate_clip(index, seed, with_joints=False)["feats"], 22)


def outcomes(item):
    """One clip (kind, index, seed, parameters) -> {check: (passes with its own parameters or, for another
    kind, with any; passes with parameters other than its own)}, on the joints eval.py sees."""
    kind, index, seed, params = item
    joints = real_joints(index, seed)
    out = {}
    for check in CHECKED:
        own = {k: params.get(k) for k in synth.PARAMS[check]}  # the stated ones (a plan has others: rests)
        others = [q for q in parameter_sets(check) if not (check == kind and q == own)]
        any_other = any(physical_check(joints, check, q) for q in others)
        out[check] = (physical_check(joints, check, params) if check == kind else any_other, any_other)
    return out


def confusion(found, workers=1):
    """The matrix {B: {A: share}}, n per row, and per check the share of its own clips passing other
    parameters; with the smallest diagonal cell and the largest other cell."""
    items = [(kind, index, seed, params) for kind, clips in found.items() for index, seed, params in clips]
    results = list(parallel_map(outcomes, items, workers, chunksize=16))
    matrix, n, other = {}, {}, {}
    for kind in found:
        rows = [r for r, item in zip(results, items, strict=True) if item[0] == kind]
        n[kind] = len(rows)
        matrix[kind] = {a: float(np.mean([r[a][0] for r in rows])) for a in CHECKED}
        if kind in CHECKED:
            other[kind] = float(np.mean([r[kind][1] for r in rows]))
    diagonal = {a: matrix[a][a] for a in CHECKED}
    off = [(matrix[b][a], b, a) for b in matrix for a in CHECKED if a != b]
    worst = max(off)  # its cell: None when no clip passes another kind's check
    return {"matrix": matrix, "n": n, "other_parameters": other, "min_diagonal": min(diagonal.values()),
            "min_diagonal_kind": min(diagonal, key=diagonal.get), "worst_off_diagonal": worst[0],
            "worst_off_diagonal_cell": {"clip_kind": worst[1], "check": worst[2]} if worst[0] else None}


def table(result):
    """The matrix as markdown: a row per clip kind (with its n), a column per check, '.' for 0."""
    lines = ["| clips \\ check | n | " + " | ".join(CHECKED) + " |", "|---|---|" + "---|" * len(CHECKED)]
    for kind, row in result["matrix"].items():
        cells = [("." if row[a] == 0 else f"**{row[a]:.2f}**" if a == kind else f"{row[a]:.2f}")
                 for a in CHECKED]
        lines.append(f"| {kind} | {result['n'][kind]} | " + " | ".join(cells) + " |")
    other = ", ".join(f"{k} {v:.2f}" for k, v in result["other_parameters"].items())
    return "\n".join(lines + ["", f"own clips passing with other parameters: {other}",
                              f"min diagonal {result['min_diagonal']:.3f} ({result['min_diagonal_kind']}), "
                              f"worst off-diagonal {result['worst_off_diagonal']:.3f} "
                              f"({result['worst_off_diagonal_cell']})"])


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "experiments/checks.py")}
    if cfg["clips"] < 1:
        raise ValueError(f"--clips must be at least 1, got --clips={cfg['clips']}")
    found = find_clips(cfg["clips"], cfg["seed"], cfg["ood_seed"], cfg["scan"])
    if missing := [kind for kind, clips in found.items() if not clips]:
        raise ValueError(f"no one-action clip of {', '.join(missing)} in the first {cfg['scan']} clips; "
                         "raise --scan")
    result = confusion(found, cfg["workers"])
    settings = {k: cfg[k] for k in ("clips", "seed", "ood_seed", "scan")}
    out = {"settings": settings | {"checks": list(CHECKED), "targets": TARGETS, "clips_are": (
        "train clips of seed; hop and lunge: OOD clips of ood_seed"), "joints": "recover_from_ric(feats)"}}
    write_json(Path(cfg["out"]), out | result)
    print(table(result))
    print(f"\nwrote {cfg['out']}")


if __name__ == "__main__":
    cli(main, "experiments/checks.py")
