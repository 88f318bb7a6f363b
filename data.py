"""Motion data: skeleton + forward kinematics, HumanML3D features and their inverse, the on-disk
dataset (data/<name>/), real-data loaders (HumanML3D layout, SMPL-X parameter sequences) and batching.

    python data.py                                   # synthetic dataset (synth.py) -> data/synth
    python data.py --source humanml3d --src DIR      # HumanML3D layout -> data/humanml3d
    python data.py --source smplx --src DIR --smplx_model_dir DIR   # Motion-X / MotionBase style
    python data.py --data data/synth --show 0,5,9    # stick-figure GIFs -> out/gifs

Source layouts. HumanML3D: SRC/new_joint_vecs/<name>.npy [T, 263], SRC/texts/<name>.txt lines
"caption#tokens#start#end" (seconds; 0#0 = the whole clip, else the sub-clip <name>@<start>-<end>),
SRC/train.txt, val.txt, test.txt. SMPL-X (Motion-X / MotionBase style): SRC/motions/<name>.npz with
root_orient [T,3], pose_body [T,63], pose_hand [T,90] (left then right, axis-angle), trans [T,3], betas
[10] (optional fps, else --src_fps), <name> may contain folders (the first folder above the file is the
subset); SRC/texts/<name>.txt: whole-body captions one a line, "upper: ..." / "lower: ..." lines for the
parts; optional split files. Sequences longer than 196 frames (at 20 fps) are cut evenly into
<name>@0, @1, ...; a single frame (an image's pose) is held for 64 frames.

Features (DESIGN.md; HumanML3D, Guo et al. 2022, generalised to J joints, D = 12J - 1), per frame t:
  [0] root angular velocity about +Y, [1:3] root xz velocity in the root frame, [3] root height,
  ric (J-1)*3 root-relative joint positions in the root frame, rot (J-1)*6 joint rotations (6D),
  vel J*3 joint velocities in the root frame, 4 foot contacts (l_ankle, l_foot, r_ankle, r_foot).
"""

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from smplx.lbs import batch_rigid_transform, batch_rodrigues
from tqdm import tqdm

# ----------------------------------------------------------------------------------------------
# Skeleton. SMPL joint order; the body faces +Z, its left is +X, up is +Y.
# 0 pelvis 1 l_hip 2 r_hip 3 spine1 4 l_knee 5 r_knee 6 spine2 7 l_ankle 8 r_ankle 9 spine3 10 l_foot
# 11 r_foot 12 neck 13 l_collar 14 r_collar 15 head 16 l_shoulder 17 r_shoulder 18 l_elbow 19 r_elbow
# 20 l_wrist 21 r_wrist; SMPL-X/SMPL-H hands (52 joints): 22-36 left, 37-51 right, each
# index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3 (SMPL-X's 55 joints minus jaw and eyes).
H3D_KINEMATIC_CHAIN = [[0, 2, 5, 8, 11], [0, 1, 4, 7, 10], [0, 3, 6, 9, 12, 15], [9, 14, 17, 19, 21],
                       [9, 13, 16, 18, 20]]
HAND_KINEMATIC_CHAIN = [[20, 22, 23, 24], [20, 34, 35, 36], [20, 25, 26, 27], [20, 31, 32, 33],
                        [20, 28, 29, 30], [21, 43, 44, 45], [21, 46, 47, 48], [21, 40, 41, 42],
                        [21, 37, 38, 39], [21, 49, 50, 51]]
SMPLX52_KINEMATIC_CHAIN = H3D_KINEMATIC_CHAIN + HAND_KINEMATIC_CHAIN
# Unit rest-bone directions (HumanML3D paramUtil.t2m_raw_offsets); fingers continue the hanging arm.
H3D_RAW_OFFSETS = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0],
                            [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1],
                            [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, -1, 0], [0, -1, 0],
                            [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0]], dtype=np.float64)
SMPLX52_RAW_OFFSETS = np.concatenate([H3D_RAW_OFFSETS, np.tile([[0.0, -1.0, 0.0]], (30, 1))])
# Bone lengths |joint - parent| in metres, first frame of HumanML3D example 000021 (every clip is
# rescaled to these; ../shared/fixtures/humanml3d/skeleton_example_h3d.npy holds those joints).
SMPLX52_BONE_LENGTHS = np.array([
    0.0, 0.103074, 0.109883, 0.131568, 0.393623, 0.390188, 0.143190, 0.432433, 0.425643, 0.057365,
    0.143382, 0.149419, 0.219360, 0.137487, 0.143383, 0.103039, 0.131614, 0.122984, 0.256840,
    0.263092, 0.266012, 0.269876,  # body (22)
    0.108399, 0.033205, 0.023345, 0.113773, 0.032046, 0.024734, 0.099195, 0.020455, 0.019819,
    0.105121, 0.029673, 0.024619, 0.055922, 0.031891, 0.027358,  # left hand
    0.107870, 0.033876, 0.023438, 0.112998, 0.032097, 0.024503, 0.098655, 0.020353, 0.019662,
    0.104534, 0.029580, 0.024669, 0.055320, 0.032278, 0.027795])  # right hand
H3D_BONE_LENGTHS = SMPLX52_BONE_LENGTHS[:22]


def _parents(chains, joints_num):
    parents = [-1] * joints_num
    for chain in chains:
        for parent, child in zip(chain[:-1], chain[1:], strict=True):
            parents[child] = parent
    return parents


