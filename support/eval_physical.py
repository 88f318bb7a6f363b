"""Physical checks of generated motion on the embedded dataset, with no evaluator (what §5.4 of the paper says
is missing): does the motion do what its clip's plan says, from the joints alone (docs/evaluation.md)."""

import numpy as np
import torch

from motion import FPS, FRAMES_PER_CODE, recover_from_ric

# Physical checks: no evaluator, just the joints [T, 22, 3] (metres, +Y up, SMPL order, facing +Z at the
# start as recover_from_ric gives them) against the clip's plan, which synth stores in texts.jsonl as
# "plan": {"subset", "segments": [{"kind", "gesture", "p", "gp", "n"}]} (synth.plan_clip makes it);
# a one-segment, non-static plan doing one checked action (a gesture alone rides on "stand") is checked.
# Each check also rejects the real clips of every other one-action kind, with any parameters
# (experiments/checks.py measures it: docs/results/checks.json).
CHECKED = ("walk", "run", "sidestep", "circle", "turn", "jump", "squat", "kick", "raise", "hop", "lunge",
           "sit_down")
FOOT = {"left": [7, 10], "right": [8, 11]}  # ankle, toe
OTHER = {"left": "right", "right": "left"}
FLIGHT = 0.03  # m: both feet this far above the clip's lowest foot = off the ground (a run's: 4.6-5 cm)
# ground speed (m/s, _speed) bounds by the stated speed, between those of the one-action clips of synth's
# first 12,000 at seeds 0 and 1 (200-300 a speed): walks went slow 0.54-0.70, normal 0.76-1.11, fast
# 1.21-1.58; runs slow 1.43-1.90, normal 2.04-2.68, fast 2.90-3.63
SPEEDS = {"walk": {"slow": (0.0, 0.73), "normal": (0.73, 1.16), "fast": (1.16, np.inf)},
          "run": {"slow": (0.0, 1.97), "normal": (1.97, 2.79), "fast": (2.79, np.inf)}}
HELD = FPS // 2  # frames: a raised arm stays above the head 1 s or more, a jump's arms swing there 0.15 s


def plan_action(plan):
    """(kind, parameters) of a plan that is one checked action, else None."""
    if not plan or plan["subset"] == "static" or len(plan["segments"]) != 1:
        return None
    seg = plan["segments"][0]
    kind, params = ((seg["gesture"], seg["gp"]) if seg["kind"] == "stand" and seg["gesture"] else
                    (seg["kind"], seg["p"]) if not seg["gesture"] else (None, None))
    return (kind, params) if kind in CHECKED else None


def _runs(mask, min_len=2):  # the number of runs of at least min_len consecutive True
    edges = np.diff(np.r_[0, np.asarray(mask, np.int8), 0])
    return int(((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)) >= min_len).sum())


def _speed(xz):
    """The root's ground speed (m/s) while it moves: the median over frames faster than 0.15 m/s (still pauses
    do not count), each averaged over 5 frames, as the root speeds up and slows down within a step."""
    v = np.convolve(np.linalg.norm(np.diff(xz, axis=0), axis=1) * FPS, np.ones(5) / 5, "same")
    return float(np.median(v[v > 0.15])) if (v > 0.15).any() else 0.0


