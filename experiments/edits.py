"""The edit protocol (issue 18): editing a motion by body part and by time, judged by the physical checks
(support/eval_physical.py) against the same texts generated from scratch.

    python experiments/edits.py                                  # out/lm/default on data/synth's test split
    python experiments/edits.py --lm_dir=out/lm/default --data_dir=data/synth --splits=test

The paper's case for 2D-LFQ (§4.2) is that each time step keeps one code per body part, so the language model
sees the body's parts apart; an edit forces the kept parts' (or the kept steps') codes to the source's and
lets the model write the rest from the text (sample.generate's `keep`). Three kinds of edit, on every clip of
the split one applies to (edit_tasks), one take each: upper (keep a walk's legs, ask for the walk while
raising an arm), lower (keep a raised arm, ask for squats while raising it), continuation (keep a walk's
first half, ask for the walk then jumps). Writes out/eval/<dataset>/edits_<run>.json ({split: {kind:
figures}}) and prints the table.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python experiments/edits.py`
import data as motion_data  # noqa: E402
import eval as evaluation  # noqa: E402
import sample  # noqa: E402
from common import cli, parse_args, pick_device, write_json  # noqa: E402
from motion import FPS, FRAMES_PER_CODE, mpjpe, recover_from_ric, root_aligned  # noqa: E402
from support.eval_metrics import wilson  # noqa: E402
from support.eval_physical import clip_plans, physical_check, plan_action  # noqa: E402
from support.eval_report import cell  # noqa: E402
from support.synth_captions import describe  # noqa: E402

# settings: plain values, overridden by --key=value
CONFIG = dict(
    data_dir="data/synth",
    lm_dir="out/lm/default",  # the LM run that edits
    splits="test",  # comma-separated (val: for choosing settings, never test)
    sample_temperature=-1.0, sample_top_k=-1, sample_top_p=-1.0, sample_guidance=-1.0,  # < 0: sample.py's
    sample_lengths="",
    out="",  # JSON path ("" -> out/eval/<dataset>/edits_<run>.json)
    seed=0, device="auto",
)


def edit_tasks(data, clips, seed=0):
    """(kind, clip index, text, keep, keep_steps, checks) for every clip an edit applies to:
    upper: a one-action "walks forward" clip, keep the legs, ask for the walk while raising an arm;
    lower: a standing clip raising an arm, keep the upper body, ask for squats while raising it;
    continuation: a "walks forward" clip, keep its first half, ask for the walk then jumps.
    The texts are synth's own captions for those plans (support/synth_captions.describe)."""
    rng, tasks = np.random.default_rng([seed, 3]), []
    for i, plan in zip(clips.tolist(), clip_plans(data, clips), strict=True):
        action = plan_action(plan)
        seg = plan["segments"][0] if action else None
        if action and action[0] == "walk" and action[1]["dir"] == "forward":
            side = ("left", "right")[int(rng.integers(2))]
            raised = {"kind": "walk", "gesture": "raise", "p": seg["p"], "gp": {"side": side}}
            checks = [("walk", seg["p"]), ("raise", {"side": side})]
            tasks.append(("upper", i, _caption([raised], rng), "lower", 0, checks))
            count = int(rng.integers(1, 4))
            text = _caption([{"kind": "walk", "gesture": None, "p": seg["p"], "gp": {}},
                             {"kind": "jump", "gesture": None, "p": {"count": count}, "gp": {}}], rng)
            tasks.append(("continuation", i, text, "", "half", [("jump", {"count": count})]))
        elif action and action[0] == "raise" and action[1]["side"] != "both":
            count = int(rng.integers(1, 4))
            squat = {"kind": "squat", "gesture": "raise", "p": {"count": count}, "gp": seg["gp"]}
            checks = [("squat", {"count": count}), ("raise", seg["gp"])]
            tasks.append(("lower", i, _caption([squat], rng), "upper", 0, checks))
    return tasks


def _caption(segments, rng):  # synth's first caption for a plan of these segments
    return describe({"subset": "edit", "segments": segments}, rng)[0][0]


def judge(joints, checks, seam=0):
    """Do the joints pass every check? A continuation (seam > 0: its first generated frame) is judged on
    what follows the seam, and fails on a cut there: the root's move from the last kept frame to the first
    generated one is at most twice its largest frame-to-frame move among the kept frames."""
    joints = np.asarray(joints)
    if seam:
        kept_moves = np.linalg.norm(np.diff(joints[:seam, 0], axis=0), axis=1)
        step = np.linalg.norm(joints[min(seam, len(joints) - 1), 0] - joints[seam - 1, 0])
        if len(joints) <= seam + 1 or step > 2 * kept_moves.max():
            return False
        joints = joints[seam:]
    return all(physical_check(joints, kind, p) for kind, p in checks)


