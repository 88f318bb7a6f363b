"""support/bvh.py's to_bvh: the file gives the source joints back, read by a BVH reader of this test's own
(written from the format's definition, not from the writer) and by Blender's own importer; bad input is one
error and no file."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import motion
import synth
from support.bvh import to_bvh

ROOT = Path(__file__).resolve().parents[1]


def read_bvh(path):
    """A BVH file -> (nodes, frame time, motion [frames, channels]). Nodes in file order, parents first: dicts
    of name (None for an End Site), parent (index, -1 for the root), offset [3], channels (names)."""
    tokens = Path(path).read_text().split()
    assert tokens[0] == "HIERARCHY", tokens[:3]
    nodes, stack, i = [], [], 1
    while tokens[i] != "MOTION":
        word = tokens[i]
        if word in ("ROOT", "JOINT", "End"):  # End Site: a node without channels
            nodes.append({"name": None if word == "End" else tokens[i + 1],
                          "parent": stack[-1] if stack else -1, "offset": None, "channels": []})
            i += 2
        elif word == "{":
            stack.append(len(nodes) - 1)
            i += 1
        elif word == "}":
            stack.pop()
            i += 1
        elif word == "OFFSET":
            nodes[stack[-1]]["offset"] = np.array(tokens[i + 1:i + 4], dtype=np.float64)
            i += 4
        elif word == "CHANNELS":
            count = int(tokens[i + 1])
            nodes[stack[-1]]["channels"] = tokens[i + 2:i + 2 + count]
            i += 2 + count
        else:
            raise AssertionError(f"unexpected {word!r} in the hierarchy")
    assert not stack and tokens[i + 1] == "Frames:" and tokens[i + 3:i + 5] == ["Frame", "Time:"]
    frames, frame_time = int(tokens[i + 2]), float(tokens[i + 5])
    values = np.array(tokens[i + 6:], dtype=np.float64)
    return nodes, frame_time, values.reshape(frames, -1)


def bvh_joints(nodes, values):
    """Forward kinematics by the format's definition: a node's transform relative to its parent is a
    translation by OFFSET (+ its position channels), then its rotation channels in the order listed (the
    first is the outermost, R = R1 R2 R3), angles in degrees. -> {name: positions [frames, 3]}."""
    frames = len(values)
    col, world_pos, world_rot, out = 0, [], [], {}
    for node in nodes:
        translation, rot = np.tile(node["offset"], (frames, 1)), np.tile(np.eye(3), (frames, 1, 1))
        for channel in node["channels"]:
            axis = "XYZ".index(channel[0])
            if channel.endswith("position"):
                translation[:, axis] += values[:, col]
            else:
                rot = rot @ _axis_rotation(axis, np.radians(values[:, col]))
            col += 1
        if node["parent"] < 0:
            pos, glob = translation, rot
        else:
            parent_rot = world_rot[node["parent"]]
            pos = world_pos[node["parent"]] + (parent_rot @ translation[..., None])[..., 0]
            glob = parent_rot @ rot
        world_pos.append(pos)
        world_rot.append(glob)
        if node["name"]:
            out[node["name"]] = pos
    assert col == values.shape[1]
    return out


def _axis_rotation(axis, angle):
    c, s = np.cos(angle), np.sin(angle)
    m = np.tile(np.eye(3), (len(angle), 1, 1))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]  # the plane the rotation turns
    m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = c, -s, s, c
    return m


def errors_mm(by_name, joints):
    """Per joint and frame distance [T, J] in millimetres between named positions and the source joints."""
    got = np.stack([by_name[name] for name in motion.JOINT_NAMES[:joints.shape[1]]], 1)
    return 1000 * np.linalg.norm(got - joints, axis=-1)


def round_trip_mm(joints, path):
    to_bvh(joints, path)
    nodes, frame_time, values = read_bvh(path)
    assert frame_time == pytest.approx(1 / motion.FPS, rel=1e-6) and len(values) == len(joints)
    return errors_mm(bvh_joints(nodes, values), np.asarray(joints, dtype=np.float64))


def hands_motion(rest, frames=60, seed=0):
    """A 52-joint motion on the rest skeleton `rest` [52, 3] (its bones, with their real layout around the
    pelvis, spine3 and wrists): smooth random joint rotations, a drifting root, through forward_kinematics."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, frames)[:, None, None]
    freq, phase = rng.uniform(0.3, 1.5, (1, 52, 3)), rng.uniform(0, 1, (1, 52, 3))
    rotations = 0.6 * np.sin(2 * np.pi * (freq * t + phase))
    root = np.stack([0.8 * t[:, 0, 0], np.full(frames, 0.9), 1.5 * t[:, 0, 0]], -1)
    offsets = rest - rest[motion.SMPLX52_PARENTS]
    offsets[0] = 0
    return motion.forward_kinematics(rotations, root, offsets, motion.SMPLX52_PARENTS)