def physical_check(joints, kind, p):
    """Does the motion do what the plan says? The thresholds sit between the ground-truth clips of the kind
    and those of the same kind with other parameters, or of other kinds (tests/test_eval.py and
    tests/test_checks.py check both); the figures quoted are those clips'."""
    j = np.asarray(joints, np.float64)
    across = j[:, 2] - j[:, 1]  # left hip -> right hip: the body's right
    heading = np.unwrap(np.arctan2(across[:, 2], -across[:, 0]))  # 0 = facing +Z, + = turned left (to +X)
    turned = np.degrees(heading[-1] - heading[0])
    straight = np.degrees(np.abs(heading - heading[0]).max()) < 45  # a circle turns 350-355 degrees
    forward = np.array([np.sin(heading[0]), 0, np.cos(heading[0])])
    left = np.array([np.cos(heading[0]), 0, -np.sin(heading[0])])
    travel = j[-1, 0] - j[0, 0]
    foot = {s: j[:, FOOT[s], 1].min(1) for s in FOOT}  # lowest joint of each foot over the floor: the lower
    floor = np.median(np.minimum(foot["left"], foot["right"]))  # foot's median height (a decoded stance foot
    # wobbles +-2.5 cm: over its lowest frame, a decoded circle walk had both feet "off" in 30% of frames)
    foot = {s: f - floor for s, f in foot.items()}
    off = np.minimum(foot["left"], foot["right"]) > FLIGHT
    flights, grounded = _runs(off), not off.any()  # a run's flights can last one frame: none of it
    pelvis, s, in_place = j[:, 0, 1], p.get("side"), np.hypot(travel[0], travel[2]) < 0.3
    sign = -1 if s == "right" else 1
    if kind in ("walk", "run"):  # root displacement along the facing, in the stated direction (a run's:
        along = (-1 if p.get("dir") == "backward" else 1) * travel @ forward  # forward), at the stated speed
        low, high = SPEEDS[kind][p["speed"]] if p.get("speed") else (0, np.inf)  # (unstated: any); a walk
        return along > 0.5 and along > abs(travel @ left) and grounded == (kind == "walk") and straight and (
            low <= _speed(j[:, 0, [0, 2]]) < high)  # keeps a foot down, a run leaves the ground
    if kind == "sidestep":
        sideways = sign * travel @ left
        return sideways > 0.3 and sideways > abs(travel @ forward) and grounded and straight
    if kind == "circle":  # a full turn to the stated side (a turn: 180 at most), walking 2 m (circles 3.2
        path = np.linalg.norm(np.diff(j[:, 0, [0, 2]], axis=0), axis=1).sum()  # to 8.9 m, turns 0.7 at most)
        return sign * turned > 270 and path > 2 and grounded
    if kind == "turn":  # the facing change is nearer the stated angle than any other of 45, 90, 135, 180
        return abs(turned - sign * p["angle"]) < 22.5
    if kind == "jump":  # n flight phases, in the air both feet together (a hop's 24-26 cm apart, a jump's 1
        apart = np.median(np.abs(foot["left"] - foot["right"])[off]) if flights else 0  # at most), in place
        return flights == p["count"] and apart < 0.05 and in_place  # (a run's flights travel 3.4 m or more)
    if kind == "hop":  # n flight phases on one foot: in the air the other foot held 10 cm above it
        return flights == p["count"] and np.median((foot[OTHER[s]] - foot[s])[off]) > 0.1
    if kind == "squat":  # n dips of the pelvis by 30 cm, feet on the ground, back up at the end (within
        back_up = pelvis[-1] > pelvis[0] - 0.15  # 15 cm of the start: squats 0, a sit-down 36 cm down)
        return flights == 0 and _runs(pelvis < pelvis.max() - 0.3) == p["count"] and back_up
    if kind == "sit_down":  # the pelvis ends 20 cm below its start (36 cm; any other kind: 4.6 at most)
        return grounded and pelvis[0] - pelvis[-1] > 0.2
    if kind == "kick":  # the kicking ankle rises 30 cm above the other's highest point
        return j[:, FOOT[s][0], 1].max() > j[:, FOOT[OTHER[s]][0], 1].max() + 0.3
    if kind == "raise":  # the wrist above the head (15) for HELD frames, the other never (unless both);
        up = {w: int((j[:, i, 1] - j[:, 15, 1] > 0.05).sum()) for w, i in (("left", 20), ("right", 21))}
        arms = min(up.values()) >= HELD if s == "both" else up[s] >= HELD and not up[OTHER[s]]
        spine = (j[:, 12] - j[:, 0]) / np.linalg.norm(j[:, 12] - j[:, 0], axis=1, keepdims=True)
        lean = np.abs((spine * across).sum(1)) / np.linalg.norm(across, axis=1)  # sine of the sideways lean:
        return arms and lean.max() < 0.1 and grounded  # a stretch's 0.15-0.23, any other kind's 0.06 at most
    if kind == "lunge":  # at the lowest pelvis (10 cm down), the named foot half a metre ahead of the other;
        low = int(np.argmin(pelvis))  # in place, feet on the ground (a running stride has the rest)
        ahead = (j[low, FOOT[s][1]] - j[low, FOOT[OTHER[s]][1]]) @ forward
        return pelvis.max() - pelvis[low] > 0.1 and ahead > 0.5 and flights == 0 and in_place
    raise ValueError(f"no physical check for kind {kind!r} (checked: {', '.join(CHECKED)})")


COUNTED = ("jump", "squat", "hop")  # "jumps twice": their checks count flight phases or dips


def action_figures(passed, kinds, at):
    """Action accuracy over the checked clips `at` (indices; repeats in a bootstrap draw): micro (clips
    passed / clips checked: the headline), macro (the mean of the kinds' pass rates), and each kind's;
    count accuracy over the kinds whose text gives a count, which their check counts."""
    rates = {k: float(passed[at][kinds[at] == k].mean()) for k in np.unique(kinds[at])}
    counted = np.isin(kinds[at], COUNTED)
    return {"action_accuracy": float(passed[at].mean()), "action_accuracy_macro": float(np.mean(list(
        rates.values())))} | {f"action_{k}": v for k, v in rates.items()} | (
        {"count_accuracy": float(passed[at][counted].mean())} if counted.any() else {})


def checked_actions(data, clips):
    """{clip: (kind, parameters)} for the clips (indices) whose plan is one checked action."""
    return {i: a for i, plan in zip(np.asarray(clips).tolist(), clip_plans(data, clips), strict=True)
            if (a := plan_action(plan))}


def clip_plans(data, clips):
    """Each clip's plan from texts.jsonl (synth writes it; None for clips without one, e.g. real data)."""
    records = [data.texts[i] for i in clips]
    if (data.meta.get("source") or {}).get("synth") and records and "plan" not in records[0]:
        raise ValueError(f"{data.root}: a synth dataset written before texts.jsonl stored each clip's plan, "
                         "which the physical checks read; rebuild it with `python data.py`")
    return [r.get("plan") for r in records]


@torch.no_grad()
def reconstruction_passes(tok, data, checked):
    """Does each checked clip's reconstruction (the whole clip cropped to 4-frame units, encode -> decode)
    pass its physical check? The ceiling of a model that writes this tokenizer's codes."""
    clips, passed = np.fromiter(checked, np.int64), {}
    for idx, feats in data.whole_clips(clips, FRAMES_PER_CODE):
        recon = tok.decode(tok.encode(feats)).float().cpu().numpy()
        for i, f in zip(idx.tolist(), recon, strict=True):
            passed[i] = physical_check(recover_from_ric(f, data.joints_num), *checked[i])
    return np.array([passed[i] for i in clips])