H3D_PARENTS = _parents(H3D_KINEMATIC_CHAIN, 22)
SMPLX52_PARENTS = _parents(SMPLX52_KINEMATIC_CHAIN, 52)
# Rest pose (zero rotations) for forward kinematics: standing, arms hanging, feet forward. Bone
# vectors = raw direction * length, except the head, which points up here (HumanML3D's raw offset
# +Z for the head only matters to its inverse kinematics, which uses H3D_RAW_OFFSETS).
_rest_dirs = SMPLX52_RAW_OFFSETS.copy()
_rest_dirs[15] = [0.0, 1.0, 0.0]
SMPLX52_OFFSETS = (_rest_dirs * SMPLX52_BONE_LENGTHS[:, None]).astype(np.float32)
H3D_OFFSETS = SMPLX52_OFFSETS[:22].copy()
SMPLX_TO_52 = list(range(22)) + list(range(25, 55))  # SMPL-X layer's 55 joints -> our 52 (drop jaw, eyes)
FOOT_L, FOOT_R = [7, 10], [8, 11]  # ankle, toe
FACE_JOINTS = [2, 1, 17, 16]  # r_hip, l_hip, r_shoulder, l_shoulder: across = right - left


def skeleton(joints_num):
    """(parents, kinematic chain, raw offsets, bone lengths) of the 22- or 52-joint skeleton."""
    if joints_num == 22:
        return H3D_PARENTS, H3D_KINEMATIC_CHAIN, H3D_RAW_OFFSETS, H3D_BONE_LENGTHS
    if joints_num == 52:
        return SMPLX52_PARENTS, SMPLX52_KINEMATIC_CHAIN, SMPLX52_RAW_OFFSETS, SMPLX52_BONE_LENGTHS
    raise ValueError(f"unsupported skeleton: {joints_num} joints (22 body or 52 body+hands)")


def forward_kinematics(rotations, root_positions, offsets=H3D_OFFSETS, parents=H3D_PARENTS):
    """Axis-angle local rotations [T, J, 3] (joint j relative to its parent's frame; zero = rest pose)
    and root positions [T, 3] -> world joint positions [T, J, 3]; numpy or torch, same type out.
    Global rotation G_j = G_parent(j) R_j, joint_j = joint_parent(j) + G_parent(j) offset_j (smplx.lbs)."""
    is_numpy = isinstance(rotations, np.ndarray)
    rot = torch.as_tensor(rotations)
    root = torch.as_tensor(root_positions, dtype=rot.dtype)
    T, J, _ = rot.shape
    offsets = torch.as_tensor(np.asarray(offsets)[:J], dtype=rot.dtype)
    rest = torch.zeros(J, 3, dtype=rot.dtype)
    for j in range(1, J):  # rest joint positions: rest_j = rest_parent + offset_j
        rest[j] = rest[parents[j]] + offsets[j]
    rot_mats = batch_rodrigues(rot.reshape(-1, 3)).reshape(T, J, 3, 3)
    posed, _ = batch_rigid_transform(rot_mats, rest.expand(T, J, 3), torch.tensor(parents[:J]), rot.dtype)
    joints = posed + root[:, None]
    return joints.numpy() if is_numpy else joints


# ----------------------------------------------------------------------------------------------
# Quaternions (w, x, y, z), numpy float64, broadcasting over leading dims.
def _qmul(a, b):
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def _qinv(q):
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def _qrot(q, v):
    """v' = q v q^-1, i.e. v + 2w (u x v) + 2 u x (u x v) with u = q.xyz."""
    u, w = q[..., 1:], q[..., :1]
    uv = np.cross(u, v)
    return v + 2 * (w * uv + np.cross(u, uv))


def _qbetween(v0, v1):
    """Shortest-arc rotation taking direction v0 to v1: q ~ (|v0||v1| + v0.v1, v0 x v1)."""
    w = np.sqrt((v0 ** 2).sum(-1) * (v1 ** 2).sum(-1)) + (v0 * v1).sum(-1)
    q = np.concatenate([w[..., None], np.cross(v0, v1)], -1)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _qmatrix(q):
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1
                    ).reshape(q.shape[:-1] + (3, 3))


