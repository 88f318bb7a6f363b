"""The motion representation: the skeletons (HumanML3D's 22-joint SMPL body, the 52-joint SMPL-X body +
hands), forward kinematics through smplx.lbs, HumanML3D features and their inverse, the feature columns of
each body part, the reconstruction measure (mpjpe), a rigid skeleton's rotations (for support/bvh.py) and a
stick-figure GIF: everything that turns joints into features and back.

Features (docs/design.md; HumanML3D, Guo et al. 2022, generalised to J joints, D = 12J - 1), per frame t:
  [0] root angular velocity about +Y, [1:3] root xz velocity in the root frame, [3] root height,
  ric (J-1)*3 root-relative joint positions in the root frame, rot (J-1)*6 joint rotations (6D),
  vel J*3 joint velocities in the root frame, 4 foot contacts (l_ankle, l_foot, r_ankle, r_foot).
feature_slices(J) is that layout, the one place in the code it is written down.
"""

import textwrap
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from smplx.lbs import batch_rigid_transform, batch_rodrigues

# Clip conventions every stage shares (HumanML3D's): 20 fps; clips of 40 to 196 feature frames (2 to 9.8 s),
# longer sequences cut evenly; a single pose (an image) held for 64 frames (MotionBase, appendix A.1).
FPS = 20
MIN_FRAMES, MAX_FRAMES = 40, 196
STILL_FRAMES = 64
FRAMES_PER_CODE = 4  # a code covers 4 frames: the tokenizers' temporal downsampling (§4.2, α = 4)

# Skeleton. SMPL joint order and names; the body faces +Z, its left is +X, up is +Y. SMPL-X/SMPL-H hands
# (52 joints): 22-36 left, 37-51 right (SMPL-X's 55 joints minus jaw and eyes).
JOINT_NAMES = ["Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle",
               "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder",
               "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist"] + [
    f"{side}_{finger}{k}" for side in "LR" for finger in ("Index", "Middle", "Pinky", "Ring", "Thumb")
    for k in (1, 2, 3)]
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
# rescaled to these; the real-data test fixtures' skeleton_example_h3d.npy holds those joints).
SMPLX52_BONE_LENGTHS = np.array([
    0.0, 0.103074, 0.109883, 0.131568, 0.393623, 0.390188, 0.143190, 0.432433, 0.425643, 0.057365,
    0.143382, 0.149419, 0.219360, 0.137487, 0.143383, 0.103039, 0.131614, 0.122984, 0.256840,
    0.263092, 0.266012, 0.269876,  # body (22)
    0.108399, 0.033205, 0.023345, 0.113773, 0.032046, 0.024734, 0.099195, 0.020455, 0.019819,
    0.105121, 0.029673, 0.024619, 0.055922, 0.031891, 0.027358,  # left hand
    0.107870, 0.033876, 0.023438, 0.112998, 0.032097, 0.024503, 0.098655, 0.020353, 0.019662,
    0.104534, 0.029580, 0.024669, 0.055320, 0.032278, 0.027795])  # right hand
H3D_BONE_LENGTHS = SMPLX52_BONE_LENGTHS[:22]
_parent = {child: parent for chain in SMPLX52_KINEMATIC_CHAIN
           for parent, child in zip(chain[:-1], chain[1:], strict=True)}
SMPLX52_PARENTS = [_parent.get(j, -1) for j in range(52)]  # each joint's parent along its chain (-1: root)
H3D_PARENTS = SMPLX52_PARENTS[:22]  # (the hands hang from the wrists)
# Rest pose (zero rotations) for forward kinematics: standing, arms hanging, feet forward. Bone
# vectors = raw direction * length, except the head, which points up here (HumanML3D's raw offset
# +Z for the head only matters to its inverse kinematics, which uses H3D_RAW_OFFSETS).
_rest_dirs = SMPLX52_RAW_OFFSETS.copy()
_rest_dirs[15] = [0.0, 1.0, 0.0]
SMPLX52_OFFSETS = (_rest_dirs * SMPLX52_BONE_LENGTHS[:, None]).astype(np.float32)
H3D_OFFSETS = SMPLX52_OFFSETS[:22].copy()
SMPLX_TO_52 = list(range(22)) + list(range(25, 55))  # SMPL-X layer's 55 joints -> our 52 (drop jaw, eyes)
FOOT_L, FOOT_R = [7, 10], [8, 11]  # ankle, toe
_INVERSE = np.array([1.0, -1.0, -1.0, -1.0])  # quaternion q * _INVERSE = q^-1 (for a unit q, its conjugate)


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


