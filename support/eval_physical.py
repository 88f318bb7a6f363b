"""Physical checks of generated motion on the embedded dataset, with no evaluator (what §5.4 of the paper says
is missing): does the motion do what its clip's plan says, from the joints alone (docs/evaluation.md)."""

import numpy as np

# Physical checks: no evaluator, just the joints [T, 22, 3] (metres, +Y up, SMPL order, facing +Z at the
# start as recover_from_ric gives them) against the clip's plan, which synth stores in texts.jsonl as
# "plan": {"subset", "segments": [{"kind", "gesture", "p", "gp", "n"}]} (synth.plan_clip makes it);
# a one-segment, non-static plan doing one checked action (a gesture alone rides on "stand") is checked.
CHECKED = ("walk", "sidestep", "turn", "jump", "squat", "kick", "raise", "hop", "lunge")
FOOT = {"left": [7, 10], "right": [8, 11]}  # ankle, toe
OTHER = {"left": "right", "right": "left"}
FLIGHT = 0.03  # m: both feet this far above the clip's lowest foot = off the ground


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


def physical_check(joints, kind, p):
    """Does the motion do what the plan says? The thresholds sit between the ground-truth clips of the kind
    and those of the same kind with other parameters (tests/test_eval.py checks both)."""
    j = np.asarray(joints, np.float64)
    across = j[:, 2] - j[:, 1]  # left hip -> right hip: the body's right
    heading = np.unwrap(np.arctan2(across[:, 2], -across[:, 0]))  # 0 = facing +Z, + = turned left (to +X)
    forward = np.array([np.sin(heading[0]), 0, np.cos(heading[0])])
    left = np.array([np.cos(heading[0]), 0, -np.sin(heading[0])])
    travel = j[-1, 0] - j[0, 0]
    foot = {s: j[:, FOOT[s], 1].min(1) for s in FOOT}  # lowest joint of each foot over the floor
    floor = min(f.min() for f in foot.values())
    foot = {s: f - floor for s, f in foot.items()}
    flights = _runs(np.minimum(foot["left"], foot["right"]) > FLIGHT)
    pelvis, s = j[:, 0, 1], p.get("side")
    if kind == "walk":  # root displacement along the facing, in the stated direction
        along = (1 if p["dir"] == "forward" else -1) * travel @ forward
        return along > 0.5 and along > abs(travel @ left)
    if kind == "sidestep":
        sideways = (1 if s == "left" else -1) * travel @ left
        return sideways > 0.3 and sideways > abs(travel @ forward)
    if kind == "turn":  # the facing change is nearer the stated angle than any other of 45, 90, 135, 180
        return abs(np.degrees(heading[-1] - heading[0]) - (1 if s == "left" else -1) * p["angle"]) < 22.5
    if kind == "jump":  # n flight phases, both feet together
        return flights == p["count"] and abs(np.median(foot["left"] - foot["right"])) < 0.05
    if kind == "hop":  # n flight phases on one foot: the other foot held up
        return flights == p["count"] and np.median(foot[OTHER[s]] - foot[s]) > 0.1
    if kind == "squat":  # n dips of the pelvis by 30 cm, feet on the ground
        return flights == 0 and _runs(pelvis < pelvis.max() - 0.3) == p["count"]
    if kind == "kick":  # the kicking ankle rises 30 cm above the other's highest point
        return j[:, FOOT[s][0], 1].max() > j[:, FOOT[OTHER[s]][0], 1].max() + 0.3
    if kind == "raise":  # the wrist above the head (15); the other wrist not, unless both
        above = {w: (j[:, wrist, 1] - j[:, 15, 1]).max() > 0.05 for w, wrist in (("left", 20), ("right", 21))}
        return above["left"] and above["right"] if s == "both" else above[s] and not above[OTHER[s]]
    if kind == "lunge":  # at the lowest pelvis (10 cm down), the named foot half a metre ahead of the other;
        low = int(np.argmin(pelvis))  # in place, feet on the ground (a running stride has the rest)
        ahead = (j[low, FOOT[s][1]] - j[low, FOOT[OTHER[s]][1]]) @ forward
        in_place = flights == 0 and np.hypot(travel[0], travel[2]) < 0.3
        return pelvis.max() - pelvis[low] > 0.1 and ahead > 0.5 and in_place
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


def clip_plans(data, clips):
    """Each clip's plan from texts.jsonl (synth writes it; None for clips without one, e.g. real data)."""
    records = [data.texts[i] for i in clips]
    if (data.meta.get("source") or {}).get("synth") and records and "plan" not in records[0]:
        raise ValueError(f"{data.root}: a synth dataset written before texts.jsonl stored each clip's plan, "
                         "which the physical checks read; rebuild it with `python data.py`")
    return [r.get("plan") for r in records]
