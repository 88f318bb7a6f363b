"""The embedded synthetic dataset `synth`: seeded, procedural text-motion pairs on the HumanML3D 22-joint
skeleton, built like MotionBase's data (paper §3 ⑤, appendix A.1/A.2): hierarchical text (2-3 whole-body
captions + one upper-body and one lower-body description), still poses held for 40-88 frames (the paper's
image clips), named subsets, and an `ood` split that holds whole kinds of motion out (Table 5).

A clip is a plan of 1-3 segments (a whole-body action, optionally with an upper-body gesture on top), each a
set of joint-angle channels over time, cross-faded across segment boundaries, turned into joints (_joints: the
root placed from the feet) and features as for real data; support/synth_captions.py makes the text.

    python data.py                        # the dataset, through generate(size, seed, workers)
    python synth.py --size=8 --seed=0     # print a few plans and captions
"""

from functools import partial

import numpy as np
import torch

from common import cli, parallel_map, parse_args, progress_bar
from motion import FPS, MAX_FRAMES, MIN_FRAMES, STILL_FRAMES, features_from_joints, forward_kinematics, qmul
from support.synth_captions import describe, pick

CONFIG = dict(size=8, seed=0)  # `python synth.py`: how many clips to print, the generator seed
BLEND = 6  # frames on each side of a segment boundary over which channels are cross-faded
SUBSETS = {"locomotion": 0.28, "sports": 0.2, "daily": 0.2, "gestures": 0.2, "static": 0.12}  # name: share
OOD_KINDS = ("hop", "lunge")  # never in train/val/test: only in ood.txt (the paper's UNSEEN subsets)
SPLIT_SHARES = (("train", 0.85), ("val", 0.05), ("test", 0.10))
FOOT_TILT = 0.4  # rad: the toe joint sits below the ankle (HumanML3D example 000021: ~23 deg)
COLLAR = 2.25  # rad about z: turns the collar->shoulder bone from the rest pose's "down" to up-and-out

# Kinds of motion. Whole-body kinds drive every channel; gestures drive the arms (and the spine for
# stretch/reach/punch) on top of a whole-body kind ("stand" when alone). Each subset draws from a pool.
GESTURES = ("wave", "raise", "clap", "punch", "arms_out", "reach", "hips", "stretch")
POOLS = {"locomotion": ("walk", "walk", "sidestep", "circle", "run", "turn", "turn"),
         "sports": ("jump", "jump", "kick", "kick", "punch", "run", "hop", "lunge"),
         "daily": ("sit_down", "squat", "stretch", "reach", "walk", "stand", "hips"),
         "gestures": GESTURES + ("wave", "raise")}
COMBINABLE = ("stand", "walk", "sidestep", "circle", "turn")  # whole-body kinds that can carry a gesture
GAITS = ("walk", "sidestep", "circle", "run")  # kinds that fill their segment (no holds before and after)
REPEATED = ("jump", "squat", "hop", "clap", "punch")  # counted kinds: a rest after each repetition
HOLD, REST = 48, 10  # at most this many still frames before and after an action, and after each repetition
ON_THE_MOVE = ("wave", "raise", "clap", "arms_out", "hips")  # gestures that can ride on them
SIDES, DIRS, SPEEDS = ("left", "right"), ("forward", "backward"), ("slow", "normal", "fast")
LIMBS = {"left": ("l", "r"), "right": ("r", "l"), "both": ("lr", "")}  # side -> (its limb(s), the other)
PARAMS = {  # kind -> {parameter: choices}; every parameter is said in the text
    "walk": {"dir": DIRS, "speed": SPEEDS}, "sidestep": {"side": SIDES}, "circle": {"side": SIDES},
    "run": {"speed": SPEEDS}, "turn": {"side": SIDES, "angle": (45, 90, 135, 180)},
    "jump": {"count": (1, 2, 3, 4)}, "squat": {"count": (1, 2, 3)}, "kick": {"side": SIDES},
    "lunge": {"side": SIDES}, "hop": {"side": SIDES, "count": (2, 3, 4)}, "stand": {}, "sit_down": {},
    "stand_up": {}, "wave": {"side": SIDES + ("both",)}, "raise": {"side": SIDES + ("both",)},
    "clap": {"count": (2, 3, 4, 5)}, "punch": {"side": SIDES + ("both",), "count": (2, 3, 4)},
    "arms_out": {}, "reach": {"side": SIDES}, "hips": {}, "stretch": {"side": SIDES}}