def test_file_layout(tmp_path):
    joints = synth.generate_clip(3, 0)["joints"]
    to_bvh(joints, tmp_path / "a.bvh", fps=30)
    nodes, frame_time, values = read_bvh(tmp_path / "a.bvh")
    names = [n["name"] for n in nodes if n["name"]]
    assert names[:4] == ["Pelvis", "L_Hip", "L_Knee", "L_Ankle"]
    assert sorted(names) == sorted(motion.JOINT_NAMES[:22])
    rotations = ["Zrotation", "Yrotation", "Xrotation"]
    assert nodes[0]["channels"] == ["Xposition", "Yposition", "Zposition", *rotations]
    assert all(n["channels"] == rotations for n in nodes[1:] if n["name"])
    assert sum(n["name"] is None for n in nodes) == 5  # End Sites: feet, head, wrists
    assert frame_time == pytest.approx(1 / 30, rel=1e-6) and values.shape == (len(joints), 3 + 22 * 3)
    # offsets: the bones' rest directions at their lengths (synth's skeleton is motion.H3D_OFFSETS)
    by_name = {n["name"]: n["offset"] for n in nodes if n["name"]}
    np.testing.assert_allclose(by_name["L_Knee"], motion.H3D_OFFSETS[4], atol=1e-5)
    np.testing.assert_allclose(by_name["Head"], motion.H3D_OFFSETS[15], atol=1e-5)


def test_synth_ground_truth_round_trip(tmp_path):
    for i in range(6):
        joints = synth.generate_clip(i, 0)["joints"]
        err = round_trip_mm(joints, tmp_path / f"{i}.bvh")
        print(f"synth clip {i}: mean {err.mean():.4f} mm, max {err.max():.4f} mm")
        assert err.mean() <= 5 and err.max() <= 5


def test_humanml3d_round_trip(tmp_path, fixtures_dir):
    joints = np.load(fixtures_dir / "humanml3d" / "new_joints_012314.npy")
    err = round_trip_mm(joints, tmp_path / "h3d.bvh")
    print(f"HumanML3D 012314: mean {err.mean():.4f} mm, max {err.max():.4f} mm")
    assert err.mean() <= 5 and err.max() <= 5
    rest = np.load(fixtures_dir / "humanml3d" / "skeleton_example_h3d.npy")  # the real hands' layout
    err = round_trip_mm(hands_motion(rest), tmp_path / "hands.bvh")
    print(f"52 joints (HumanML3D 000021's skeleton): mean {err.mean():.4f} mm, max {err.max():.4f} mm")
    assert err.mean() <= 5 and err.max() <= 5


def test_decoded_motion_round_trip(tmp_path, codes_dir):
    """A decoded motion's bones stretch from frame to frame; the file keeps each bone's direction and its mean
    length, so its joints differ by about the length changes (measured and printed, not bounded by 5 mm)."""
    import torch

    import data
    import tokenizer
    from support.codes import Codes

    tok, ds = tokenizer.load(codes_dir / "tok" / "t"), data.MotionData(codes_dir / "ds")
    feats = tok.decode(torch.as_tensor(Codes(codes_dir / "ds", "t", ds).clip(0))[None])[0].numpy()
    joints = motion.recover_from_ric(feats, ds.joints_num).astype(np.float64)
    to_bvh(joints, tmp_path / "decoded.bvh")
    nodes, _, values = read_bvh(tmp_path / "decoded.bvh")
    by_name = bvh_joints(nodes, values)
    got = np.stack([by_name[name] for name in motion.JOINT_NAMES[:22]], 1)
    parents = motion.H3D_PARENTS
    bones, got_bones = (j[:, 1:] - j[:, parents[1:]] for j in (joints, got))
    lengths = np.linalg.norm(bones, axis=-1)
    only_child = [c - 1 for c in range(1, 22) if parents.count(parents[c]) == 1]  # its parent's one child
    cos = (bones * got_bones).sum(-1) / lengths / np.linalg.norm(got_bones, axis=-1)
    assert cos[:, only_child].min() > 1 - 1e-9  # the same direction
    np.testing.assert_allclose(np.linalg.norm(got_bones, axis=-1)[:, only_child],
                               np.broadcast_to(lengths.mean(0)[only_child], (len(joints), len(only_child))),
                               atol=1e-5)  # the mean length
    err = errors_mm(by_name, joints)
    print(f"decoded: bone lengths vary by {1000 * np.abs(lengths - lengths.mean(0)).mean():.2f} mm "
          f"(mean |l - mean l|); joint error mean {err.mean():.2f} mm, max {err.max():.2f} mm")