def _gaussian_smooth(x, sigma=20.0):
    """scipy.ndimage.gaussian_filter1d(x, sigma, axis=0, mode='nearest') (truncate 4 sigma)."""
    radius = int(4 * sigma + 0.5)
    w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    padded = np.concatenate([np.repeat(x[:1], radius, 0), x, np.repeat(x[-1:], radius, 0)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=0)  # [T, 3, K]
    return windows @ (w / w.sum())


def _facing(joints, hips=1.0):
    """Forward direction = up x across, across = hips * (r_hip - l_hip) + (r_shoulder - l_shoulder)."""
    r_hip, l_hip, r_sdr, l_sdr = FACE_JOINTS
    j = joints
    across = hips * (j[..., r_hip, :] - j[..., l_hip, :]) + j[..., r_sdr, :] - j[..., l_sdr, :]
    across = across / np.linalg.norm(across, axis=-1, keepdims=True)
    return np.cross(np.array([0.0, 1.0, 0.0]), across)


def _inverse_kinematics(joints, parents, chains, raw_offsets):
    """HumanML3D's IK, quaternions [T, J, 4]. Root: turns the (smoothed) forward direction to +Z (identity
    at frame 0). Joint j: R_loc(j) = R_prev^-1 rot(raw_offset_j -> bone_j), where R_prev is the parent bone's
    rotation, or the root rotation for the first bone of each kinematic chain (arm chains included, as in
    HumanML3D). Its skeleton.py unpacks the face joints as (l_hip, r_hip, ...), so its across vector is
    (l_hip - r_hip) + (r_shoulder - l_shoulder): kept, since the published features depend on it."""
    forward = _gaussian_smooth(_facing(joints, hips=-1.0))
    forward = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    root_quat = _qbetween(forward, np.array([0.0, 0.0, 1.0]))
    root_quat[0] = [1.0, 0.0, 0.0, 0.0]
    bone_rot = _qbetween(raw_offsets[1:], joints[:, 1:] - joints[:, parents[1:]])  # [T, J-1, 4]
    rots = np.concatenate([root_quat[:, None], bone_rot], 1)  # indexed by joint
    chain_starts = {chain[1] for chain in chains}
    prev = [0 if j in chain_starts else parents[j] for j in range(1, len(parents))]
    return np.concatenate([root_quat[:, None], _qmul(_qinv(rots[:, prev]), bone_rot)], 1)


def features_from_joints(joints, feet_thre=0.002):
    """Joints [T, J, 3] (any skeleton proportions, +Y up) -> features [T-1, 12J-1], HumanML3D's process."""
    is_torch = isinstance(joints, torch.Tensor)
    pos = np.asarray(joints.detach().cpu() if is_torch else joints, dtype=np.float64).copy()
    T, J, _ = pos.shape
    if T < 2:
        raise ValueError(f"features_from_joints needs at least 2 frames, got joints of shape {pos.shape}")
    parents, chains, raw_offsets, lengths = skeleton(J)
    # Uniform skeleton: every bone keeps its direction and takes the reference length; the root path is
    # scaled by the leg-length ratio (knee->ankle + hip->knee, right leg). Same as HumanML3D's IK -> FK.
    src_len = np.linalg.norm(pos[0, 1:] - pos[0, parents[1:]], axis=-1)
    scale = (lengths[5] + lengths[8]) / (src_len[4] + src_len[7])
    new = np.zeros_like(pos)
    new[:, 0] = pos[:, 0] * scale
    for j in range(1, J):  # parents come before children
        bone = pos[:, j] - pos[:, parents[j]]
        new[:, j] = new[:, parents[j]] + bone / np.linalg.norm(bone, axis=-1, keepdims=True) * lengths[j]
    pos = new
    pos[..., 1] -= pos[..., 1].min()  # on the floor
    pos -= pos[0, 0] * np.array([1.0, 0.0, 1.0])  # root xz at the origin in frame 0
    forward0 = _facing(pos[0])
    pos = _qrot(_qbetween(forward0 / np.linalg.norm(forward0), np.array([0.0, 0.0, 1.0])), pos)  # face +Z
    # Foot contacts: squared frame-to-frame displacement below feet_thre (m^2).
    contacts = (((pos[1:, FOOT_L + FOOT_R] - pos[:-1, FOOT_L + FOOT_R]) ** 2).sum(-1) < feet_thre)
    quats = _inverse_kinematics(pos, parents, chains, raw_offsets)
    r_rot = quats[:, 0]  # world -> root frame (about +Y)
    mats = _qmatrix(quats[:, 1:])
    cont6d = np.concatenate([mats[..., 0], mats[..., 1]], -1)  # first two columns of each rotation
    root_vel = _qrot(r_rot[1:], pos[1:, 0] - pos[:-1, 0])
    r_velocity = np.arcsin(_qmul(r_rot[1:], _qinv(r_rot[:-1]))[:, 2])  # half the yaw step
    ric = pos.copy()
    ric[..., [0, 2]] -= pos[:, :1, [0, 2]]
    ric = _qrot(r_rot[:, None], ric)
    local_vel = _qrot(r_rot[:-1, None], pos[1:] - pos[:-1])
    feats = np.concatenate([r_velocity[:, None], root_vel[:, [0, 2]], ric[:-1, 0, 1:2],
                            ric[:-1, 1:].reshape(T - 1, -1), cont6d[:-1].reshape(T - 1, -1),
                            local_vel.reshape(T - 1, -1), contacts], axis=-1).astype(np.float32)
    return torch.from_numpy(feats) if is_torch else feats


def recover_from_ric(feats, joints_num):
    """Features [..., T, D] -> joints [..., T, J, 3]: integrate the root yaw and xz velocity, then
    un-rotate the root-relative positions (HumanML3D recover_from_ric). Differentiable for torch input."""
    is_numpy = isinstance(feats, np.ndarray)
    x = torch.from_numpy(np.array(feats)) if is_numpy else feats  # (a copy: memory maps are read-only)
    # yaw_t = 2 * sum_{s<t} feats[s, 0] (feature 0 is half the yaw step: arcsin of a quaternion's y)
    yaw = 2 * torch.cumsum(F.pad(x[..., :-1, 0], (1, 0)), -1)
    cos, sin = torch.cos(yaw), torch.sin(yaw)

    def unrotate(v, c, s):  # the root rotation's inverse: rotation by -yaw about +Y
        vx, vy, vz = v.unbind(-1)
        return torch.stack([vx * c - vz * s, vy, vx * s + vz * c], -1)

    # root xz: sum of the previous frames' root-frame velocities turned back into the world frame
    vel = F.pad(x[..., :-1, 1:3], (0, 0, 1, 0))
    step = unrotate(torch.stack([vel[..., 0], torch.zeros_like(vel[..., 0]), vel[..., 1]], -1), cos, sin)
    root = torch.cumsum(step, -2)
    root = torch.stack([root[..., 0], x[..., 3], root[..., 2]], -1)
    ric = x[..., 4:4 + (joints_num - 1) * 3].unflatten(-1, (joints_num - 1, 3))
    ric = unrotate(ric, cos[..., None], sin[..., None])
    joints = torch.cat([root[..., None, :], ric + root[..., None, :] * root.new_tensor([1.0, 0.0, 1.0])], -2)
    return joints.numpy() if is_numpy else joints


BODY_PARTS = {  # joints of each body part (the root joint is the "root" part)
    "torso": [3, 6, 9, 12, 15], "left_arm": [13, 16, 18, 20], "right_arm": [14, 17, 19, 21],
    "left_leg": [1, 4, 7, 10], "right_leg": [2, 5, 8, 11],
    "left_hand": list(range(22, 37)), "right_hand": list(range(37, 52)),
}


def part_columns(joints_num):
    """Feature columns of each body part: root = [0:4] + the root's velocity; every other joint's ric (3),
    rotation (6) and velocity (3) columns go to its part; each foot's contacts to its leg."""
    J = joints_num
    ric0, rot0, vel0, contact0 = 4, 4 + (J - 1) * 3, 4 + (J - 1) * 9, 4 + (J - 1) * 9 + J * 3

    def joint_cols(j):
        return [*range(ric0 + (j - 1) * 3, ric0 + j * 3), *range(rot0 + (j - 1) * 6, rot0 + j * 6),
                *range(vel0 + j * 3, vel0 + j * 3 + 3)]

    parts = {"root": [0, 1, 2, 3, vel0, vel0 + 1, vel0 + 2]}
    names = ["torso", "left_arm", "right_arm", "left_leg", "right_leg"] + (["left_hand", "right_hand"]
                                                                            if J == 52 else [])
    for name in names:
        parts[name] = [c for j in BODY_PARTS[name] for c in joint_cols(j)]
    parts["left_leg"] += [contact0, contact0 + 1]
    parts["right_leg"] += [contact0 + 2, contact0 + 3]
    return {name: np.array(sorted(cols), dtype=np.int64) for name, cols in parts.items()}


# ----------------------------------------------------------------------------------------------
# On-disk dataset (DESIGN.md): data/<name>/ meta.json, motions.npy [total_frames, D] float32 +
# offsets.npy int64 [N+1] (clip i = motions[offsets[i]:offsets[i+1]]), texts.jsonl, <split>.txt,
# mean.npy / std.npy (train split). Written into a temporary folder, then renamed into place.
MIN_FRAMES = 40
SKIP_REASONS = ["load_error", "nan_or_inf", "too_short", "wrong_width", "bad_caption", "duplicate_id"]


class BadClip(ValueError):
    """A clip that cannot go into the dataset; .reason is one of SKIP_REASONS."""

    def __init__(self, reason, where, problem):
        super().__init__(f"{where}: {problem}")
        self.reason = reason


def _check_clip(clip, feat_dim, seen):
    """-> (feats float32 [T, D], captions) or raises BadClip. Loaders report a file that failed to load
    as {"id", "file", "error": message}."""
    where = clip.get("file") or f"clip {clip.get('id')!r}"
    if "error" in clip:
        raise BadClip("load_error", where, clip["error"])
    feats = np.asarray(clip["feats"], dtype=np.float32)
    if feats.ndim != 2 or feats.shape[1] != feat_dim:
        raise BadClip("wrong_width", where, f"features of shape {feats.shape}, expected [T, {feat_dim}]")
    if not np.isfinite(feats).all():
        raise BadClip("nan_or_inf", where, "features contain NaN or inf")
    if len(feats) < MIN_FRAMES:
        raise BadClip("too_short", where, f"{len(feats)} frames, fewer than {MIN_FRAMES}")
    captions = []
    for c in clip.get("captions") or []:
        try:
            c = c.decode("utf-8") if isinstance(c, bytes) else str(c)
        except UnicodeDecodeError:
            raise BadClip("bad_caption", clip.get("text_file", where), "caption is not valid UTF-8") from None
        if c.strip():
            captions.append(c.strip())
    if not captions:
        raise BadClip("bad_caption", clip.get("text_file", where), "no caption (empty or missing)")
    if clip["id"] in seen:
        raise BadClip("duplicate_id", where, f"id {clip['id']!r} appears twice")
    return feats, captions


def default_split(clip_id):
    """Deterministic 80/10/10 train/val/test split by a hash of the id."""
    u = zlib.crc32(clip_id.encode()) / 2 ** 32
    return "train" if u < 0.8 else "val" if u < 0.9 else "test"


def _group_slices(J):
    r, o, v = 4 + (J - 1) * 3, 4 + (J - 1) * 9, 4 + (J - 1) * 9 + J * 3
    return [slice(0, 1), slice(1, 3), slice(3, 4), slice(4, r), slice(r, o), slice(o, v), slice(v, v + 4)]


def write_dataset(out_dir, clips, *, name, joints_num, fps=20, splits=None, strict=False, source=None):
    """Validate and stream `clips` (dicts {"id", "feats" [T, D], "captions", "parts", "subset"}) into
    out_dir atomically. Bad clips are skipped and counted per reason (strict: one error naming the clip).
    `splits`: {split name: [ids]}; without it a clip's "split" key, else default_split(id).
    Returns the summary (also in meta.json)."""
    out_dir = Path(out_dir)
    feat_dim = 12 * joints_num - 1
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    membership = {}
    for split_name, ids in (splits or {}).items():
        for i in ids:
            membership.setdefault(i, []).append(split_name)
    split_ids = {s: [] for s in (splits or ("train", "val", "test"))}
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    offsets, seen = [0], set()
    total, sq_total, n_train = np.zeros(feat_dim), np.zeros(feat_dim), 0
    try:
        with open(tmp / "motions.npy", "wb") as mf, open(tmp / "texts.jsonl", "w", encoding="utf-8") as tf:
            header = {"descr": "<f4", "fortran_order": False, "shape": (0, feat_dim)}
            np.lib.format.write_array_header_1_0(mf, header)  # rewritten with the real length at the end
            header_len = mf.tell()
            for clip in clips:
                try:
                    feats, captions = _check_clip(clip, feat_dim, seen)
                except BadClip as e:
                    if strict:
                        raise
                    skipped[e.reason] += 1
                    continue
                seen.add(clip["id"])
                mf.write(feats.tobytes())
                offsets.append(offsets[-1] + len(feats))
                record = {"id": clip["id"], "captions": captions, "parts": clip.get("parts") or {},
                          "subset": clip.get("subset", "")}
                tf.write(json.dumps(record, ensure_ascii=False) + "\n")
                # a given split table, else the clip's own "split" (loaders), else a hash of the id
                in_splits = membership.get(clip["id"], []) if splits else [clip.get("split")
                                                                           or default_split(clip["id"])]
                for s in in_splits:
                    split_ids.setdefault(s, []).append(clip["id"])
                if "train" in in_splits:
                    f64 = feats.astype(np.float64)
                    total += f64.sum(0)
                    sq_total += (f64 ** 2).sum(0)
                    n_train += len(feats)
            if len(offsets) == 1:
                raise ValueError(f"{out_dir}: no valid clips to write (skipped: {skipped})")
            mf.seek(0)
            np.lib.format.write_array_header_1_0(mf, {**header, "shape": (offsets[-1], feat_dim)})
            assert mf.tell() == header_len, "npy header changed size"
        if n_train == 0:
            raise ValueError(f"{out_dir}: the train split is empty; mean/std need training clips")
        # Mean per column; std averaged within each feature group as HumanML3D does (keeps rarely-moving
        # columns from being blown up), floored at 1e-3.
        mean = total / n_train
        std = np.sqrt(np.maximum(sq_total / n_train - mean ** 2, 0))
        for g in _group_slices(joints_num):
            std[g] = std[g].mean()
        np.save(tmp / "mean.npy", mean.astype(np.float32))
        np.save(tmp / "std.npy", np.maximum(std, 1e-3).astype(np.float32))
        np.save(tmp / "offsets.npy", np.array(offsets, dtype=np.int64))
        for s, ids in split_ids.items():
            (tmp / f"{s}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        summary = {"written": len(offsets) - 1, "frames": offsets[-1], "skipped": skipped,
                   "splits": {s: len(ids) for s, ids in split_ids.items()}}
        meta = {"name": name, "version": 1, "fps": fps, "joints_num": joints_num, "feat_dim": feat_dim,
                "parts": {k: v.tolist() for k, v in part_columns(joints_num).items()},
                "source": source, "summary": summary}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if out_dir.exists():  # swap: old -> trash, new -> out_dir, then delete the old one
            trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, trash / "old")
            os.replace(tmp, out_dir)
            shutil.rmtree(trash)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return summary