# pose -> (whole-body kind, gesture, fraction of the action at which it is frozen). No train/val/test pose is
# a held-out kind's stance (tests/test_synth.py checks); the lunge pose is a lunge: its clips go to `ood`.
STATIC_POSES = {
    "stand": ("stand", None, 0.5), "raise": ("stand", "raise", 0.5), "arms_out": ("stand", "arms_out", 0.5),
    "hips": ("stand", "hips", 0.5), "reach": ("stand", "reach", 0.5), "squat": ("squat", None, 0.5),
    "sit": ("sit_down", None, 1.0), "kick": ("kick", None, 0.48), "lunge": ("lunge", None, 0.5)}

# Motion channels (radians; lift in metres). The right limbs' conventions mirror the left ones': hip_flex > 0
# thigh forward, hip_abd > 0 leg out, knee > 0 bends, ankle > 0 toes down (0 = foot parallel to its rest
# tilt), sh_flex > 0 arm forward/up, sh_abd > 0 arm out to the side, sh_horiz > 0 arm swings outward, sh_twist
# > 0 turns the elbow's bend direction from forward to up, elbow > 0 bends; bend/side/twist: torso forward /
# to the left / turned left; lift: extra root height in flight; yaw_rate: turning left per frame.
CHANNELS = ["yaw_rate", "lift", "stance_l", "bend", "side", "twist", "nod"] + [
    f"{name}_{s}" for s in "lr" for name in
    ("hip_flex", "hip_abd", "knee", "ankle", "sh_flex", "sh_abd", "sh_horiz", "sh_twist", "elbow")]
CH = {name: i for i, name in enumerate(CHANNELS)}
EVENTS = [CH["yaw_rate"], CH["lift"]]  # integrated/flight channels: never cross-faded (zero at segment edges)
NEUTRAL = dict.fromkeys(CHANNELS, 0.0) | {"nod": 0.2, "stance_l": 0.5} | {
    f"{k}_{s}": v for s in "lr" for k, v in (("hip_abd", 0.04), ("knee", 0.05), ("hip_flex", 0.03),
                                              ("sh_abd", 0.12), ("sh_flex", 0.05), ("elbow", 0.2))}


