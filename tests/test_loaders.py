"""The on-disk dataset (write_dataset / MotionData), bad input, and
the real-data loaders (support/data_real.py: HumanML3D layout, SMPL-X parameter sequences), on tiny files made
here."""

import json

import numpy as np
import pytest
import torch

import data
from motion import (
    H3D_PARENTS,
    SMPLX52_OFFSETS,
    SMPLX52_PARENTS,
    SMPLX_TO_52,
    features_from_joints,
    forward_kinematics,
    part_columns,
    render_gif,
)
from support.data_real import smplx_joints

D = 263


def clip(i, T, seed=0, **extra):
    g = np.random.default_rng(seed * 1000 + i)
    return {"id": f"c{i:03d}", "feats": g.normal(size=(T, D)).astype(np.float32) * (1 + i % 3),
            "captions": [f"a person does thing {i}", "  "], "parts": {"upper": "u", "lower": "l"},
            "subset": "s" + str(i % 2), **extra}


def make_clips(n=12, seed=0):
    return [clip(i, 40 + 7 * i, seed) for i in range(n)]


def tree_bytes(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_write_and_read_round_trip(tmp_path):
    clips = make_clips()
    splits = {"train": [c["id"] for c in clips[:8]], "val": ["c008", "c009"], "test": ["c010"],
              "ood": ["c011"]}
    summary = data.write_dataset(tmp_path / "ds", iter(clips), name="toy", joints_num=22, splits=splits)
    assert summary["written"] == 12 and sum(summary["skipped"].values()) == 0
    ds = data.MotionData(tmp_path / "ds")
    assert len(ds) == 12 and ds.feat_dim == D and ds.joints_num == 22 and ds.fps == 20
    assert isinstance(ds.motions, np.memmap) and ds.motions.shape == (sum(40 + 7 * i for i in range(12)), D)
    for i, c in enumerate(clips):
        np.testing.assert_array_equal(ds.motion(i), c["feats"])
        assert ds.texts[i] == {"id": c["id"], "captions": [c["captions"][0]], "parts": c["parts"],
                               "subset": c["subset"]}
    assert ds.ids[ds.split("ood")[0]] == "c011" and list(ds.split("train")) == list(range(8))
    # mean / std from the train split only; std averaged over each feature group (HumanML3D's Std.npy)
    train = np.concatenate([c["feats"] for c in clips[:8]]).astype(np.float64)
    np.testing.assert_allclose(ds.mean, train.mean(0), rtol=1e-5, atol=1e-6)
    std = train.std(0)
    for a, b in [(0, 1), (1, 3), (3, 4), (4, 67), (67, 193), (193, 259), (259, 263)]:
        np.testing.assert_allclose(ds.std[a:b], std[a:b].mean(), rtol=1e-5)
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["parts"]["left_arm"] == part_columns(22)["left_arm"].tolist()


def test_default_split_is_deterministic_and_covers_every_clip(tmp_path):
    clips = [clip(i, 40) for i in range(60)]
    data.write_dataset(tmp_path / "a", clips, name="a", joints_num=22)
    ds = data.MotionData(tmp_path / "a")
    parts = [ds.split(s) for s in ("train", "val", "test")]
    assert sorted(np.concatenate(parts).tolist()) == list(range(60)) and len(parts[0]) > 30
    for s, idx in zip(("train", "val", "test"), parts, strict=True):
        assert all(data.default_split(ds.ids[i]) == s for i in idx)


@pytest.mark.parametrize("reason,bad", [
    ("nan_or_inf", {"feats": np.full((50, D), np.nan, np.float32)}),
    ("nan_or_inf", {"feats": np.full((50, D), np.inf, np.float32)}),
    ("too_short", {"feats": np.zeros((39, D), np.float32)}),
    ("wrong_width", {"feats": np.zeros((50, 251), np.float32)}),
    ("bad_caption", {"captions": [" ", ""]}),
    ("bad_caption", {"captions": [b"\xff\xfe caption"]}),
    ("load_error", {"error": "cannot load (ValueError: corrupt header)", "file": "/src/x/bad.npy"}),
])
def test_bad_clips_are_skipped_and_counted_or_strict_error(tmp_path, reason, bad):
    good = make_clips(4)
    files = {"file": "/src/new_joint_vecs/c099.npy", "text_file": "/src/texts/c099.txt"}
    bad_clip = {**clip(99, 50), **files, **bad}
    summary = data.write_dataset(tmp_path / "ds", good[:2] + [bad_clip] + good[2:], name="t", joints_num=22)
    assert summary["written"] == 4 and summary["skipped"][reason] == 1
    assert sum(summary["skipped"].values()) == 1
    assert len(data.MotionData(tmp_path / "ds")) == 4
    where = bad_clip["text_file"] if reason == "bad_caption" else bad_clip["file"]
    with pytest.raises(ValueError, match=f"^{where}: "):
        data.write_dataset(tmp_path / "strict", good[:2] + [bad_clip], name="t", joints_num=22, strict=True)
    assert not (tmp_path / "strict").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_duplicate_ids_are_skipped(tmp_path):
    clips = make_clips(3) + [clip(1, 60)]
    summary = data.write_dataset(tmp_path / "ds", clips, name="t", joints_num=22)
    assert summary["written"] == 3 and summary["skipped"]["duplicate_id"] == 1


def failing(clips, after, exc):
    for i, c in enumerate(clips):
        if i == after:
            raise exc  # the run dies mid-write
        yield c


def test_interrupted_write_leaves_no_dataset_and_keeps_the_previous_one(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        data.write_dataset(tmp_path / "ds", failing(make_clips(5), 4, KeyboardInterrupt()), name="t",
                           joints_num=22)
    assert list(tmp_path.iterdir()) == []
    data.write_dataset(tmp_path / "ds", make_clips(6), name="t", joints_num=22)
    before = tree_bytes(tmp_path / "ds")
    with pytest.raises(OSError, match="disk full"):
        data.write_dataset(tmp_path / "ds", failing(make_clips(8, seed=1), 5, OSError("disk full")),
                           name="t", joints_num=22)
    assert tree_bytes(tmp_path / "ds") == before and [p.name for p in tmp_path.iterdir()] == ["ds"]
    data.write_dataset(tmp_path / "ds", make_clips(3, seed=2), name="t", joints_num=22)  # replaces it
    assert len(data.MotionData(tmp_path / "ds")) == 3 and [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_motion_data_rejects_incomplete_or_inconsistent_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing meta.json"):
        data.MotionData(tmp_path)
    data.write_dataset(tmp_path / "ds", make_clips(4), name="t", joints_num=22)
    np.save(tmp_path / "ds" / "offsets.npy", np.array([0, 40, 87], dtype=np.int64))
    with pytest.raises(ValueError, match="ds: inconsistent dataset: offsets.npy"):
        data.MotionData(tmp_path / "ds")
    data.write_dataset(tmp_path / "ds", make_clips(4), name="t", joints_num=22)
    with pytest.raises(FileNotFoundError, match="ood.txt"):
        data.MotionData(tmp_path / "ds").split("ood")


# ---------------------------------------------------------------------------------------------- loaders
def write_h3d_source(src, feats):
    (src / "new_joint_vecs").mkdir(parents=True)
    (src / "texts").mkdir()
    files = {"012314": feats, "000002": feats[:100], "short": feats[:30], "kit": feats[:, :251],
             "nan": np.where(np.arange(len(feats))[:, None] == 50, np.nan, feats), "nocap": feats,
             "badutf": feats}
    for name, f in files.items():
        np.save(src / "new_joint_vecs" / f"{name}.npy", f.astype(np.float32))
    (src / "new_joint_vecs" / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    for name in files:
        if name != "nocap":
            (src / "texts" / f"{name}.txt").write_text(f"a person walks {name}#a/DET person/NOUN#0.0#0.0\n")
    (src / "texts" / "012314.txt").write_text("a person walks forward.#a/DET#0.0#0.0\n"
                                              "the person turns around#the/DET#2.0#6.5\n"
                                              "someone spins#x#2.0#6.5\n   #blank/X#0#0\n"
                                              "they walk#they/PRON walk/VERB#0#0\n")
    (src / "texts" / "badutf.txt").write_bytes(b"\xff\xfe caption#x#0.0#0.0\n")
    (src / "train.txt").write_text("012314\nkit\n")
    (src / "test.txt").write_text("000002\n")


def test_humanml3d_loader_cuts_time_ranges_counts_bad_files_and_runs_in_parallel(tmp_path, fixtures_dir):
    feats = np.load(fixtures_dir / "humanml3d" / "new_joint_vecs_012314.npy")
    src = tmp_path / "h3d"
    write_h3d_source(src, feats)
    for workers in (1, 2):
        data.main(["--source=humanml3d", f"--src={src}", f"--data_dir={tmp_path / f'out{workers}'}",
                   f"--workers={workers}"])
    for f in ("motions.npy", "texts.jsonl", "train.txt", "test.txt"):
        assert (tmp_path / "out1" / f).read_bytes() == (tmp_path / "out2" / f).read_bytes()
    ds = data.MotionData(tmp_path / "out1")
    summary = ds.meta["summary"]
    assert summary["written"] == 3
    assert summary["skipped"] == {"load_error": 1, "nan_or_inf": 1, "too_short": 1, "too_long": 0,
                                  "wrong_width": 1, "bad_caption": 2, "duplicate_id": 0}
    whole, cut = ds.index("012314"), ds.index("012314@2-6.5")
    np.testing.assert_array_equal(ds.motion(whole), feats)
    np.testing.assert_array_equal(ds.motion(cut), feats[40:130])  # 2.0 s .. 6.5 s at 20 fps
    np.testing.assert_array_equal(ds.motion(ds.index("000002")), feats[:100])
    assert ds.texts[whole]["captions"] == ["a person walks forward.", "they walk"]
    assert ds.texts[cut]["captions"] == ["the person turns around", "someone spins"]
    # the part-of-speech tokens (for the standard evaluator) stay with their captions; the blank one's go
    assert ds.texts[whole]["tokens"] == [["a/DET"], ["they/PRON", "walk/VERB"]]
    assert ds.texts[cut]["tokens"] == [["the/DET"], ["x"]]
    assert sorted(ds.ids[i] for i in ds.split("train")) == ["012314", "012314@2-6.5"]
    assert [ds.ids[i] for i in ds.split("test")] == ["000002"]
    with pytest.raises(ValueError, match=r"texts/badutf\.txt: caption is not valid UTF-8"):
        data.main(["--source=humanml3d", f"--src={src}", f"--data_dir={tmp_path / 'strict'}", "--strict"])
    assert not (tmp_path / "strict").exists()
    (src / "new_joint_vecs" / "badutf.npy").unlink()
    with pytest.raises(ValueError, match=r"new_joint_vecs/corrupt\.npy: cannot load \(ValueError"):
        data.main(["--source=humanml3d", f"--src={src}", f"--data_dir={tmp_path / 'strict'}", "--strict",
                   "--workers=1"])
    assert [p.name for p in tmp_path.iterdir() if "strict" in p.name] == []


def test_humanml3d_test_split_as_guo_et_al_read_it(tmp_path, fixtures_dir):
    """--t2m_test (what eval.py --t2m_checkpoint needs): in the test split a file of 200+ frames is left out
    whole, sub-clips too; whole-clip captions make one entry, each sub-clip caption line one of its own, kept
    at 40 to 199 frames (Guo et al.'s Text2MotionDatasetV2). Train clips are read as always."""
    feats = np.load(fixtures_dir / "humanml3d" / "new_joint_vecs_012314.npy")  # 170 frames
    src = tmp_path / "h3d"
    (src / "new_joint_vecs").mkdir(parents=True)
    (src / "texts").mkdir()
    long = np.concatenate([feats, feats[:40]])  # 210 frames
    for name, f in (("a", feats), ("b", long), ("c", long)):
        np.save(src / "new_joint_vecs" / f"{name}.npy", f)
    lines = ("whole one#w/X#0.0#0.0\nwhole two#w/X#0.0#0.0\nturns#t/X#2.0#6.5\nspins#s/X#2.0#6.5\n"
             "too short#x/X#0.0#1.5\n")
    for name in ("a", "b", "c"):
        (src / "texts" / f"{name}.txt").write_text(lines)
    (src / "train.txt").write_text("c\n")
    (src / "test.txt").write_text("a\nb\n")
    data.main(["--source=humanml3d", f"--src={src}", f"--data_dir={tmp_path / 'ds'}", "--t2m_test",
               "--workers=1"])
    ds = data.MotionData(tmp_path / "ds")
    test = {ds.ids[i]: ds.texts[i]["captions"] for i in ds.split("test")}
    assert test == {"a": ["whole one", "whole two"], "a@2-6.5#0": ["turns"], "a@2-6.5#1": ["spins"]}
    np.testing.assert_array_equal(ds.motion(ds.index("a@2-6.5#1")), feats[40:130])
    assert sorted(ds.ids[i] for i in ds.split("train")) == ["c", "c@2-6.5"]  # 210 frames: kept in train
    assert ds.meta["source"]["t2m_test"] is True
    assert ds.meta["summary"]["skipped"]["too_long"] == 1 and ds.meta["summary"]["skipped"]["too_short"] == 2
    import eval as evaluation  # the standard evaluator refuses a test split composed otherwise
    data.main(["--source=humanml3d", f"--src={src}", f"--data_dir={tmp_path / 'plain'}", "--workers=1"])
    with pytest.raises(ValueError, match=r"plain: its test split is not the one Guo et al.'s .* --t2m_test"):
        evaluation.main([f"--data_dir={tmp_path / 'plain'}", "--t2m_checkpoint=x.tar", "--lm_dir="])


# SMPL-X kinematic tree (55 joints): body 0-21, jaw 22 and eyes 23-24 on the head, hands from the wrists
HAND_PARENTS = [p for wrist, first in ((20, 25), (21, 40)) for k in range(5)
                for p in (wrist, first + 3 * k, first + 3 * k + 1)]
SMPLX_PARENTS = H3D_PARENTS + [15, 15, 15] + HAND_PARENTS


def write_fake_smplx_model(model_dir, V=80, seed=0):
    """A tiny SMPL-X model file with every key smplx 0.1.28 reads: the first 55 vertices sit on a plausible
    skeleton (rest joints of motion.SMPLX52_OFFSETS, jaw/eyes at the head); J_regressor mixes in the rest."""
    g = np.random.default_rng(seed)
    rest52 = forward_kinematics(np.zeros((1, 52, 3)), np.array([[0.0, 0.9, 0.0]]),
                                SMPLX52_OFFSETS, SMPLX52_PARENTS)[0]
    rest55 = np.concatenate([rest52[:22], rest52[[15, 15, 15]] + [[0, 0, 0.05], [0.03, 0.05, 0.08],
                                                                   [-0.03, 0.05, 0.08]], rest52[22:]])
    v_template = np.concatenate([rest55, g.normal(0, 0.3, (V - 55, 3)) + [0, 0.9, 0]])
    J_regressor = np.concatenate([np.eye(55) * 0.9, g.dirichlet(np.ones(V - 55), 55) * 0.1], 1)
    weights = g.dirichlet(np.ones(55), V)
    model_dir.mkdir(parents=True)
    np.savez(model_dir / "SMPLX_NEUTRAL.npz", v_template=v_template, J_regressor=J_regressor,
             shapedirs=g.normal(0, 0.01, (V, 3, 20)), posedirs=g.normal(0, 0.001, (V, 3, 54 * 9)),
             weights=weights, kintree_table=np.stack([[2 ** 32 - 1] + SMPLX_PARENTS[1:], np.arange(55)]),
             f=g.integers(0, V, (40, 3)), hands_componentsl=np.eye(45), hands_componentsr=np.eye(45),
             hands_meanl=g.normal(0, 0.1, 45), hands_meanr=g.normal(0, 0.1, 45),
             lmk_faces_idx=np.zeros(51, np.int64), lmk_bary_coords=np.full((51, 3), 1 / 3))
    return J_regressor @ v_template


def smplx_params(T, seed, fps=None):
    g = np.random.default_rng(seed)
    t = np.arange(T)[:, None] / 30
    wave = lambda n, a: a * np.sin(2 * np.pi * (g.uniform(0.2, 1, n) * t + g.uniform(0, 1, n)))
    params = {"root_orient": wave(3, 0.3), "pose_body": wave(63, 0.4), "pose_hand": wave(90, 0.5),
              "trans": np.c_[0.5 * t[:, 0], 0.05 * np.sin(t[:, 0]), 0.2 * t[:, 0]],
              "betas": g.normal(0, 1, 10)}
    return params | ({"fps": np.array(fps)} if fps else {})


def smplx_layer_joints(model_dir, params):
    """Independent reference: the SMPL-X layer itself (its extra vertex keypoints switched off: the tiny
    mesh lacks those vertex ids), first 55 joints + translation, minus jaw and eyes."""
    import smplx

    class KeepJoints(torch.nn.Module):
        def forward(self, vertices, joints):
            return joints

    T = len(params["root_orient"])
    model = smplx.create(str(model_dir / "SMPLX_NEUTRAL.npz"), model_type="smplx", use_pca=False,
                         flat_hand_mean=True, batch_size=T)
    model.vertex_joint_selector = KeepJoints()
    f = {k: torch.tensor(v, dtype=torch.float32) for k, v in params.items() if k != "fps"}
    out = model(betas=f["betas"].expand(T, 10), global_orient=f["root_orient"], body_pose=f["pose_body"],
                left_hand_pose=f["pose_hand"][:, :45], right_hand_pose=f["pose_hand"][:, 45:],
                transl=f["trans"])
    return out.joints[:, SMPLX_TO_52].detach().numpy().astype(np.float64)


def test_smplx_joints_match_the_smplx_layer_and_the_rest_joints(tmp_path):
    rest55 = write_fake_smplx_model(tmp_path / "models" / "smplx")
    params = smplx_params(12, seed=0)
    np.testing.assert_allclose(smplx_joints(params, tmp_path / "models"),
                               smplx_layer_joints(tmp_path / "models" / "smplx", params), atol=2e-5)
    zero = {k: np.zeros_like(v) for k, v in params.items()}
    np.testing.assert_allclose(smplx_joints(zero, tmp_path / "models"), np.broadcast_to(
        rest55[SMPLX_TO_52], (12, 52, 3)), atol=1e-5)


def test_smplx_loader_resamples_cuts_long_sequences_and_holds_still_poses(tmp_path):
    write_fake_smplx_model(tmp_path / "models" / "smplx")
    src = tmp_path / "mx"
    (src / "motions" / "aist").mkdir(parents=True)
    (src / "texts" / "aist").mkdir(parents=True)
    seqs = {"aist/dance": smplx_params(150, seed=1), "aist/long": smplx_params(600, seed=2, fps=20),
            "aist/still": smplx_params(1, seed=3)}
    for name, params in seqs.items():
        np.savez(src / "motions" / f"{name}.npz", **params)
        (src / "texts" / f"{name}.txt").write_text(f"a person does {name}\nupper: arms swing\nlower: legs")
    (src / "motions" / "aist" / "broken.npz").write_bytes(b"PK not a zip")
    data.main(["--source=smplx", f"--src={src}", f"--smplx_model_dir={tmp_path / 'models'}",
               f"--data_dir={tmp_path / 'out'}", "--workers=1"])
    ds = data.MotionData(tmp_path / "out")
    assert ds.joints_num == 52 and ds.feat_dim == 623
    assert ds.meta["summary"]["skipped"]["load_error"] == 1
    # 150 frames at 30 fps -> 100 frames at 20 fps (every 1.5th frame) -> 99 feature rows
    joints = smplx_layer_joints(tmp_path / "models" / "smplx", seqs["aist/dance"])
    ref = features_from_joints(joints[np.round(np.arange(0, 150, 1.5)).astype(int)])
    np.testing.assert_allclose(ds.motion(ds.index("aist/dance")), ref, atol=2e-4)
    assert ds.texts[ds.index("aist/dance")] == {"id": "aist/dance", "captions": ["a person does aist/dance"],
                                                "parts": {"upper": "arms swing", "lower": "legs"},
                                                "subset": "aist"}
    pieces = [i for i in ds.ids if i.startswith("aist/long@")]
    lengths = [len(ds.motion(ds.index(i))) for i in pieces]
    assert pieces == [f"aist/long@{k}" for k in range(4)] and sum(lengths) == 599 and max(lengths) <= 196
    split = {s: {ds.ids[i] for i in ds.split(s)} for s in ("train", "val", "test")}
    assert sum(set(pieces) <= ids for ids in split.values()) == 1  # all pieces in one split
    still = ds.motion(ds.index("aist/still"))
    assert still.shape == (64, 623) and (still[:, 619:] == 1).all()  # 64 frames, feet planted
    # nothing moves: root and joint velocities are zero (row 0's yaw step is HumanML3D's IK facing quirk)
    assert np.abs(still[1:, 0]).max() < 1e-6 and np.abs(still[:, 1:3]).max() < 1e-6
    assert np.abs(still[:, 4 + 51 * 9:619]).max() < 1e-6


def test_render_gif_draws_an_upright_figure(tmp_path, fixtures_dir):
    from PIL import Image
    joints = np.load(fixtures_dir / "humanml3d" / "new_joints_012314.npy")[:60:6]
    render_gif(joints, tmp_path / "clip.gif", title="a person walks")
    gif = Image.open(tmp_path / "clip.gif")
    assert gif.n_frames == 10
    rgb = np.asarray(gif.convert("RGB")).astype(int)
    red = (np.abs(rgb - [0xD6, 0x27, 0x28]).sum(-1) < 60).nonzero()[0]  # right leg
    dark = (np.abs(rgb - [0x33, 0x33, 0x33]).sum(-1) < 40).nonzero()[0]  # spine and head
    assert len(red) > 20 and len(dark) > 20 and red.mean() > dark.mean() + 20  # legs below the head (+Y up)


def test_show_renders_clips_by_index_and_id(tmp_path, fixtures_dir):
    feats = np.load(fixtures_dir / "humanml3d" / "new_joint_vecs_012314.npy")[:40]
    data.write_dataset(tmp_path / "ds", [{"id": "walk/1", "feats": feats, "captions": ["walks"]},
                                         {"id": "b", "feats": feats[::-1].copy(), "captions": ["b"]}],
                       name="ds", joints_num=22, splits={"train": ["walk/1", "b"]})
    data.main([f"--data_dir={tmp_path / 'ds'}", "--show=walk/1,1", f"--gif_dir={tmp_path / 'gifs'}"])
    assert sorted(p.name for p in (tmp_path / "gifs").iterdir()) == ["ds_b.gif", "ds_walk_1.gif"]
    with pytest.raises(ValueError, match=r"ds: no clip with id or index '2' \(2 clips\)"):
        data.main([f"--data_dir={tmp_path / 'ds'}", "--show=2"])
