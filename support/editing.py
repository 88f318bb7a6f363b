"""Editing a motion by body part and by time (issue 18): keep what is there, regenerate the rest from text.

The paper's case for 2D-LFQ (§4.2) is that each time step keeps one code per body part, so the language model
sees the body's parts apart. That makes editing a small change to generation: at every step, the codes of the
kept parts (or the kept steps) are forced to the source's, and the model writes the others, conditioned on the
instruction and on everything forced so far (MotionLM.generate's `keep`). Part editing keeps whole columns,
and the motion has the source's length; a continuation keeps the first steps and the model ends the motion.
"""

import numpy as np
import torch

from motion import (
    BODY_PARTS,
    FPS,
    FRAMES_PER_CODE,
    features_from_joints,
    mpjpe,
    recover_from_ric,
    root_aligned,
)

# --keep's groups: what a user means by "the upper body" and "the legs" in the tokenizer's parts
GROUPS = {"upper": ("torso", "left_arm", "right_arm", "left_hand", "right_hand"),
          "lower": ("root", "left_leg", "right_leg")}


def forced_codes(keep, lm, limit, low):
    """MotionLM.generate's keep masks (one per prompt, or None) -> (vocabulary ids [B, T, P], forced
    [B, T, P] bool, limit, low): which token to force where, and the per-row step limits, adjusted. A mask
    that keeps anything in its last step (part editing) fixes the motion to its T steps; one that keeps only
    leading steps (a continuation) makes the motion at least that long and lets the model end it."""
    if keep is None:
        return None, None, limit, low
    B = len(limit)
    if len(keep) != B:
        raise ValueError(f"keep: {len(keep)} entries for {B} prompts")
    T = max([len(k[0]) for k in keep if k is not None], default=1)
    ids = torch.zeros(B, T, lm.P, dtype=torch.long)
    forced = torch.zeros(B, T, lm.P, dtype=torch.bool)
    for b, k in enumerate(keep):
        if k is None:
            continue
        codes, mask = torch.as_tensor(np.asarray(k[0])).long(), torch.as_tensor(np.asarray(k[1])).bool()
        if codes.ndim != 2 or codes.shape != mask.shape or codes.shape[1] != lm.P or not len(codes):
            raise ValueError(f"keep: codes and mask must both be [T >= 1, {lm.P}], got "
                             f"{tuple(codes.shape)} and {tuple(mask.shape)}")
        if codes.min() < 0 or codes.max() >= lm.K:
            raise ValueError(f"keep: codes must lie in [0, {lm.K})")
        ids[b, :len(codes)], forced[b, :len(codes)] = torch.as_tensor(lm.motion_ids)[codes], mask
        kept = mask.any(1).nonzero()
        if mask[-1].any():
            low[b] = limit[b] = len(codes)
        elif len(kept):
            low[b] = max(int(low[b]), int(kept[-1]) + 1)
    if (low > limit).any():
        raise ValueError(f"keep: a source of {int(low.max())} steps does not fit: at most {int(limit.min())}")
    return ids.to(limit.device), forced.to(limit.device), limit, low


def kept_parts(part_names, keep):
    """--keep ("upper", "lower", or part names, comma-separated) -> the tokenizer's part names it keeps."""
    if part_names is None:
        raise ValueError("the run's tokenizer has one code per step (1D): it has no body parts to keep; "
                         "edit with a 2D-LFQ run, or keep time (--keep_seconds)")
    names = [n.strip() for n in keep.split(",") if n.strip()]
    wanted = {p for n in names for p in GROUPS.get(n, (n,))}
    unknown = [n for n in names if n not in GROUPS and n not in part_names]
    if unknown or not wanted & set(part_names):
        raise ValueError(f"--keep={keep!r} names no part of this run: give upper, lower or some of "
                         f"{', '.join(part_names)}")
    return [p for p in part_names if p in wanted]


def keep_mask(tok, steps, keep="", keep_seconds=0.0):
    """[steps, P] bool: the columns of the kept parts (`keep`), or the rows of the first keep_seconds."""
    if bool(keep) == bool(keep_seconds):
        raise ValueError("give what to keep: --keep=upper|lower|<parts> or --keep_seconds=S (one of them)")
    mask = np.zeros((steps, tok.P), bool)
    if keep:
        kept = kept_parts(getattr(tok, "part_names", None), keep)
        mask[:, [tok.part_names.index(p) for p in kept]] = True
        return mask
    rows, seconds = round(keep_seconds * FPS / FRAMES_PER_CODE), steps * FRAMES_PER_CODE / FPS
    if not 1 <= rows < steps:  # all of it kept would leave nothing to continue: the mask's end fixes length
        raise ValueError(f"--keep_seconds={keep_seconds}: the source lasts {seconds:.1f} s ({steps} steps of "
                         f"{FRAMES_PER_CODE} frames); keep at least one step and less than all of it")
    mask[:rows] = True
    return mask