# Quaternions (w, x, y, z), numpy float64, broadcasting over leading dims.
def qmul(a, *rest):
    """The Hamilton product a * b * c * ... (applied right to left as rotations)."""
    for b in rest:
        (aw, ax, ay, az), (bw, bx, by, bz) = np.moveaxis(a, -1, 0), np.moveaxis(b, -1, 0)
        a = np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                      aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)
    return a


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


def _facing(j, hips=1.0):
    """Forward of joints j = up x across, across = hips * (r_hip - l_hip) + (r_shoulder - l_shoulder)."""
    r_hip, l_hip, r_sdr, l_sdr = 2, 1, 17, 16
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
    return np.concatenate([root_quat[:, None], qmul(rots[:, prev] * _INVERSE, bone_rot)], 1)


def features_from_joints(joints):
    """Joints [T, J, 3] (any skeleton proportions, +Y up) -> features [T-1, 12J-1], HumanML3D's process."""
    src = np.asarray(joints, dtype=np.float64)
    T, J, _ = src.shape
    if T < 2:
        raise ValueError(f"features_from_joints needs at least 2 frames, got joints of shape {src.shape}")
    parents, chains, raw_offsets, lengths = skeleton(J)
    # Uniform skeleton: every bone keeps its direction and takes the reference length; the root path is
    # scaled by the leg-length ratio (knee->ankle + hip->knee, right leg). Same as HumanML3D's IK -> FK.
    src_len = np.linalg.norm(src[0, 1:] - src[0, parents[1:]], axis=-1)
    scale = (lengths[5] + lengths[8]) / (src_len[4] + src_len[7])
    pos = np.zeros_like(src)
    pos[:, 0] = src[:, 0] * scale
    for j in range(1, J):  # parents come before children
        bone = src[:, j] - src[:, parents[j]]
        pos[:, j] = pos[:, parents[j]] + bone / np.linalg.norm(bone, axis=-1, keepdims=True) * lengths[j]
    pos[..., 1] -= pos[..., 1].min()  # on the floor
    pos -= pos[0, 0] * np.array([1.0, 0.0, 1.0])  # root xz at the origin in frame 0
    forward0 = _facing(pos[0])
    pos = _qrot(_qbetween(forward0 / np.linalg.norm(forward0), np.array([0.0, 0.0, 1.0])), pos)  # face +Z
    # Foot contacts: squared frame-to-frame displacement below 0.002 m^2 (HumanML3D's feet_thre).
    contacts = (((pos[1:, FOOT_L + FOOT_R] - pos[:-1, FOOT_L + FOOT_R]) ** 2).sum(-1) < 0.002)
    quats = _inverse_kinematics(pos, parents, chains, raw_offsets)
    r_rot = quats[:, 0]  # world -> root frame (about +Y)
    mats = _qmatrix(quats[:, 1:])
    cont6d = np.concatenate([mats[..., 0], mats[..., 1]], -1)  # first two columns of each rotation
    root_vel = _qrot(r_rot[1:], pos[1:, 0] - pos[:-1, 0])
    r_velocity = np.arcsin(qmul(r_rot[1:], r_rot[:-1] * _INVERSE)[:, 2])  # half the yaw step
    ric = pos.copy()
    ric[..., [0, 2]] -= pos[:, :1, [0, 2]]
    ric = _qrot(r_rot[:, None], ric)
    local_vel = _qrot(r_rot[:-1, None], pos[1:] - pos[:-1])
    return np.concatenate([r_velocity[:, None], root_vel[:, [0, 2]], ric[:-1, 0, 1:2],
                           ric[:-1, 1:].reshape(T - 1, -1), cont6d[:-1].reshape(T - 1, -1),
                           local_vel.reshape(T - 1, -1), contacts], axis=-1).astype(np.float32)


def feature_slices(joints_num):
    """{group: its feature columns} of the layout at the top, for J joints (D = 12J - 1)."""
    J = joints_num
    ric, rot, vel = 4 + (J - 1) * 3, 4 + (J - 1) * 9, 4 + (J - 1) * 9 + J * 3
    return {"root_yaw_vel": slice(0, 1), "root_xz_vel": slice(1, 3), "root_y": slice(3, 4),
            "ric": slice(4, ric), "rot6d": slice(ric, rot), "local_vel": slice(rot, vel),
            "contacts": slice(vel, vel + 4)}