def _ease(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _bump(x, center, width):  # raised cosine: 1 at center, 0 beyond +-width
    return 0.5 * (1 + np.cos(np.pi * np.clip((x - center) / width, -1, 1)))


def _hold(t, n, rise, lead=3):  # 0 -> 1 over `rise` frames after `lead`, 1, back to 0 `lead` before the end
    return _ease((t - lead) / rise) * _ease((n - 1 - lead - t) / rise)


def _repeat(t, start, period, count, shape, rest=0):
    """shape(phase in [0, 1)) for `count` cycles of `period` + `rest` (still) frames from `start`, else 0."""
    x, phase = (t - start) / (period + rest), np.mod(t - start, period + rest) / period
    return np.where((x >= 0) & (x < count), shape(np.minimum(phase, 1.0) % 1.0), 0.0)


def _add(c, sides, **channels):  # sides: "l", "r" or "lr"
    for name, value in channels.items():
        for s in sides:
            c[:, CH[f"{name}_{s}"]] += value


def _arm_pose(c, sides, w, **pose):  # blend the arms toward a pose (unnamed channels: 0) by w in [0, 1]
    for name in ("sh_flex", "sh_abd", "sh_horiz", "sh_twist", "elbow"):
        for s in sides:
            c[:, CH[f"{name}_{s}"]] += (pose.get(name, 0.0) - c[:, CH[f"{name}_{s}"]]) * w


def _gait(c, t, freq, hip, knee, arm, d=1.0, duty=0.6, stance_knee=0.0, march=0.0):  # -> the left leg's phase
    """Steps in antiphase. Each leg's phase psi in [0, 1): stance while psi < duty, the hip extending linearly
    from +hip to -hip (the planted foot moves back at a near-constant speed relative to the root), then swing:
    the hip returns along a cubic (Hermite) whose end slopes match the stance ramp, so the foot leaves and
    lands at zero speed over the floor, the knee lifting it. duty > 0.5 leaves a double support where both
    feet move alike. d = -1 walks backward; march lifts the thigh in swing (with hip = 0: in place)."""
    psi_l, m, stance = (freq * t / FPS) % 1.0, -2 * (1 - duty) / duty, {}  # m: d(hip)/ds of the stance ramp
    for side, psi in (("l", psi_l), ("r", (psi_l + 0.5) % 1.0)):
        s = np.clip((psi - duty) / (1 - duty), 0, 1)
        hermite = (-(2 * s**3 - 3 * s**2 + 1) + (-2 * s**3 + 3 * s**2)  # from -1 to +1, end slopes m
                   + m * (s**3 - 2 * s**2 + s) + m * (s**3 - s**2))
        hip_angle = np.where(psi < duty, 1 - 2 * psi / duty, hermite)  # +-1 at the stance ends
        _add(c, side, hip_flex=d * hip * hip_angle + march * np.sin(np.pi * s), sh_flex=-d * arm * hip_angle,
             knee=knee * np.sin(np.pi * s**0.8) ** 2  # swing: peaks early, lands softly
             + stance_knee * np.sin(np.pi * np.clip(psi / duty, 0, 1)))  # stance: absorbs
        stance[side] = (psi < duty).astype(float)
    c[:, CH["twist"]] += 0.3 * arm * c[:, CH["sh_flex_r"]]
    c[:, CH["stance_l"]] = stance["l"] / (stance["l"] + stance["r"])
    return psi_l


# Actions: each adds its channel program to c [n, C] (prefilled with the neutral pose); t = frame index, p its
# parameters, amp / tempo the clip's small random variation; n comes from `_frames`. A walk's or run's tempo
# and step vary a third as much (+-3-8%), so that slow, normal and fast keep apart (as the walk check needs).
def _walk(c, t, n, p, amp, tempo):
    f, a = {"slow": (0.75, 0.3), "normal": (0.95, 0.38), "fast": (1.15, 0.45)}[p["speed"]]
    amp, tempo = 1 + 0.3 * (amp - 1), 1 + 0.3 * (tempo - 1)
    _gait(c, t, f * tempo, a * amp, (0.5 + a) * amp, 0.6 * a, d=1.0 if p["dir"] == "forward" else -1.0)


def _run(c, t, n, p, amp, tempo):  # the root lifts (flight) at each exchange of feet
    f, a = {"slow": (1.15, 0.42), "normal": (1.35, 0.55), "fast": (1.55, 0.68)}[p["speed"]]
    amp, tempo = 1 + 0.3 * (amp - 1), 1 + 0.3 * (tempo - 1)
    psi = _gait(c, t, f * tempo, a * amp, 1.7, 0.8 * a, duty=0.5, stance_knee=0.15)
    _add(c, "lr", elbow=1.3)
    c[:, CH["bend"]] += 0.18
    c[:, CH["lift"]] = 0.05 * np.maximum(np.cos(4 * np.pi * psi), 0) ** 2 * _hold(t, n, BLEND, BLEND)


def _sidestep(c, t, n, p, amp, tempo):
    """Hips spread (the leading leg out), hold in double support, close (the trailing leg in): to `side`."""
    (lead, trail), psi = LIMBS[p["side"]], (0.8 * tempo * t / FPS) % 1.0
    spread = 0.25 * amp * np.where(psi < 0.5, _ease(psi / 0.4), 1 - _ease((psi - 0.5) / 0.4))
    for s, start in ((lead, 0.0), (trail, 0.5)):
        lift = np.sin(np.pi * np.clip((psi - start) / 0.4, 0, 1)) ** 2
        _add(c, s, hip_abd=spread, sh_abd=0.5 * spread, knee=0.6 * lift)
    lead_weight = np.select([psi < 0.4, (psi >= 0.5) & (psi < 0.9)], [0.0, 1.0], 0.5)
    c[:, CH["stance_l"]] = lead_weight if lead == "l" else 1 - lead_weight


def _turn(c, t, n, p, amp, tempo, circle=False):
    """Yaw rate: a bell (0 across the cross-fades) that integrates exactly to the angle (left positive). A
    circle walks a full turn; a plain turn steps in place (marching), as strongly as the body turns."""
    w, angle = _hold(t, n, BLEND, BLEND), (2 * np.pi if circle else np.radians(p["angle"]))
    c[:, CH["yaw_rate"]] = (1 if p["side"] == "left" else -1) * angle * w / w.sum()
    if circle:
        return _gait(c, t, 0.9 * tempo, 0.34 * amp, 0.8 * amp, 0.2)
    steps = c.copy()
    _gait(steps, t, 1.3 * tempo, 0.0, 0.6, 0.05, march=0.35)
    c[:] = c + (steps - c) * np.sqrt(w)[:, None]


def _jump(c, t, n, p, amp, tempo, legs="lr", period=20, height=0.22):
    """Each jump: crouch (arms back), push off, flight (root up a half sine, arms up), land in a crouch."""
    ph = _repeat(t, 8, period / tempo, p["count"], lambda x: x, p["rest"])
    crouch = 0.55 * amp * (_bump(ph, 0.22, 0.2) + 0.7 * _bump(ph, 0.82, 0.16))
    flight = np.sin(np.pi * np.clip((ph - 0.42) / 0.3, 0, 1))
    _add(c, legs, hip_flex=1.4 * crouch + 0.2 * flight, knee=2.4 * crouch + 0.3 * flight, ankle=0.5 * flight)
    if legs == "lr":
        _add(c, "lr", sh_flex=-0.5 * _bump(ph, 0.22, 0.2) + 2.0 * _bump(ph, 0.55, 0.22))
    c[:, CH["bend"]] += 0.8 * crouch
    c[:, CH["lift"]] = height * amp * flight


def _hop(c, t, n, p, amp, tempo):  # hop `count` times on the `side` leg, the other knee bent up behind
    e = _hold(t, n, 8)
    _add(c, LIMBS[p["side"]][1], knee=1.3 * e, hip_flex=0.35 * e)
    _add(c, "lr", sh_abd=0.4 * e)
    c[:, CH["stance_l"]] += (0.5 if p["side"] == "left" else -0.5) * np.clip(2 * e, 0, 1)
    _jump(c, t, n, p, 0.5 * amp, tempo, legs=LIMBS[p["side"]][0], period=14, height=0.2)


def _squat(c, t, n, p, amp, tempo):
    s = _repeat(t, 6, 36 / tempo, p["count"], lambda x: _bump(x, 0.5, 0.45), p["rest"])
    _add(c, "lr", hip_flex=1.7 * amp * s, knee=2.1 * amp * s, sh_flex=1.4 * s)
    c[:, CH["bend"]] += 0.5 * s


def _kick(c, t, n, p, amp, tempo):
    (k, o), x, swing = LIMBS[p["side"]], t / n, _bump(t / n, 0.5, 0.3)
    _add(c, k, hip_flex=1.3 * amp * swing, ankle=0.6 * swing,
         knee=1.5 * _bump(x, 0.36, 0.14) + 0.9 * _bump(x, 0.66, 0.14))  # chamber, extend, recoil
    _add(c, o, knee=0.15 * swing, sh_flex=0.5 * swing)
    _add(c, "lr", sh_abd=0.4 * swing)
    c[:, CH["bend"]] -= 0.15 * swing
    c[:, CH["stance_l"]] += (0.5 if o == "l" else -0.5) * np.clip(4 * _bump(x, 0.5, 0.4), 0, 1)


def _lunge(c, t, n, p, amp, tempo):
    """Step forward with `side` (its knee lifts the foot out and back), sink until the back knee points
    down, step back; the back foot carries the steps."""
    (k, b), x = LIMBS[p["side"]], t / n
    e = _ease((x - 0.1) / 0.25) * _ease((0.9 - x) / 0.25)
    _add(c, k, hip_flex=1.0 * amp * e, knee=1.1 * amp * e + 0.6 * (_bump(x, 0.2, 0.1) + _bump(x, 0.8, 0.1)))
    _add(c, b, hip_flex=-0.45 * amp * e, knee=0.45 * amp * e, ankle=0.3 * e)
    c[:, CH["bend"]] += 0.1 * e
    stepping = np.clip(4 * (_bump(x, 0.2, 0.12) + _bump(x, 0.8, 0.12)), 0, 1)
    c[:, CH["stance_l"]] += (0.5 if b == "l" else -0.5) * stepping


def _sit(c, t, n, p, amp, tempo, down=True):  # to a chair: thighs level, shins upright, leaning on the way
    x = _ease((t - 6) / (n - 16))
    e, move = (x if down else 1 - x), _bump(x, 0.5, 0.5)
    _add(c, "lr", hip_flex=1.45 * e, knee=1.5 * e, sh_flex=0.8 * move)
    c[:, CH["bend"]] += 0.5 * move + 0.1 * e


def _wave(c, t, n, p, amp, tempo):  # arm out to the side, forearm up (twist), the elbow swinging the hand
    _arm_pose(c, LIMBS[p["side"]][0], _hold(t, n, 8), sh_abd=1.25, sh_flex=0.3, sh_twist=1.5,
              elbow=1.3 + 0.45 * amp * np.sin(2 * np.pi * 1.6 * tempo * t / FPS))


def _clap(c, t, n, p, amp, tempo):  # arms forward at chest height; the hands meet `count` times
    close = _repeat(t, 8, 12 / tempo, p["count"], lambda x: _bump(x, 0.5, 0.5), p["rest"])
    _arm_pose(c, "lr", _hold(t, n, 6), sh_flex=1.1, elbow=0.9, sh_horiz=-0.15 - 0.35 * close)


def _punch(c, t, n, p, amp, tempo):  # guard up, then `count` punches per hand (alternating when both)
    _arm_pose(c, "lr", _hold(t, n, 6), sh_flex=1.0, sh_abd=0.2, elbow=2.0, sh_horiz=-0.35)
    for i, s in enumerate(LIMBS[p["side"]][0]):
        hit = _repeat(t, 8 + 6 * i / tempo, 12 / tempo, p["count"], lambda x: _bump(x, 0.5, 0.3), p["rest"])
        _add(c, s, sh_flex=0.45 * hit, elbow=-1.9 * amp * hit, sh_horiz=0.2 * hit)
        c[:, CH["twist"]] += (-0.25 if s == "l" else 0.25) * hit


def _reach(c, t, n, p, amp, tempo):
    e = _hold(t, n, 12)
    _arm_pose(c, LIMBS[p["side"]][0], e, sh_flex=1.5, sh_abd=0.05, elbow=0.05, sh_horiz=-0.15)
    c[:, CH["bend"]] += 0.4 * amp * e
    c[:, CH["twist"]] += (-0.25 if p["side"] == "left" else 0.25) * e


def _stretch(c, t, n, p, amp, tempo):
    _arm_pose(c, "lr", _hold(t, n, 12), sh_flex=2.9, sh_abd=0.2, elbow=0.1)
    lean = np.sin(2 * np.pi * np.clip((t - 14) / (n - 28), 0, 1))  # first toward `side`, then the other
    c[:, CH["side"]] += (1 if p["side"] == "left" else -1) * 0.35 * amp * lean


def _held(c, t, n, p, amp, tempo, kind):  # into a pose, hold, back: raise (one or both arms), arms out, hips
    pose = {"raise": dict(sh_flex=2.85, sh_abd=0.15, elbow=0.1), "arms_out": dict(sh_abd=1.5, elbow=0.05),
            "hips": dict(sh_abd=0.75, sh_flex=-0.1, sh_twist=-1.4, elbow=1.7)}[kind]
    _arm_pose(c, LIMBS[p["side"]][0] if kind == "raise" else "lr", _hold(t, n, 11), **pose)


ACTIONS = {"stand": lambda *a: None, "walk": _walk, "sidestep": _sidestep, "run": _run, "turn": _turn,
           "circle": partial(_turn, circle=True), "jump": _jump, "squat": _squat, "kick": _kick, "hop": _hop,
           "lunge": _lunge, "sit_down": _sit, "stand_up": partial(_sit, down=False), "wave": _wave,
           "clap": _clap, "punch": _punch, "reach": _reach, "stretch": _stretch,
           **{kind: partial(_held, kind=kind) for kind in ("raise", "arms_out", "hips")}}


def _frames(kind, p, tempo, rng, rest=0):  # an action's frames at this tempo (counted: with count and rests)
    count = p.get("count", 1)
    fixed = {"jump": 20 + 20 * count, "squat": 12 + 36 * count, "hop": 22 + 14 * count, "kick": 44,
             "lunge": 56, "sit_down": 48, "stand_up": 48, "turn": 30 + p.get("angle", 0) // 6,
             "clap": 16 + 12 * count, "punch": 18 + 12 * count, "raise": 56, "arms_out": 56, "reach": 56,
             "hips": 56, "stretch": 80}
    if kind in fixed:
        return int(fixed[kind] / tempo + (rest * count if kind in REPEATED else 0))
    ranges = {"circle": (110, 150), "walk": (50, 100), "stand": (30, 70), "wave": (30, 70)}
    return int(rng.integers(*ranges.get(kind, (40, 80))))


# Channels -> joints. Local rotations: quaternions (w, x, y, z) composed about the body axes (x left, y up, z
# forward); right limbs mirror the left ones: a rotation mirrored through x = 0 is (w, x, -y, -z).
def _q(axis, angle):
    q = np.zeros(np.shape(angle) + (4,))
    q[..., 0], q[..., 1 + axis] = np.cos(angle / 2), np.sin(angle / 2)
    return q


def _joints(c):
    """Channels [T, C] -> world joints [T, 22, 3]. The root's height puts the lowest foot joint on the floor
    (+ lift in flight); its path x_root(t+1) - x_root(t) = -(toe_rel(t+1) - toe_rel(t)) of the supporting foot
    (weighted between the feet by stance_l: 1 = left, 0.5 = both), so a planted foot stays put."""
    g = lambda name: c[:, CH[name]]
    q = np.tile([1.0, 0.0, 0.0, 0.0], (len(c), 22, 1))  # identity rotations
    q[:, 0], q[:, 12] = _q(1, np.cumsum(g("yaw_rate"))), _q(0, g("nod"))  # pelvis: heading only; head: nod
    q[:, [3, 6, 9]] = qmul(_q(1, g("twist") / 3), _q(0, g("bend") / 3), _q(2, -g("side") / 3))[:, None]
    collar = _q(2, np.full(len(c), COLLAR))
    for s, (hip, knee, ankle, clav, shoulder, elbow) in (("l", (1, 4, 7, 13, 16, 18)),
                                                         ("r", (2, 5, 8, 14, 17, 19))):
        m = np.array([1, 1, -1, -1]) if s == "r" else 1  # mirror through x = 0 for the right side
        flex, knee_bend = g(f"hip_flex_{s}"), g(f"knee_{s}")
        q[:, hip] = qmul(_q(2, g(f"hip_abd_{s}")), _q(0, -flex)) * m
        q[:, ankle] = _q(0, FOOT_TILT + flex - knee_bend + g(f"ankle_{s}"))  # foot stays level by default
        q[:, clav] = collar * m
        # upper arm in the chest frame = swing out (y) * out to the side (z) * forward (x) * twist (y);
        # the shoulder's local rotation undoes the collar's.
        arm = qmul(_q(1, g(f"sh_horiz_{s}")), _q(2, g(f"sh_abd_{s}")), _q(0, -g(f"sh_flex_{s}")),
                    _q(1, g(f"sh_twist_{s}")))
        q[:, shoulder] = qmul(collar * np.array([1, -1, -1, -1]), arm) * m
        q[:, knee], q[:, elbow] = _q(0, knee_bend), _q(0, -g(f"elbow_{s}"))
    q = np.where(q[..., :1] < 0, -q, q)  # quaternion -> axis * angle, angle = 2 atan2(|v|, w) in [0, pi]
    norm = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    rot = q[..., 1:] * np.where(norm > 1e-9, 2 * np.arctan2(norm, q[..., :1]) / np.maximum(norm, 1e-9), 2.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a [T, 22] batch: more threads only add start-up and contention (10x slower)
    try:
        rel = forward_kinematics(rot.astype(np.float32), np.zeros((len(c), 3), np.float32)).astype(np.float64)
    finally:
        torch.set_num_threads(threads)
    feet = rel[:, [7, 10, 8, 11], 1].reshape(len(rel), 2, 2).min(-1)  # lowest joint of the left, right foot
    left_down, toes = g("stance_l")[:-1, None], np.diff(rel[:, [10, 11]][..., [0, 2]], axis=0)
    step = -(left_down * toes[:, 0] + (1 - left_down) * toes[:, 1])
    xz = np.concatenate([np.zeros((1, 2)), np.cumsum(step, 0)])
    return (rel + np.stack([xz[:, 0], g("lift") - feet.min(1), xz[:, 1]], -1)[:, None]).astype(np.float32)


# Plans (every random choice that the text depends on: synth_captions.describe says them), clips, splits.
def clip_id(index):
    return f"{index:06d}"


def plan_clip(index, seed):  # the clip's subset, segments (kind, gesture, parameters, frames), split; cheap
    rng = np.random.default_rng([seed, index])
    u, tempo, amp = rng.random(), rng.uniform(0.75, 1.33), rng.uniform(0.85, 1.15)
    subset = pick(rng, [name for name, share in SUBSETS.items() for _ in range(round(share * 100))])
    segments, total = [], 0
    if subset == "static":  # one action's pose at `freeze` of the way through it
        pose = pick(rng, list(STATIC_POSES))
        kind, gesture, freeze = STATIC_POSES[pose]
        side = pick(rng, SIDES + ("both",) if pose == "raise" else SIDES)
        p = {"side": side, "count": int(kind == "squat"), "pose": pose}
        n = _frames(gesture or kind, p, tempo, rng)
        segments.append({"kind": kind, "gesture": gesture, "p": p, "gp": p, "n": n,
                         "freeze": int(freeze * (n - 1))})
        total = int(rng.integers(MIN_FRAMES, 2 * STILL_FRAMES - MIN_FRAMES + 1))  # as long as a photo shows
        kinds = {"static", pose}  # a still pose is its own kind
    lead, tail = (int(h) for h in rng.integers(HOLD + 1, size=2))  # the text does not fix the length
    for _ in range(0 if subset == "static" else pick(rng, (1, 1, 2, 2, 3))):
        kind = pick(rng, POOLS[subset])
        while segments and kind == (segments[-1]["gesture"] or segments[-1]["kind"]):  # no repeats
            kind = pick(rng, POOLS[subset])
        kind = "stand_up" if segments and segments[-1]["kind"] == "sit_down" else kind
        gesture = pick(rng, ON_THE_MOVE) if kind in COMBINABLE and rng.random() < 0.3 else None
        if kind in GESTURES:  # a gesture alone is done standing
            kind, gesture = "stand", kind
        p, gp = ({name: pick(rng, choices) for name, choices in PARAMS.get(k, {}).items()}
                 for k in (kind, gesture))
        rest, pause = int(rng.integers(REST + 1)), int(rng.integers(HOLD + 1))
        n = max(_frames(kind, p, tempo, rng, rest) if kind != "stand" or not gesture else 0,  # alone: its own
                _frames(gesture, gp, tempo, rng, rest) if gesture else 0)
        pause *= bool(segments) and segments[-1]["kind"] not in GAITS  # a pause after the previous action
        if segments and total + pause + n > MAX_FRAMES - HOLD:  # room left for the holds: a clip pressed
            break  # against MAX_FRAMES would have its length fixed by the cap, whatever the tempo
        if pause:
            segments[-1]["hold"][1] += pause
            segments[-1]["n"] += pause
        segments.append({"kind": kind, "gesture": gesture, "p": p, "gp": gp, "n": min(n, MAX_FRAMES),
                         "rest": rest, "hold": [0, 0]})
        total += pause + segments[-1]["n"]
    if subset != "static":  # the holds: none beside a gait (it fills its segment), less near MAX_FRAMES
        hold = np.array([lead, tail]) * [segments[0]["kind"] not in GAITS, segments[-1]["kind"] not in GAITS]
        hold = (hold * min(1.0, (MAX_FRAMES - total) / (2 * HOLD))).astype(int)
        hold[1] += max(MIN_FRAMES - total - hold.sum(), 0)  # a short clip is held at its end up to MIN_FRAMES
        for seg, end, frames in ((segments[0], 0, hold[0]), (segments[-1], 1, hold[1])):
            seg["hold"][end] += int(frames)
            seg["n"] += int(frames)
        total += int(hold.sum())
        kinds = {k for s in segments for k in (s["kind"], s["gesture"]) if k}
    edges = np.cumsum([share for _, share in SPLIT_SHARES])
    split = "ood" if kinds & set(OOD_KINDS) else SPLIT_SHARES[min(np.searchsorted(edges, u, "right"), 2)][0]
    return {"index": index, "subset": subset, "segments": segments, "frames": total, "tempo": tempo,
            "amp": amp, "kinds": sorted(kinds), "split": split}


def generate_clip(index, seed, with_joints=True):
    """Clip `index` of the dataset with this seed, deterministic in (index, seed): the write_dataset
    record (id, feats [T, 263] float32, captions, parts, subset) + kinds, split, joints [T + 1, 22, 3]."""
    plan, rng, segments = plan_clip(index, seed), np.random.default_rng([seed, index, 1]), []
    for seg in plan["segments"]:  # each segment's channels
        (lead, tail), rest = seg.get("hold", (0, 0)), seg.get("rest", 0)
        n = seg["n"] - lead - tail
        c, t = np.tile([NEUTRAL[k] for k in CHANNELS], (n, 1)), np.arange(n)
        for kind, p in ((seg["kind"], seg["p"]), (seg["gesture"], seg["gp"])):
            if kind:
                ACTIONS[kind](c, t, n, p | {"rest": rest}, plan["amp"], plan["tempo"])
        c = np.concatenate([np.repeat(c[:1], lead, 0), c, np.repeat(c[-1:], tail, 0)])  # held still
        c[:lead, EVENTS], c[len(c) - tail:, EVENTS] = 0, 0
        segments.append(c)
    # smooth per-clip sway (two sines per channel, random frequency and phase): no two clips are the same
    swayed = [CH[k] for k in ("bend", "side", "twist", "nod", "sh_flex_l", "sh_flex_r", "sh_abd_l",
                              "sh_abd_r", "elbow_l", "elbow_r")]
    amp, freq, phase = (rng.uniform(low, high, (2, len(swayed))) for low, high in
                        ((0.005, 0.03), (0.1, 0.5), (0, 2 * np.pi)))
    if plan["subset"] == "static":  # one frozen frame, with a random constant offset instead of sway
        c = np.repeat(segments[0][plan["segments"][0]["freeze"]][None], plan["frames"] + 1, 0)
        c[:, EVENTS] = 0
        c[:, swayed] += (amp * np.sin(phase)).sum(0)
    else:
        c = segments[0]  # joined: across each boundary b, c = (1 - s) A + s B with s a smoothstep over
        for seg in segments[1:]:  # [b - BLEND, b + BLEND], A and B held at their last/first value (no pops)
            t = np.arange(len(c) + len(seg))
            s = np.repeat(_ease((t - len(c) + BLEND) / (2 * BLEND))[:, None], len(CHANNELS), 1)
            s[:, EVENTS] = t[:, None] >= len(c)
            c = (np.concatenate([c, np.repeat(c[-1:], len(seg), 0)]) * (1 - s)
                 + np.concatenate([np.repeat(seg[:1], len(c), 0), seg]) * s)
        c = np.concatenate([c, c[-1:]])  # T feature frames need T + 1 joint frames
        t = np.arange(len(c))[:, None, None] / FPS
        c[:, swayed] += (amp * np.sin(2 * np.pi * freq * t + phase)).sum(1)
    joints = _joints(c)
    captions, parts = describe(plan, np.random.default_rng([seed, index, 2]))
    clip = {"id": clip_id(index), "feats": features_from_joints(joints), "captions": captions, "parts": parts,
            "subset": plan["subset"], "kinds": plan["kinds"], "split": plan["split"],
            "plan": {"subset": plan["subset"], "segments": plan["segments"]}}  # the physical checks read it
    return clip | {"joints": joints} if with_joints else clip


def make_splits(size, seed):  # {"train", "val", "test", "ood"} -> clip ids, by each clip's plan
    split = [plan_clip(index, seed)["split"] for index in range(size)]
    return {k: [clip_id(i) for i, s in enumerate(split) if s == k] for k in ("train", "val", "test", "ood")}


def generate(size, seed=0, workers=1, progress=True):
    """(iterator over the `size` clips in index order, without joints, with a tqdm bar; splits) for
    data.write_dataset; workers > 1 processes run until it is exhausted or closed (contextlib.closing)."""
    def clips():  # a generator of its own, so that closing it closes parallel_map's
        done = parallel_map(partial(generate_clip, seed=seed, with_joints=False), range(size), workers, 64)
        yield from progress_bar(done, total=size, desc="synth", unit="clip", disable=not progress)
    return clips(), make_splits(size, seed)


def main(argv):  # print the first clips' plans and captions
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "synth.py")}
    for index in range(cfg["size"]):
        clip = generate_clip(index, cfg["seed"])
        print(f"{clip['id']} [{clip['subset']}/{clip['split']}] {len(clip['feats'])} frames")
        print("\n".join(f"    {caption}" for caption in clip["captions"]))
        print("    upper:", clip["parts"]["upper"], "\n    lower:", clip["parts"]["lower"])


if __name__ == "__main__":
    cli(main, "synth.py")