def evaluate_edits(data, clips, lm_dir, settings, seed=0, device="cpu"):
    """The edit protocol over `clips`, one take per edit: per kind, n, the share of edits that pass their
    checks and of the same texts generated from scratch (judged alike, a continuation after the same frame),
    each with a 95% Wilson interval (n = the clips); and how well the kept parts were kept: root-aligned
    MPJPE (mm) of the kept joints between the source's own reconstruction (encode -> decode) and the edit,
    beside the tokenizer's MPJPE on those sources."""
    tok = sample.cached_run(lm_dir, device)[1]
    out, every = {}, edit_tasks(data, clips, seed)
    for kind in ("upper", "lower", "continuation"):
        tasks = [t for t in every if t[0] == kind]
        if not tasks:
            continue
        sources = [recover_from_ric(np.array(data.motion(t[1]), np.float32), data.joints_num) for t in tasks]
        codes = [sample.source_codes(tok, s) for s in sources]
        half = [(len(c) // 2) * FRAMES_PER_CODE / FPS if t[4] == "half" else 0
                for c, t in zip(codes, tasks, strict=True)]
        masks = [sample.keep_mask(tok, len(c), t[3], s) for c, t, s in zip(codes, tasks, half, strict=True)]
        texts, keys, keep = [t[2] for t in tasks], range(len(tasks)), list(zip(codes, masks, strict=True))
        edits = sample.generate(texts, lm_dir, seed=seed, device=device, keys=keys, keep=keep, **settings)
        fresh = sample.generate(texts, lm_dir, seed=seed, device=device, keys=keys, **settings)
        seams = [FRAMES_PER_CODE * int(m[:, 0].sum()) if kind == "continuation" else 0 for m in masks]
        passed = {name: np.array([judge(j, t[5], s) for j, t, s in zip(takes, tasks, seams, strict=True)])
                  for name, takes in (("edit", edits), ("scratch", fresh))}
        kept_mm, recon_mm = [], []
        for source, c, mask, take in zip(sources, codes, masks, edits, strict=True):
            recon = sample.decoded_joints(tok, c)
            frames = min(len(recon), len(take))
            kept = sample.kept_joints(mask, getattr(tok, "part_names", None), tok.joints_num)[:frames]
            diff = np.linalg.norm(root_aligned(recon[:frames]) - root_aligned(take[:frames]), axis=-1)
            kept_mm.append(1000 * diff[kept].mean())
            recon_mm.append(mpjpe(source[:len(recon)], recon))
        out[kind] = {"n": len(tasks), "kept_mpjpe_mm": float(np.mean(kept_mm)),
                     "tokenizer_mpjpe_mm": float(np.mean(recon_mm)), "examples": [t[2] for t in tasks[:3]]}
        for name, hits in passed.items():  # shares of clips: Wilson's (a bootstrap's interval is [0, 0] at 0)
            out[kind] |= {name: float(hits.mean()), f"{name}_ci": wilson(hits.mean(), len(hits))}
    return out


def edit_table(edits):
    """The protocol's figures per split and kind of edit ({split: {kind: figures}}), with n and intervals."""
    lines = ["\n| split | edit | n | edits that pass | the same texts from scratch | kept parts' MPJPE (mm) "
             "| tokenizer MPJPE (mm) |", "|---|---|---|---|---|---|---|"]
    for split, kinds in edits.items():
        lines += [f"| {split} | {kind} | {r['n']} | {cell(r, 'edit')} | {cell(r, 'scratch')} | "
                  f"{r['kept_mpjpe_mm']:.1f} | {r['tokenizer_mpjpe_mm']:.1f} |" for kind, r in kinds.items()]
    return "\n".join(lines)


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "experiments/edits.py")}
    if not (Path(cfg["lm_dir"]) / "config.json").is_file():
        raise FileNotFoundError(f"{cfg['lm_dir']}: no trained LM run (train one with `python train.py "
                                f"--run_name={Path(cfg['lm_dir']).name}`)")
    data = motion_data.MotionData(cfg["data_dir"])
    device = pick_device(cfg["device"])
    results = {s: evaluate_edits(data, data.split(s), cfg["lm_dir"], evaluation.sampling(cfg), cfg["seed"],
                                 device) for s in cfg["splits"].split(",")}
    print(edit_table(results))
    out = Path(cfg["out"] or Path("out/eval") / data.meta["name"] / f"edits_{Path(cfg['lm_dir']).name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli(main, "experiments/edits.py")