def recover_from_ric(feats, joints_num):
    """Features [..., T, D] -> joints [..., T, J, 3]: integrate the root yaw and xz velocity, then
    un-rotate the root-relative positions (HumanML3D recover_from_ric). Differentiable for torch input."""
    is_numpy = isinstance(feats, np.ndarray)
    x = torch.from_numpy(np.array(feats)) if is_numpy else feats  # (a copy: memory maps are read-only)
    cols = feature_slices(joints_num)
    # yaw_t = 2 * sum_{s<t} feats[s, 0] (feature 0 is half the yaw step: arcsin of a quaternion's y)
    yaw = 2 * torch.cumsum(F.pad(x[..., :-1, cols["root_yaw_vel"]][..., 0], (1, 0)), -1)
    cos, sin = torch.cos(yaw), torch.sin(yaw)

    def unrotate(v, c, s):  # the root rotation's inverse: rotation by -yaw about +Y
        vx, vy, vz = v.unbind(-1)
        return torch.stack([vx * c - vz * s, vy, vx * s + vz * c], -1)

    # root xz: sum of the previous frames' root-frame velocities turned back into the world frame
    vel = F.pad(x[..., :-1, cols["root_xz_vel"]], (0, 0, 1, 0))
    step = unrotate(torch.stack([vel[..., 0], torch.zeros_like(vel[..., 0]), vel[..., 1]], -1), cos, sin)
    root = torch.cumsum(step, -2)
    root = torch.stack([root[..., 0], x[..., cols["root_y"]][..., 0], root[..., 2]], -1)
    ric = x[..., cols["ric"]].unflatten(-1, (joints_num - 1, 3))
    ric = unrotate(ric, cos[..., None], sin[..., None])
    joints = torch.cat([root[..., None, :], ric + root[..., None, :] * root.new_tensor([1.0, 0.0, 1.0])], -2)
    return joints.numpy() if is_numpy else joints


BODY_PARTS = {  # joints of each body part (the root joint is the "root" part)
    "torso": [3, 6, 9, 12, 15], "left_arm": [13, 16, 18, 20], "right_arm": [14, 17, 19, 21],
    "left_leg": [1, 4, 7, 10], "right_leg": [2, 5, 8, 11],
    "left_hand": list(range(22, 37)), "right_hand": list(range(37, 52)),
}


# the body as a person names it (sample.py --keep, part texts), in the tokenizer's parts
GROUPS = {"upper": ("torso", "left_arm", "right_arm", "left_hand", "right_hand"),
          "lower": ("root", "left_leg", "right_leg")}


def part_columns(joints_num):
    """Feature columns of each body part: root = [0:4] + the root's velocity; every other joint's ric (3),
    rotation (6) and velocity (3) columns go to its part; each foot's contacts to its leg."""
    J, cols = joints_num, feature_slices(joints_num)
    ric0, rot0, vel0, contact0 = (cols[g].start for g in ("ric", "rot6d", "local_vel", "contacts"))

    def joint_cols(j):
        return [*range(ric0 + (j - 1) * 3, ric0 + j * 3), *range(rot0 + (j - 1) * 6, rot0 + j * 6),
                *range(vel0 + j * 3, vel0 + j * 3 + 3)]

    parts = {"root": [0, 1, 2, 3, vel0, vel0 + 1, vel0 + 2]} | {  # and every part within the J joints
        name: [c for j in part for c in joint_cols(j)] for name, part in BODY_PARTS.items() if max(part) < J}
    parts["left_leg"] += [contact0, contact0 + 1]
    parts["right_leg"] += [contact0 + 2, contact0 + 3]
    return {name: np.array(sorted(cols), dtype=np.int64) for name, cols in parts.items()}


def hold_still(feats, frames, joints_num):
    """Torch features [B, T, D] -> [B, frames + T + frames, D]: the first pose held still for `frames` frames
    before the clip, the last one after it (the edge frame with its root and joint velocities zeroed)."""
    cols = feature_slices(joints_num)
    moving = torch.zeros(feats.shape[-1], dtype=torch.bool, device=feats.device)
    for group in ("root_yaw_vel", "root_xz_vel", "local_vel"):
        moving[cols[group]] = True
    first, last = (edge.masked_fill(moving, 0).expand(-1, frames, -1)
                   for edge in (feats[:, :1], feats[:, -1:]))
    return torch.cat([first, feats, last], 1)


