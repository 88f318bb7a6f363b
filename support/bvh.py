"""BVH export: joints [T, J, 3] -> a Biovision Hierarchy file, a skeleton with joint rotations per frame that
Blender (File > Import > Motion Capture (.bvh)), Maya and retargeting tools read (sample.py --bvh, data.py
--show=... --bvh); motion.skeleton_rotations does the work. The file's conventions: docs/sampling.md."""

from pathlib import Path

import numpy as np

from common import atomic_write
from motion import FPS, JOINT_NAMES, skeleton, skeleton_rotations

ROTATION_CHANNELS = "Zrotation Yrotation Xrotation"  # R = Rz Ry Rx: a vector is turned about X first


def to_bvh(joints, path, fps=FPS):
    """Write joints [T, J, 3] (J = 22 body or 52 body + hands; metres, +Y up) to `path` as BVH, atomically
    (its conventions: docs/sampling.md): each OFFSET the motion's own mean bone in its parent's frame, an End
    Site continuing each leaf's bone by half its length, one MOTION row per frame. Bad input raises
    ValueError / FileNotFoundError, writing nothing."""
    path, joints = Path(path), np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] not in ((22, 3), (52, 3)):
        raise ValueError(f"{path}: BVH export needs joints [frames, 22 or 52, 3], got shape {joints.shape}")
    if len(joints) < 2:
        raise ValueError(f"{path}: BVH export needs at least 2 frames, got {len(joints)}")
    if not np.isfinite(joints).all():
        t, j, _ = np.argwhere(~np.isfinite(joints))[0]
        raise ValueError(f"{path}: joint {JOINT_NAMES[j]} is not finite (NaN or inf) at frame {t}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such folder to write {path.name} in")
    with np.errstate(invalid="ignore", divide="ignore"):  # checked just below
        local, offsets = skeleton_rotations(joints)
        angles = np.degrees(_euler_zyx(local))  # [T, J, 3] as (z, y, x)
    if not np.isfinite(angles).all():  # a bone of zero length has no direction
        t, j, _ = np.argwhere(~np.isfinite(angles))[0]
        raise ValueError(f"{path}: no rotation fits joint {JOINT_NAMES[j]} at frame {t} (a bone of zero "
                         f"length, or its children in one line)")
    parents = skeleton(joints.shape[1])[0]
    children = [[c for c in range(len(parents)) if parents[c] == j] for j in range(len(parents))]
    offsets[0] = 0.0
    order, lines = [], ["HIERARCHY"]
    _write_joint(0, children, offsets, order, lines, "")
    rows = np.concatenate([joints[:, 0], angles[:, order].reshape(len(joints), -1)], 1)
    lines += ["MOTION", f"Frames: {len(joints)}", f"Frame Time: {1 / fps:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in rows]
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


def _write_joint(j, children, offsets, order, lines, pad):
    """Joint j's block and, inside it, its children's (depth first: the order of the MOTION columns)."""
    order.append(j)
    kind, channels = ("ROOT", f"6 Xposition Yposition Zposition {ROTATION_CHANNELS}") if j == 0 else \
        ("JOINT", f"3 {ROTATION_CHANNELS}")
    lines += [f"{pad}{kind} {JOINT_NAMES[j]}", f"{pad}{{", f"{pad}  OFFSET {_xyz(offsets[j])}",
              f"{pad}  CHANNELS {channels}"]
    for c in children[j]:
        _write_joint(c, children, offsets, order, lines, pad + "  ")
    if not children[j]:
        lines += [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {_xyz(offsets[j] / 2)}", f"{pad}  }}"]
    lines.append(f"{pad}}}")


def _xyz(v):
    return " ".join(f"{x:.6f}" for x in np.round(v, 6) + 0.0)  # + 0.0: no "-0.000000"


def _euler_zyx(R):
    """Rotation matrices [..., 3, 3] -> angles (z, y, x) in radians with R = Rz(z) Ry(y) Rx(x). At y = ±90°
    (gimbal lock) only z - x or z + x is defined: z is set to 0 there."""
    cos_y = np.hypot(R[..., 0, 0], R[..., 1, 0])
    y = np.arctan2(-R[..., 2, 0], cos_y)
    locked = cos_y < 1e-6
    z = np.where(locked, 0.0, np.arctan2(R[..., 1, 0], R[..., 0, 0]))
    x = np.where(locked, np.arctan2(-R[..., 1, 2], R[..., 1, 1]), np.arctan2(R[..., 2, 1], R[..., 2, 2]))
    return np.stack([z, y, x], -1)