def test_data_show_writes_a_bvh_beside_the_gif(tmp_path):
    import data

    clips = [synth.generate_clip(i, 0) for i in range(6)]
    splits = {"train": [c["id"] for c in clips]}
    data.write_dataset(tmp_path / "ds", clips, name="ds", joints_num=22, splits=splits)

    def run(*args):
        return subprocess.run([sys.executable, "data.py", f"--data_dir={tmp_path / 'ds'}",
                               f"--gif_dir={tmp_path / 'gifs'}", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)

    proc = run("--show=000005", "--bvh")  # 43 frames: a short GIF to draw
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "gifs").iterdir()) == ["ds_000005.bvh", "ds_000005.gif"]
    joints = motion.recover_from_ric(np.array(data.MotionData(tmp_path / "ds").motion(5)), 22)
    nodes, _, values = read_bvh(tmp_path / "gifs" / "ds_000005.bvh")
    assert errors_mm(bvh_joints(nodes, values), joints.astype(np.float64)).max() <= 5
    proc = run("--bvh")
    assert proc.returncode == 1 and proc.stderr.strip() == ("data.py: --bvh writes the clips that --show "
                                                             "renders: give --show=ids too")


@pytest.mark.parametrize("bad, problem", [
    (lambda j: np.where(np.arange(22)[None, :, None] == 5, np.nan, j), "joint R_Knee is not finite"),
    (lambda j: j[:, :21], "needs joints [frames, 22 or 52, 3], got shape (41, 21, 3)"),
    (lambda j: j[:1], "needs at least 2 frames, got 1"),
    (lambda j: np.where(np.arange(41)[:, None, None] == 2, j[:, [0, 1, 2, 3, 1, *range(5, 22)]], j),
     "no rotation fits joint L_Hip at frame 2 (a bone of zero length"),  # the left knee on the hip
])
def test_bad_input_is_one_error_and_no_file(tmp_path, bad, problem):
    joints = synth.generate_clip(0, 0)["joints"][:41]
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        to_bvh(bad(joints), tmp_path / "bad.bvh")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        to_bvh(joints, tmp_path / "missing" / "a.bvh")
    assert list(tmp_path.iterdir()) == []


# Blender's own importer, in background mode. Debian's Blender 3.4 importer opens the file with mode 'rU',
# which its Python (3.11) refuses: its module gets an `open` that drops the 'U'.
BLENDER_SCRIPT = """
import builtins, json, sys
import bpy
import io_anim_bvh.import_bvh as import_bvh
import_bvh.open = lambda file, mode="r", *a, **k: builtins.open(file, mode.replace("U", ""), *a, **k)
out, *files = sys.argv[sys.argv.index("--") + 1:]
result = {}
for path in files:
    bpy.ops.import_anim.bvh(filepath=path, axis_forward="-Z", axis_up="Y", rotate_mode="NATIVE")
    armature = bpy.context.object
    start, end = (round(f) for f in armature.animation_data.action.frame_range)
    frames = []
    for frame in range(start, end + 1):
        bpy.context.scene.frame_set(frame)
        frames.append({b.name: list(armature.matrix_world @ b.head) for b in armature.pose.bones})
    result[path] = frames
json.dump(result, open(out, "w"))
"""


def blender_joints(files, tmp_path):
    """{file: {name: positions [frames, 3]}} from Blender's import, turned back to the file's axes: with
    axis_forward=-Z, axis_up=Y the importer takes the file's (x, y, z) to Blender's (x, -z, y)."""
    script, out = tmp_path / "import_bvh.py", tmp_path / "blender.json"
    script.write_text(BLENDER_SCRIPT)
    proc = subprocess.run(["blender", "-b", "--factory-startup", "--python", str(script), "--", str(out),
                           *map(str, files)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = {}
    for path, frames in json.loads(out.read_text()).items():
        xyz = {name: np.array([f[name] for f in frames]) for name in frames[0]}
        result[path] = {name: p[:, [0, 2, 1]] * [1, 1, -1] for name, p in xyz.items()}
    return result


@pytest.mark.skipif(shutil.which("blender") is None,
                    reason="blender is not on PATH (apt-get install blender; .ci/run installs it)")
def test_blender_imports_the_same_motion(tmp_path, request):
    sources = {"synth": synth.generate_clip(7, 0)["joints"]}
    if (ROOT.parent / "shared" / "fixtures").is_dir():
        fixtures = request.getfixturevalue("fixtures_dir") / "humanml3d"
        sources["humanml3d"] = np.load(fixtures / "new_joints_012314.npy")
        sources["hands"] = hands_motion(np.load(fixtures / "skeleton_example_h3d.npy"))
    for name, joints in sources.items():
        to_bvh(joints, tmp_path / f"{name}.bvh")
    imported = blender_joints([tmp_path / f"{name}.bvh" for name in sources], tmp_path)
    for name, joints in sources.items():
        by_name = imported[str(tmp_path / f"{name}.bvh")]
        assert len(next(iter(by_name.values()))) == len(joints), name  # every frame, no more
        err = errors_mm(by_name, np.asarray(joints, dtype=np.float64))
        print(f"Blender, {name}: mean {err.mean():.4f} mm, max {err.max():.4f} mm")
        assert err.mean() <= 5 and err.max() <= 5, name