def root_aligned(joints):
    """Joints [..., J, 3] relative to the pelvis, per frame (numpy or torch): how MPJPE is measured."""
    return joints - joints[..., :1, :]


def mpjpe(joints_a, joints_b):
    """Mean per-joint position error in millimetres (joints in metres, [..., J, 3], numpy or torch), after
    aligning the roots of every frame (the tokenizer's Table 6 measure: body shape, not global drift)."""
    shape_a, shape_b = tuple(joints_a.shape), tuple(joints_b.shape)
    if shape_a != shape_b:
        raise ValueError(f"mpjpe: the joints' shapes differ: {shape_a} and {shape_b}")
    diff = root_aligned(joints_a) - root_aligned(joints_b)
    return 1000 * ((diff ** 2).sum(-1) ** 0.5).mean()


# The joints as a rigid skeleton turning at its joints: what a BVH file holds (support/bvh.py's to_bvh writes
# it). _inverse_kinematics gives every bone its own rotation (HumanML3D's features); here a joint has one
# rotation for all its children, so a joint with several turns as a frame set by a main child and an across
# pair (child a - child b), at rest along the main child's rest direction and `across`.
JOINT_FRAMES = {0: (3, 1, 2, [1.0, 0.0, 0.0]),  # pelvis: spine1, l_hip - r_hip (+X)
                9: (12, 13, 14, [1.0, 0.0, 0.0]),  # spine3: neck, l_collar - r_collar (+X)
                20: (25, 22, 28, [0.0, 0.0, 1.0]),  # wrists: middle1, index1 - pinky1 (+Z: at rest the
                21: (40, 37, 43, [0.0, 0.0, 1.0])}  # arms hang, palms to the body)


def _frame(main, across):
    """Orthonormal frames [..., 3, 3]: columns main, across made perpendicular to main, and their cross."""
    e1 = main / np.linalg.norm(main, axis=-1, keepdims=True)
    e2 = across - (across * e1).sum(-1, keepdims=True) * e1
    e2 = e2 / np.linalg.norm(e2, axis=-1, keepdims=True)
    return np.stack([e1, e2, np.cross(e1, e2)], -1)


def skeleton_rotations(joints):
    """Joints [T, J, 3] (J = 22 or 52) -> (local rotation matrices [T, J, 3, 3], rest offsets [J, 3]) of a
    rigid skeleton whose forward kinematics gives the joints back (as forward_kinematics: G_j = G_parent R_j,
    joint_j = joint_parent + G_parent offset_j), exactly while bones keep their lengths and siblings their
    layout. A joint with one child turns the child's rest direction onto its bone by the shortest arc in the
    parent's frame (its twist is the parent's), one with several as JOINT_FRAMES says, a leaf not at all.
    Offset = the bone's mean in its parent's frame: its rest direction at its mean length, or for siblings
    (hips, collars, fingers) the motion's own layout around their parent."""
    pos = np.asarray(joints, dtype=np.float64)
    T, J, _ = pos.shape
    parents = skeleton(J)[0]
    local = np.broadcast_to(np.eye(3), (T, J, 3, 3)).copy()
    world = local.copy()
    offsets = np.zeros((J, 3))
    for j in range(J):  # parents come before children
        parent_rot = world[:, parents[j]] if j else np.eye(3)
        to_parent = parent_rot.swapaxes(-1, -2)  # world -> the parent's frame
        children = [c for c in range(j + 1, J) if parents[c] == j]
        if len(children) > 1:
            main, a, b, across = JOINT_FRAMES[j]
            rest = _frame(_rest_dirs[main], np.array(across))
            world[:, j] = _frame(pos[:, main] - pos[:, j], pos[:, a] - pos[:, b]) @ rest.T
            local[:, j] = to_parent @ world[:, j]
        elif children:
            bone = (to_parent @ (pos[:, children[0]] - pos[:, j])[..., None])[..., 0]
            local[:, j] = _qmatrix(_qbetween(_rest_dirs[children[0]], bone))
            world[:, j] = parent_rot @ local[:, j]
        else:
            world[:, j] = parent_rot
        if j:
            offsets[j] = (to_parent @ (pos[:, j] - pos[:, parents[j]])[..., None])[..., 0].mean(0)
    return local, offsets