class JsonLines:
    """A .jsonl file as a read-only list of dicts, each line parsed when accessed (memory-mapped, so a
    million clips' texts stay on disk)."""

    def __init__(self, path):
        empty = os.path.getsize(path) == 0  # (an empty file cannot be memory-mapped)
        self.buf = np.zeros(0, np.uint8) if empty else np.memmap(path, dtype=np.uint8, mode="r")
        self.ends = np.flatnonzero(self.buf == ord("\n")) + 1
        self.starts = np.r_[0, self.ends[:-1]]

    def __len__(self):
        return len(self.ends)

    def __getitem__(self, i):
        return json.loads(self.buf[self.starts[i]:self.ends[i]].tobytes())


class MotionData:
    """Read-only view of a dataset folder written by write_dataset (motions memory-mapped)."""

    FILES = ["meta.json", "motions.npy", "offsets.npy", "texts.jsonl", "mean.npy", "std.npy"]

    def __init__(self, root):
        self.root = Path(root)
        missing = [f for f in self.FILES if not (self.root / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.root}: not a dataset folder, missing {', '.join(missing)} "
                                    f"(write one with `python data.py`)")
        self.meta = json.loads((self.root / "meta.json").read_text(encoding="utf-8"))
        self.joints_num, self.feat_dim = self.meta["joints_num"], self.meta["feat_dim"]
        self.fps = self.meta["fps"]
        self.motions = np.load(self.root / "motions.npy", mmap_mode="r")
        self.offsets = np.load(self.root / "offsets.npy")
        self.texts = JsonLines(self.root / "texts.jsonl")
        self.ids = [t["id"] for t in self.texts]
        self.mean, self.std = np.load(self.root / "mean.npy"), np.load(self.root / "std.npy")
        problems = []
        if self.motions.ndim != 2 or self.motions.shape[1] != self.feat_dim:
            problems.append(f"motions.npy has shape {self.motions.shape}, meta says feat_dim {self.feat_dim}")
        if len(self.offsets) != len(self.ids) + 1 or self.offsets[0] != 0 or \
                self.offsets[-1] != len(self.motions) or (np.diff(self.offsets) <= 0).any():
            problems.append(f"offsets.npy ({len(self.offsets)} entries) does not match texts.jsonl "
                            f"({len(self.ids)} clips) and motions.npy ({len(self.motions)} frames)")
        if self.mean.shape != (self.feat_dim,) or self.std.shape != (self.feat_dim,):
            problems.append(f"mean/std shapes {self.mean.shape}/{self.std.shape}, not ({self.feat_dim},)")
        if problems:
            raise ValueError(f"{self.root}: inconsistent dataset: " + "; ".join(problems))
        self._index = {i: n for n, i in enumerate(self.ids)}

    def __len__(self):
        return len(self.ids)

    def motion(self, i):
        """Clip i (an index) as float32 [T_i, D] (a view into the memory map)."""
        return self.motions[self.offsets[i]:self.offsets[i + 1]]

    def index(self, clip_id):
        return self._index[clip_id]

    def split(self, name):
        """Clip indices of a split (train, val, test, ood, ...)."""
        path = self.root / f"{name}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no split named {name!r} in this dataset")
        ids = path.read_text(encoding="utf-8").split()
        unknown = [i for i in ids if i not in self._index]
        if unknown:
            raise ValueError(f"{path}: {len(unknown)} ids not in texts.jsonl, e.g. {unknown[0]!r}")
        return np.array([self._index[i] for i in ids], dtype=np.int64)