@torch.no_grad()
def source_codes(tok, joints):
    """A source motion's joints [T, J, 3] -> its codes [T', P]: features as data.py makes them (the last
    frame repeated, so that every frame counts), cropped to 4-frame units, encoded with held edges."""
    joints = np.asarray(joints, np.float32)
    if joints.ndim != 3 or joints.shape[1:] != (tok.joints_num, 3):
        raise ValueError(f"the source has joints of shape {joints.shape}; this run's skeleton is "
                         f"[T, {tok.joints_num}, 3]")
    if len(joints) < FRAMES_PER_CODE:
        raise ValueError(f"the source has {len(joints)} frames, shorter than one step of {FRAMES_PER_CODE}")
    feats = features_from_joints(np.concatenate([joints, joints[-1:]]))
    feats = feats[:len(feats) // FRAMES_PER_CODE * FRAMES_PER_CODE].astype(np.float32)
    return tok.encode(torch.from_numpy(feats)[None])[0].cpu().numpy()


@torch.no_grad()
def decoded_joints(tok, codes):
    """Codes [T, P] -> the tokenizer's decoded joints [4 T, J, 3]."""
    feats = tok.decode(torch.as_tensor(codes, device=tok.mean.device)[None])[0]
    return recover_from_ric(feats.float().cpu().numpy(), tok.joints_num)


def kept_joints(mask, part_names, joints_num):
    """A keep mask [T', P] -> [4 T', J] bool: is each joint of each frame kept (its part's code forced)?"""
    part_of = np.zeros(joints_num, np.int64)  # joint 0 is the root part
    for i, name in enumerate(part_names or ["root"]):
        part_of[BODY_PARTS.get(name, [0] if name == "root" else [])] = i
    return np.repeat(np.asarray(mask)[:, part_of], FRAMES_PER_CODE, 0)


# ----------------------------------------------------------------------------------------------
# The edit protocol (eval.py --edits): three kinds of edit on the embedded dataset, each judged by the
# physical checks, against the same texts generated from scratch.
def edit_tasks(data, clips, seed=0):
    """(kind, clip index, text, keep, keep_steps, checks, part texts) for every clip an edit applies to:
    upper: a one-action "walks forward" clip, keep the legs, ask for the walk while raising an arm;
    lower: a standing clip raising an arm, keep the upper body, ask for squats while raising it;
    continuation: a "walks forward" clip, keep its first half, ask for the walk then jumps.
    The texts are synth's own captions for those plans (support/synth_captions.describe)."""
    from support.physical import clip_plans, plan_action

    rng, tasks = np.random.default_rng([seed, 3]), []
    for i, plan in zip(clips.tolist(), clip_plans(data, clips), strict=True):
        action = plan_action(plan)
        seg = plan["segments"][0] if action else None
        if action and action[0] == "walk" and action[1]["dir"] == "forward":
            side = ("left", "right")[int(rng.integers(2))]
            raised = {"kind": "walk", "gesture": "raise", "p": seg["p"], "gp": {"side": side}}
            checks = [("walk", seg["p"]), ("raise", {"side": side})]
            text, parts = _caption([raised], rng)
            tasks.append(("upper", i, text, "lower", 0, checks, parts))
            count = int(rng.integers(1, 4))
            text, parts = _caption([{"kind": "walk", "gesture": None, "p": seg["p"], "gp": {}},
                                    {"kind": "jump", "gesture": None, "p": {"count": count}, "gp": {}}], rng)
            tasks.append(("continuation", i, text, "", "half", [("jump", {"count": count})], parts))
        elif action and action[0] == "raise" and action[1]["side"] != "both":
            count = int(rng.integers(1, 4))
            squat = {"kind": "squat", "gesture": "raise", "p": {"count": count}, "gp": seg["gp"]}
            checks = [("squat", {"count": count}), ("raise", seg["gp"])]
            text, parts = _caption([squat], rng)
            tasks.append(("lower", i, text, "upper", 0, checks, parts))
    return tasks


def _caption(segments, rng):
    from support.synth_captions import describe

    captions, parts = describe({"subset": "edit", "segments": segments}, rng)
    return captions[0], parts


def judge(joints, checks, seam=0):
    """Do the joints pass every check? A continuation (seam > 0: its first generated frame) is judged on
    what follows the seam, and fails on a cut there: the root's move from the last kept frame to the first
    generated one is at most twice its largest frame-to-frame move among the kept frames."""
    from support.physical import physical_check

    joints = np.asarray(joints)
    if seam:
        kept_moves = np.linalg.norm(np.diff(joints[:seam, 0], axis=0), axis=1)
        step = np.linalg.norm(joints[min(seam, len(joints) - 1), 0] - joints[seam - 1, 0])
        if len(joints) <= seam + 1 or step > 2 * kept_moves.max():
            return False
        joints = joints[seam:]
    return all(physical_check(joints, kind, p) for kind, p in checks)


def evaluate_edits(data, clips, lm_dir, settings, seed=0, device="cpu", draws=1000, part_texts=False):
    """The edit protocol over `clips`, one take per edit: per kind, n, the share of edits that pass their
    checks and of the same texts generated from scratch (judged alike, a continuation after the same frame;
    part_texts: the instruction also carries the edit's upper- and lower-body texts, as MotionBase's),
    each with a 95% bootstrap interval over the clips; and how well the kept parts were kept: root-aligned
    MPJPE (mm) of the kept joints between the source's own reconstruction (encode -> decode) and the edit,
    beside the tokenizer's MPJPE on those sources."""
    import sample  # a stage; imported here so that importing this module stays light

    tok = sample.cached_run(lm_dir, device)[1]
    out, every = {}, edit_tasks(data, clips, seed)
    for kind in ("upper", "lower", "continuation"):
        tasks = [t for t in every if t[0] == kind]
        if not tasks:
            continue
        sources = [recover_from_ric(np.array(data.motion(t[1]), np.float32), data.joints_num) for t in tasks]
        codes = [source_codes(tok, s) for s in sources]
        half = [(len(c) // 2) * FRAMES_PER_CODE / FPS if t[4] == "half" else 0
                for c, t in zip(codes, tasks, strict=True)]
        masks = [keep_mask(tok, len(c), t[3], s) for c, t, s in zip(codes, tasks, half, strict=True)]
        texts, parts = [t[2] for t in tasks], [t[6] if part_texts else None for t in tasks]
        keys, keep = range(len(tasks)), list(zip(codes, masks, strict=True))
        edits = sample.generate(texts, lm_dir, seed=seed, device=device, keys=keys, keep=keep, parts=parts,
                                **settings)
        fresh = sample.generate(texts, lm_dir, seed=seed, device=device, keys=keys, parts=parts, **settings)
        seams = [FRAMES_PER_CODE * int(m[:, 0].sum()) if kind == "continuation" else 0 for m in masks]
        passed = {name: np.array([judge(j, t[5], s) for j, t, s in zip(takes, tasks, seams, strict=True)])
                  for name, takes in (("edit", edits), ("scratch", fresh))}
        kept_mm, recon_mm = [], []
        for source, c, mask, take in zip(sources, codes, masks, edits, strict=True):
            recon = decoded_joints(tok, c)
            frames = min(len(recon), len(take))
            kept = kept_joints(mask, getattr(tok, "part_names", None), tok.joints_num)[:frames]
            diff = np.linalg.norm(root_aligned(recon[:frames]) - root_aligned(take[:frames]), axis=-1)
            kept_mm.append(1000 * diff[kept].mean())
            recon_mm.append(mpjpe(source[:len(recon)], recon))
        out[kind] = {"n": len(tasks), "kept_mpjpe_mm": float(np.mean(kept_mm)),
                     "tokenizer_mpjpe_mm": float(np.mean(recon_mm)), "examples": [t[2] for t in tasks[:3]]}
        rng = np.random.default_rng([seed, 4])
        for name, hits in passed.items():
            resampled = [hits[rng.integers(len(hits), size=len(hits))].mean() for _ in range(draws)]
            interval = np.percentile(resampled, [2.5, 97.5]).tolist()
            out[kind] |= {name: float(hits.mean()), f"{name}_ci": interval}
    return out


@torch.no_grad()
def decoded_mixes(data, clips, tok):
    """Does the tokenizer keep the parts apart? Each one-action "walks forward" clip of `clips` is paired
    with a standing one-arm raise: the walk's codes with the raise's upper-body codes put in (both cropped to
    the shorter) are decoded, and judged by the walk's and the raise's checks; beside it the share of the
    raises' own cropped reconstructions that pass. A part edit cannot do better than these mixes."""
    from support.physical import clip_plans, physical_check, plan_action

    actions = [(i, plan_action(p)) for i, p in zip(clips.tolist(), clip_plans(data, clips), strict=True)]
    walks = [(i, a) for i, a in actions if a and a[0] == "walk" and a[1]["dir"] == "forward"]
    raises = [(i, a) for i, a in actions if a and a[0] == "raise" and a[1]["side"] != "both"]
    upper = [k for k, name in enumerate(tok.part_names) if name in GROUPS["upper"]]
    hits = []
    for (w, walk), (r, raise_) in zip(walks, raises, strict=False):  # as many pairs as the shorter list
        cw, cr = (source_codes(tok, recover_from_ric(np.array(data.motion(i), np.float32), data.joints_num))
                  for i in (w, r))
        T = min(len(cw), len(cr))
        mix = cw[:T].copy()
        mix[:, upper] = cr[:T, upper]
        mixed = decoded_joints(tok, mix)
        hits.append((physical_check(mixed, *walk), physical_check(mixed, *raise_),
                     physical_check(decoded_joints(tok, cr[:T]), *raise_)))
    hits = np.array(hits, bool).reshape(-1, 3)
    return {"n": len(hits), "mix_walk": float(hits[:, 0].mean()), "mix_raise": float(hits[:, 1].mean()),
            "mix_both": float((hits[:, 0] & hits[:, 1]).mean()), "raise_alone": float(hits[:, 2].mean())}