def render_gif(joints, path, title=None, fps=20, source=None, kept=None):
    """Stick figure [T, J, 3] (+Y up) -> animated GIF. The camera follows the root; the floor (y = 0) is a
    0.5 m grid fixed in the world, so walking shows as the grid sliding by, and the root's path so far is
    drawn on it (the trail). The title is wrapped, not cut. An edit (sample.py --edit) passes its `source`
    [T', J, 3], drawn on the left, and `kept` [T, J] bool: kept joints' limbs blue, regenerated ones orange
    (in the source: the kept ones blue, the rest grey)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.lines import Line2D

    panels = [np.asarray(m, dtype=np.float32) for m in ([] if source is None else [source]) + [joints]]
    chains = H3D_KINEMATIC_CHAIN if panels[-1].shape[1] == 22 else SMPLX52_KINEMATIC_CHAIN
    colors = ["#d62728", "#1f77b4", "#333333", "#ff7f0e", "#2ca02c"] + ["#9467bd"] * 10  # legs, spine, arms
    # chains in H3D_KINEMATIC_CHAIN order: right leg, left leg, spine, right arm, left arm (then the hands)
    legend = list(zip(colors, ("right leg", "left leg", "spine", "right arm", "left arm"), strict=False))
    if kept is not None:
        legend = [("#1f77b4", "kept"), ("#ff7f0e", "regenerated"), ("0.6", "source, not kept")]
    radius, n_frames = 1.0, max(len(m) for m in panels)
    fig = plt.figure(figsize=(4 * len(panels), 4), dpi=80)
    views = []
    for k, motion in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1, projection="3d")
        ax.view_init(elev=15, azim=-60, vertical_axis="y")  # matplotlib's vertical is z unless told
        ax.set_box_aspect((1, 1, 1), zoom=1.45)
        ax.set_axis_off()
        lines = [ax.plot([], [], [], color=c, linewidth=2, marker="o", markersize=2)[0]
                 for c in colors[:len(chains)]]
        head = ax.plot([], [], [], color=colors[2], marker="o", markersize=9)[0]  # joint 15 in both skeletons
        floor = [ax.plot([], [], [], color="0.7", linewidth=0.6)[0] for _ in range(2 * 5)]
        trail = ax.plot([], [], [], color="#8c564b", linewidth=1.2)[0]
        views.append((ax, motion, lines, head, floor, trail, k < len(panels) - 1))
    fig.subplots_adjust(0, 0, 1, 0.95)
    fig.legend(handles=[Line2D([], [], color=c, linewidth=2, label=name) for c, name in legend],
               loc="lower center", ncol=5, fontsize=6, frameon=False, handlelength=1.2, columnspacing=0.8)
    if title:
        fig.suptitle("\n".join(textwrap.wrap(title, 60 * len(panels))), fontsize=8)

    def draw(frame):
        artists = []
        for ax, motion, lines, head, floor, trail, is_source in views:
            t = min(frame, len(motion) - 1)
            cx, cz = motion[t, 0, 0], motion[t, 0, 2]
            ax.set(xlim=(cx - radius, cx + radius), ylim=(0, 2 * radius), zlim=(cz - radius, cz + radius))
            # world grid lines inside the view
            xs, zs = (np.ceil((c - radius) / 0.5) * 0.5 + 0.5 * np.arange(5) for c in (cx, cz))
            for k, (x, z) in enumerate(zip(xs, zs, strict=True)):
                floor[k].set_data_3d([x, x], [0, 0], [cz - radius, cz + radius])
                floor[5 + k].set_data_3d([cx - radius, cx + radius], [0, 0], [z, z])
            for line, chain in zip(lines, chains, strict=True):
                line.set_data_3d(motion[t, chain, 0], motion[t, chain, 1], motion[t, chain, 2])
                if kept is not None:  # a limb is kept when its end joint is (its part's code was forced)
                    is_kept = kept[min(t, len(kept) - 1), chain[-1]]
                    line.set_color("#1f77b4" if is_kept else "0.6" if is_source else "#ff7f0e")
            head.set_data_3d(motion[t, 15:16, 0], motion[t, 15:16, 1], motion[t, 15:16, 2])
            trail.set_data_3d(motion[:t + 1, 0, 0], np.zeros(t + 1), motion[:t + 1, 0, 2])
            artists += lines + floor + [trail, head]
        return artists

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    FuncAnimation(fig, draw, frames=n_frames).save(str(path), writer=PillowWriter(fps=fps))
    plt.close(fig)