class WindowDataset(torch.utils.data.Dataset):
    """Random crops of `window` frames from the clips of a split (raw features, float32 [window, D]).
    Clips shorter than the window are left out; .dropped counts them."""

    def __init__(self, data, split, window=64):
        self.data, self.window = data, window
        clips = data.split(split)
        lengths = np.diff(data.offsets)[clips]
        self.clips = clips[lengths >= window]
        self.dropped = int((lengths < window).sum())

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        start, end = self.data.offsets[self.clips[i]], self.data.offsets[self.clips[i] + 1]
        s = start + int(torch.randint(0, end - start - self.window + 1, ()))
        return torch.from_numpy(np.array(self.data.motions[s:s + self.window], dtype=np.float32))


class TextMotionDataset(torch.utils.data.Dataset):
    """(caption, features float32 [T, D]) pairs of a split; one caption drawn at random per access."""

    def __init__(self, data, split):
        self.data, self.clips = data, data.split(split)

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        captions = self.data.texts[self.clips[i]]["captions"]
        caption = captions[int(torch.randint(0, len(captions), ()))]
        return caption, torch.from_numpy(np.array(self.data.motion(self.clips[i]), dtype=np.float32))


# ----------------------------------------------------------------------------------------------
# Real-data loaders. Each source file becomes a list of clips in write_dataset's format; a file that
# fails to load becomes {"id", "file", "error"} (counted as load_error). Worker processes convert
# files in parallel; pieces of one sequence share its split (no train/test leakage).
MAX_FRAMES = 196  # longest clip (HumanML3D: 9.8 s at 20 fps); longer sequences are cut evenly
STILL_FRAMES = 64  # a single pose (an image) is held for 64 frames (MotionBase, appendix A.1)


