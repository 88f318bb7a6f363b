"""Skeleton, forward kinematics and HumanML3D features (motion.py), against real HumanML3D data and
independent float64 computations written here."""

import numpy as np
import pytest
import torch

import motion


# HumanML3D feature groups for J joints: name -> column slice
def groups(J):
    r, o, v = 4 + (J - 1) * 3, 4 + (J - 1) * 9, 4 + (J - 1) * 9 + J * 3
    return {"root_rot_vel": slice(0, 1), "root_lin_vel": slice(1, 3), "root_y": slice(3, 4),
            "ric": slice(4, r), "rot6d": slice(r, o), "local_vel": slice(o, v), "contacts": slice(v, v + 4)}


def rodrigues64(aa):
    """Axis-angle [..., 3] -> rotation matrices [..., 3, 3], float64: I + sin(t) K + (1 - cos(t)) K^2."""
    aa = np.asarray(aa, np.float64)
    t = np.linalg.norm(aa, axis=-1)[..., None, None]
    k = aa / np.maximum(np.linalg.norm(aa, axis=-1, keepdims=True), 1e-300)
    K = np.zeros(aa.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    K = K - np.swapaxes(K, -1, -2)
    return np.eye(3) + np.sin(t) * K + (1 - np.cos(t)) * K @ K


def fk64(rot, root, offsets, parents):
    """FK by hand: global rotation G_j = G_parent R_j, joint_j = joint_parent + G_parent offset_j."""
    R = rodrigues64(rot)
    T, J = rot.shape[:2]
    G = np.zeros((T, J, 3, 3))
    out = np.zeros((T, J, 3))
    G[:, 0], out[:, 0] = R[:, 0], root
    for j in range(1, J):
        p = parents[j]
        out[:, j] = out[:, p] + G[:, p] @ offsets[j].astype(np.float64)
        G[:, j] = G[:, p] @ R[:, j]
    return out


def random_motion(T, J, seed, amp=0.4):
    """Smooth random joint rotations and a wandering root path, as FK input."""
    g = np.random.default_rng(seed)
    t = np.linspace(0, 1, T)[:, None, None]
    rot = amp * np.sin(2 * np.pi * (g.uniform(0.3, 1.5, (1, J, 3)) * t + g.uniform(0, 1, (1, J, 3))))
    rot[:, 0] = [0, 1, 0] * (2.0 * t[:, 0] + g.uniform(-3, 3))  # yaw only at the root, slowly turning
    root = np.stack([np.cumsum(np.full(T, 0.02)), 0.95 + 0.02 * np.sin(6 * t[:, 0, 0]),
                     np.sin(3 * t[:, 0, 0])], -1)
    return rot.astype(np.float32), root.astype(np.float32)


def test_bone_lengths_match_the_reference_example(fixtures_dir):
    example = np.load(fixtures_dir / "humanml3d" / "skeleton_example_h3d.npy")
    lengths = np.linalg.norm(example[1:] - example[motion.SMPLX52_PARENTS[1:]], axis=-1)
    np.testing.assert_allclose(motion.SMPLX52_BONE_LENGTHS[1:], lengths, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(motion.H3D_OFFSETS, axis=-1), np.r_[0, lengths[:21]], atol=1e-6)


@pytest.mark.parametrize("J", [22, 52])
def test_forward_kinematics_against_hand_composed_rotations(J):
    rot, root = random_motion(30, J, seed=J, amp=1.2)
    offsets = motion.SMPLX52_OFFSETS[:J]
    parents = motion.H3D_PARENTS if J == 22 else motion.SMPLX52_PARENTS
    ref = fk64(rot.astype(np.float64), root, offsets, parents)
    got = motion.forward_kinematics(rot, root, offsets, parents)
    assert isinstance(got, np.ndarray) and got.shape == (30, J, 3)
    np.testing.assert_allclose(got, ref, atol=2e-5)
    got_t = motion.forward_kinematics(torch.from_numpy(rot).double(), torch.from_numpy(root).double(),
                                    offsets, parents)
    assert isinstance(got_t, torch.Tensor)
    np.testing.assert_allclose(got_t.numpy(), ref, atol=1e-7)  # smplx's Rodrigues adds 1e-8 to the angle
    lengths = np.linalg.norm(got[:, 1:] - got[:, parents[1:]], axis=-1)  # constant bone lengths
    np.testing.assert_allclose(lengths, np.broadcast_to(motion.SMPLX52_BONE_LENGTHS[1:J], lengths.shape),
                               atol=1e-5)


def test_rest_pose_stands_upright():
    joints = motion.forward_kinematics(np.zeros((1, 22, 3)), np.zeros((1, 3)))[0]
    assert joints[15, 1] > joints[12, 1] > joints[9, 1] > joints[0, 1] > joints[4, 1] > joints[7, 1]
    assert joints[1, 0] > 0 > joints[2, 0] and joints[16, 0] > 0 > joints[17, 0]  # left is +X
    assert joints[10, 2] > joints[7, 2]  # toes point forward (+Z)


def test_recover_from_ric_reproduces_humanml3d_joints(fixtures_dir):
    feats = np.load(fixtures_dir / "humanml3d" / "new_joint_vecs_012314.npy")
    joints = np.load(fixtures_dir / "humanml3d" / "new_joints_012314.npy")
    got = motion.recover_from_ric(feats, 22)
    assert isinstance(got, np.ndarray) and got.shape == joints.shape
    np.testing.assert_allclose(got, joints, atol=1e-4, rtol=0)
    batched = motion.recover_from_ric(torch.from_numpy(np.stack([feats, feats[::-1].copy()])), 22)
    assert isinstance(batched, torch.Tensor) and batched.shape == (2, *joints.shape)
    np.testing.assert_allclose(batched[0].numpy(), joints, atol=1e-4, rtol=0)


def test_features_from_joints_reproduces_humanml3d_features(fixtures_dir):
    feats = np.load(fixtures_dir / "humanml3d" / "new_joint_vecs_012314.npy")
    joints = np.load(fixtures_dir / "humanml3d" / "new_joints_012314.npy")
    got = motion.features_from_joints(joints)
    assert got.shape == (len(joints) - 1, 263) and got.dtype == np.float32
    ref = feats[:-1]  # T feature rows came from T+1 frames; T joints give T-1 rows
    for name, cols in groups(22).items():
        err = np.abs(got[:, cols] - ref[:, cols]).mean()
        if name == "contacts":
            np.testing.assert_array_equal(got[:, cols], ref[:, cols])
        else:
            assert err < 1e-3, (name, err)


@pytest.mark.parametrize("J", [22, 52])
def test_features_round_trip_is_a_rigid_motion_of_the_input(J):
    rot, root = random_motion(80, J, seed=3)
    parents = motion.H3D_PARENTS if J == 22 else motion.SMPLX52_PARENTS
    joints = motion.forward_kinematics(rot, root, motion.SMPLX52_OFFSETS[:J], parents).astype(np.float64)
    joints[..., 1] += 0.3  # off the floor
    feats = motion.features_from_joints(joints)
    assert feats.shape == (79, 12 * J - 1)
    back = motion.recover_from_ric(feats.astype(np.float64), J)
    # on the floor, root xz at the origin in frame 0, frame 0 faces +Z (hips and shoulders along -X)
    assert abs(back[..., 1].min()) < 1e-5 and np.abs(back[0, 0, [0, 2]]).max() < 1e-6
    across = back[0, 2] - back[0, 1] + back[0, 17] - back[0, 16]
    assert across[0] < 0 and abs(across[2]) < 1e-5 * abs(across[0])
    # same motion up to one yaw rotation + translation (the bones already have the reference lengths)
    src = joints[:79] - joints[0, 0]
    dst = back - back[0, 0]
    h = src[..., [0, 2]].reshape(-1, 2).T @ dst[..., [0, 2]].reshape(-1, 2)  # 2D Procrustes (Kabsch)
    u, _, vt = np.linalg.svd(h)
    R = (u @ vt).T
    np.testing.assert_allclose(src[..., [0, 2]] @ R.T, dst[..., [0, 2]], atol=1e-4)
    np.testing.assert_allclose(src[..., 1], dst[..., 1], atol=1e-4)


@pytest.mark.parametrize("J", [22, 52])
def test_hold_still_holds_the_edge_poses_where_they_are(J):
    """Recovered joints: the clip itself unchanged, every held frame before it the clip's first pose in place,
    every held frame after it one pose that does not move: the last pose, moved on by its own velocities."""
    rot, root = random_motion(30, J, seed=7)
    parents = motion.H3D_PARENTS if J == 22 else motion.SMPLX52_PARENTS
    joints = motion.forward_kinematics(rot, root, motion.SMPLX52_OFFSETS[:J], parents).astype(np.float64)
    feats = torch.from_numpy(motion.features_from_joints(joints))[None]
    held = motion.hold_still(feats, 8, J)
    assert held.shape == (1, 8 + 29 + 8, 12 * J - 1)
    clip, back = motion.recover_from_ric(feats[0], J).numpy(), motion.recover_from_ric(held[0], J).numpy()
    np.testing.assert_allclose(back[8:37], clip, atol=1e-9)
    np.testing.assert_allclose(back[:8], np.broadcast_to(clip[0], (8, J, 3)), atol=1e-9)
    np.testing.assert_allclose(back[38:], np.broadcast_to(back[37], (7, J, 3)), atol=1e-9)
    def distances(pose):  # the pose up to a rigid motion (the last frame's own yaw velocity turns it)
        return np.linalg.norm(pose[:, None] - pose[None], axis=-1)
    np.testing.assert_allclose(distances(back[37]), distances(clip[-1]), atol=1e-6)


def test_features_rescale_other_skeletons_to_the_reference_lengths():
    rot, root = random_motion(50, 22, seed=5)
    joints = motion.forward_kinematics(rot, root, motion.H3D_OFFSETS * 1.3)  # a taller person
    back = motion.recover_from_ric(motion.features_from_joints(joints), 22)
    lengths = np.linalg.norm(back[:, 1:] - back[:, motion.H3D_PARENTS[1:]], axis=-1)
    reference = np.broadcast_to(motion.H3D_BONE_LENGTHS[1:], lengths.shape)
    np.testing.assert_allclose(lengths, reference, atol=1e-4)


def test_recover_from_ric_is_differentiable():
    feats = (torch.randn(1, 3, 263, dtype=torch.float64) * 0.1)[..., :70].requires_grad_(True)  # root + ric
    rest = torch.zeros(1, 3, 263 - 70, dtype=torch.float64)
    recover = lambda f: motion.recover_from_ric(torch.cat([f, rest], -1), 22)[..., [0, 5, 20], :]
    assert torch.autograd.gradcheck(recover, (feats,))


@pytest.mark.parametrize("J", [22, 52])
def test_part_columns_partition_features_by_body_part(J):
    parts = motion.part_columns(J)
    names = ["root", "torso", "left_arm", "right_arm", "left_leg", "right_leg"]
    assert list(parts) == names + (["left_hand", "right_hand"] if J == 52 else [])
    cols = np.concatenate(list(parts.values()))
    np.testing.assert_array_equal(np.sort(cols), np.arange(12 * J - 1))
    # Noise in one part's columns moves exactly that part's joints (ric), and nothing else.
    rot, root = random_motion(20, J, seed=1)
    parents = motion.H3D_PARENTS if J == 22 else motion.SMPLX52_PARENTS
    joints = motion.forward_kinematics(rot, root, motion.SMPLX52_OFFSETS[:J], parents)
    feats = motion.features_from_joints(joints)
    base = motion.recover_from_ric(feats, J)
    members = {"torso": [3, 6, 9, 12, 15], "left_arm": [13, 16, 18, 20], "right_arm": [14, 17, 19, 21],
               "left_leg": [1, 4, 7, 10], "right_leg": [2, 5, 8, 11],
               "left_hand": list(range(22, 37)), "right_hand": list(range(37, 52))}
    for name in names[1:]:
        noisy = feats.copy()
        noisy[:, parts[name]] += 0.1
        moved = np.abs(motion.recover_from_ric(noisy, J) - base).max(axis=(0, 2)) > 1e-6
        np.testing.assert_array_equal(np.flatnonzero(moved), members[name], err_msg=name)
    contacts = groups(J)["contacts"]
    assert set(range(contacts.start, contacts.start + 2)) <= set(parts["left_leg"].tolist())
    assert set(range(contacts.start + 2, contacts.stop)) <= set(parts["right_leg"].tolist())