def read_splits(src):
    """{name: split} from src/train.txt, val.txt, test.txt (those present)."""
    files = [(s, Path(src) / f"{s}.txt") for s in ("train", "val", "test")]
    return {name: s for s, path in files if path.is_file()
            for name in path.read_text(encoding="utf-8").split()}


def load_humanml3d(name, src, fps=20):
    """HumanML3D layout: new_joint_vecs/<name>.npy [T, 263], texts/<name>.txt lines caption#tokens#start#end.
    start = end = 0 captions the whole clip; other lines caption the sub-clip [start, end) seconds."""
    src = Path(src)
    feats = np.load(src / "new_joint_vecs" / f"{name}.npy", allow_pickle=False)
    by_range = {}
    text = src / "texts" / f"{name}.txt"
    for line in (text.read_bytes().splitlines() if text.is_file() else []):
        fields = line.split(b"#")
        start, end = (float(fields[2]), float(fields[3])) if len(fields) >= 4 else (0.0, 0.0)
        start, end = (0.0 if np.isnan(start) else start), (0.0 if np.isnan(end) else end)  # nan = whole
        by_range.setdefault((start, end), []).append(fields[0])
    clips = []
    for (start, end), captions in (by_range or {(0.0, 0.0): []}).items():
        whole = start == 0 and end == 0
        clips.append({"id": name if whole else f"{name}@{start:g}-{end:g}", "text_file": str(text),
                      "file": str(src / "new_joint_vecs" / f"{name}.npy"),
                      "feats": feats if whole else feats[int(start * fps):int(end * fps)],
                      "captions": captions, "parts": {}, "subset": "humanml3d"})
    return clips


_smplx_models = {}


def smplx_joints(params, model_dir, gender="neutral"):
    """SMPL-X parameters {root_orient [T,3], pose_body [T,63], pose_hand [T,90], trans [T,3], betas} ->
    joints [T, 52, 3] (55 SMPL-X joints minus jaw and eyes). Joints depend on the shaped rest mesh only
    (J = J_regressor (v_template + shapedirs betas)), so the mesh is never posed: FK of the SMPL-X tree."""
    import smplx
    key = (str(model_dir), gender)
    if key not in _smplx_models:
        files = [p for d in (Path(model_dir) / "smplx", Path(model_dir)) for ext in ("npz", "pkl")
                 if (p := d / f"SMPLX_{gender.upper()}.{ext}").is_file()]
        if not files:
            raise FileNotFoundError(f"{model_dir}: no SMPLX_{gender.upper()}.npz/.pkl (here or in smplx/)")
        _smplx_models[key] = smplx.create(str(files[0]), model_type="smplx", gender=gender, use_pca=False,
                                          flat_hand_mean=True, ext=files[0].suffix[1:])
    model = _smplx_models[key]
    f32 = {k: torch.as_tensor(np.asarray(params[k], dtype=np.float32)) for k in
           ("root_orient", "pose_body", "pose_hand", "trans", "betas")}
    T = len(f32["root_orient"])
    betas = f32["betas"].reshape(-1, f32["betas"].shape[-1])[0, :model.num_betas]
    v_shaped = model.v_template + (model.shapedirs[..., :len(betas)] * betas).sum(-1)
    rest = model.J_regressor @ v_shaped  # [55, 3]
    parents = model.parents.tolist()
    pose = torch.cat([f32["root_orient"], f32["pose_body"], torch.zeros(T, 9), f32["pose_hand"]], 1)
    offsets = rest - rest[[0] + parents[1:]]
    joints = forward_kinematics(pose.reshape(T, 55, 3), f32["trans"] + rest[0], offsets, parents)
    return joints[:, SMPLX_TO_52].detach().numpy()


def load_smplx(name, src, model_dir, gender="neutral", src_fps=30.0, up="y"):
    """motions/<name>.npz (root_orient, pose_body, pose_hand, trans, betas; optional fps) + texts/<name>.txt
    (whole-body captions, one a line; lines "upper: ..." / "lower: ..." are the part descriptions)."""
    src = Path(src)
    with np.load(src / "motions" / f"{name}.npz", allow_pickle=False) as f:
        params = {k: f[k] for k in f.files}
    joints = smplx_joints(params, model_dir, gender)
    if up == "z":  # AMASS-style z-up -> y-up, as HumanML3D does: (x, y, z) -> (-x, z, y)
        joints = np.stack([-joints[..., 0], joints[..., 2], joints[..., 1]], -1)
    fps = float(params.get("fps", params.get("mocap_framerate", src_fps)))
    joints = joints[np.round(np.arange(0, len(joints), fps / 20)).astype(int).clip(max=len(joints) - 1)]
    if len(joints) == 1:
        joints = np.repeat(joints, STILL_FRAMES + 1, 0)
    captions, parts = [], {}
    text = src / "texts" / f"{name}.txt"
    for line in (text.read_bytes().splitlines() if text.is_file() else []):
        head, _, rest = line.partition(b":")
        if head.strip() in (b"upper", b"lower") and rest.strip():
            parts[head.strip().decode()] = rest.strip().decode("utf-8", "replace")
        else:
            captions.append(line)
    n_pieces = -(-(len(joints) - 1) // MAX_FRAMES)
    bounds = np.linspace(0, len(joints) - 1, n_pieces + 1).round().astype(int)
    return [{"id": name if n_pieces == 1 else f"{name}@{k}", "file": str(src / "motions" / f"{name}.npz"),
             "text_file": str(text), "feats": features_from_joints(joints[a:b + 1]), "captions": captions,
             "parts": parts, "subset": Path(name).parent.name or "smplx"}
            for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]


def _convert(job):
    loader, name, path, kwargs = job
    try:
        return loader(name, **kwargs)
    except Exception as e:  # noqa: BLE001 - any unreadable file is counted (or strict: reported), never fatal
        return [{"id": name, "file": str(path), "error": f"cannot load ({type(e).__name__}: {e})"}]


def convert(loader, files, workers=1, splits=None, **kwargs):
    """Yield the clips of every source file ({name: path}), converted by `workers` processes, in order.
    Every clip cut from file `name` goes to the split splits[name] (else default_split(name))."""
    jobs = [(loader, name, path, kwargs) for name, path in files.items()]
    pool = multiprocessing.Pool(workers, torch.set_num_threads, (1,)) if workers > 1 else None
    try:
        results = pool.imap(_convert, jobs, chunksize=8) if pool else map(_convert, jobs)
        for job, clips in tqdm(zip(jobs, results, strict=True), total=len(jobs), desc="convert", unit="file"):
            for clip in clips:
                clip["split"] = (splits or {}).get(job[1]) or default_split(job[1])
                yield clip
    finally:  # also when the consumer stops early (strict error)
        if pool:
            pool.terminate()


# ----------------------------------------------------------------------------------------------
def render_gif(joints, path, title=None, fps=20):
    """Stick figure [T, J, 3] (+Y up) -> animated GIF. The camera follows the root; the floor (y = 0) is a
    0.5 m grid fixed in the world, so walking shows as the grid sliding by."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    joints = np.asarray(joints, dtype=np.float32)
    chains = H3D_KINEMATIC_CHAIN if joints.shape[1] == 22 else SMPLX52_KINEMATIC_CHAIN
    colors = ["#d62728", "#1f77b4", "#333333", "#ff7f0e", "#2ca02c"] + ["#9467bd"] * 10  # legs, spine, arms
    radius = 1.0
    fig = plt.figure(figsize=(4, 4), dpi=80)
    ax = fig.add_subplot(projection="3d")
    ax.view_init(elev=15, azim=-60, vertical_axis="y")  # matplotlib's vertical is z unless told
    ax.set_box_aspect((1, 1, 1), zoom=1.3)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 0.95)
    lines = [ax.plot([], [], [], color=c, linewidth=2, marker="o", markersize=2)[0]
             for c in colors[:len(chains)]]
    floor = [ax.plot([], [], [], color="0.7", linewidth=0.6)[0] for _ in range(2 * 5)]
    if title:
        fig.suptitle(title if len(title) < 60 else title[:57] + "...", fontsize=8)

    def draw(t):
        cx, cz = joints[t, 0, 0], joints[t, 0, 2]
        ax.set(xlim=(cx - radius, cx + radius), ylim=(0, 2 * radius), zlim=(cz - radius, cz + radius))
        xs = np.ceil((cx - radius) / 0.5) * 0.5 + 0.5 * np.arange(5)  # world grid lines inside the view
        zs = np.ceil((cz - radius) / 0.5) * 0.5 + 0.5 * np.arange(5)
        for line, x in zip(floor[:5], xs, strict=True):
            line.set_data_3d([x, x], [0, 0], [cz - radius, cz + radius])
        for line, z in zip(floor[5:], zs, strict=True):
            line.set_data_3d([cx - radius, cx + radius], [0, 0], [z, z])
        for line, chain in zip(lines, chains, strict=True):
            line.set_data_3d(joints[t, chain, 0], joints[t, chain, 1], joints[t, chain, 2])
        return lines + floor

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    FuncAnimation(fig, draw, frames=len(joints)).save(str(path), writer=PillowWriter(fps=fps))
    plt.close(fig)


def _list_files(folder, suffix):
    return {str(p.relative_to(folder).with_suffix("")): p for p in sorted(Path(folder).rglob(f"*{suffix}"))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="synth", choices=["synth", "humanml3d", "smplx"])
    p.add_argument("--src", help="source folder (humanml3d / smplx)")
    p.add_argument("--out", help="dataset folder to write (default data/<source>)")
    p.add_argument("--size", type=int, default=20000, help="synth: number of clips")
    p.add_argument("--seed", type=int, default=0, help="synth: generator seed")
    p.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    p.add_argument("--strict", action="store_true", help="stop at the first bad clip instead of skipping it")
    p.add_argument("--smplx_model_dir", help="folder with SMPLX_NEUTRAL.npz (or smplx/SMPLX_NEUTRAL.npz)")
    p.add_argument("--gender", default="neutral", help="smplx: which SMPL-X model file")
    p.add_argument("--src_fps", type=float, default=30.0, help="smplx: frame rate when a file has no fps")
    p.add_argument("--up", default="y", choices=["y", "z"], help="smplx: the source's up axis")
    p.add_argument("--data", help="--show: dataset folder to read")
    p.add_argument("--show", help="--show: comma-separated clip indices or ids to render as GIFs")
    p.add_argument("--gif_dir", default="out/gifs")
    args = p.parse_args(argv)

    if args.show:
        ds = MotionData(args.data or "data/synth")
        for key in args.show.split(","):  # an id, else an index
            i = ds._index.get(key, int(key) if key.isdigit() else -1)
            if not 0 <= i < len(ds):
                p.error(f"{ds.root}: no clip with id or index {key!r} ({len(ds)} clips)")
            path = Path(args.gif_dir) / f"{ds.meta['name']}_{ds.ids[i].replace('/', '_')}.gif"
            render_gif(recover_from_ric(np.array(ds.motion(i)), ds.joints_num), path,
                       title=ds.texts[i]["captions"][0], fps=ds.fps)
            print(f"{path}: {ds.ids[i]} ({len(ds.motion(i))} frames) {ds.texts[i]['captions'][0]!r}")
        return
    out = Path(args.out or f"data/{args.source}")
    if args.source == "synth":
        import synth
        clips, splits = synth.generate(args.size, args.seed, args.workers)
        summary = write_dataset(out, clips, name=out.name, joints_num=22, splits=splits, strict=args.strict,
                                source={"synth": {"size": args.size, "seed": args.seed}})
    else:
        if not args.src or not Path(args.src).is_dir():
            p.error(f"--source {args.source} needs --src DIR (an existing folder), got {args.src!r}")
        if args.source == "humanml3d":
            files = _list_files(Path(args.src) / "new_joint_vecs", ".npy")
            clips = convert(load_humanml3d, files, args.workers, read_splits(args.src), src=args.src)
        else:
            if not args.smplx_model_dir:
                p.error("--source smplx needs --smplx_model_dir DIR (the SMPL-X model files)")
            files = _list_files(Path(args.src) / "motions", ".npz")
            clips = convert(load_smplx, files, args.workers, read_splits(args.src), src=args.src,
                            model_dir=args.smplx_model_dir, gender=args.gender, src_fps=args.src_fps,
                            up=args.up)
        joints_num = 22 if args.source == "humanml3d" else 52
        summary = write_dataset(out, clips, name=out.name, joints_num=joints_num, strict=args.strict,
                                source={args.source: str(args.src)})
    print(f"{out}: {json.dumps(summary)}")


if __name__ == "__main__":
    main()
