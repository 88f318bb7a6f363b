"""The on-disk dataset (write_dataset / MotionData / WindowDataset / TextMotionDataset), bad input, and
the real-data loaders (HumanML3D layout, SMPL-X parameter sequences), on tiny files made here."""

import json

import numpy as np
import pytest
import torch

import data

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
    assert meta["parts"]["left_arm"] == data.part_columns(22)["left_arm"].tolist()


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
    ("load_error", {"error": "corrupt .npy (cannot read array header)", "file": "/src/x/bad.npy"}),
])
def test_bad_clips_are_skipped_and_counted_or_strict_error(tmp_path, reason, bad):
    good = make_clips(4)
    bad_clip = {**clip(99, 50), **bad}
    summary = data.write_dataset(tmp_path / "ds", good[:2] + [bad_clip] + good[2:], name="t", joints_num=22)
    assert summary["written"] == 4 and summary["skipped"][reason] == 1
    assert sum(summary["skipped"].values()) == 1
    assert len(data.MotionData(tmp_path / "ds")) == 4
    with pytest.raises(ValueError, match=str(bad_clip.get("file", "c099"))):
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


def test_window_dataset_crops_real_windows_and_drops_short_clips(tmp_path):
    clips = make_clips(10)  # lengths 40, 47, ..., 103
    data.write_dataset(tmp_path / "ds", clips, name="t", joints_num=22,
                       splits={"train": [c["id"] for c in clips]})
    ds = data.MotionData(tmp_path / "ds")
    windows = data.WindowDataset(ds, "train", window=64)
    assert windows.dropped == 4 and len(windows) == 6  # 40, 47, 54, 61 are shorter than 64
    torch.manual_seed(0)
    starts = set()
    for i in range(len(windows)):
        for _ in range(5):
            w = windows[i]
            assert w.dtype == torch.float32 and w.shape == (64, D)
            src = clips[4 + i]["feats"]
            match = [s for s in range(len(src) - 63) if np.array_equal(src[s:s + 64], w.numpy())]
            assert len(match) == 1
            starts.add((i, match[0]))
    assert len(starts) > 10  # the crops move
    batch = next(iter(torch.utils.data.DataLoader(windows, batch_size=4)))
    assert batch.shape == (4, 64, D)


def test_text_motion_dataset_pairs_captions_with_their_clip(tmp_path):
    clips = [{**c, "captions": [f"first {c['id']}", f"second {c['id']}"]} for c in make_clips(5)]
    data.write_dataset(tmp_path / "ds", clips, name="t", joints_num=22, splits={"train": ["c003", "c001"]})
    pairs = data.TextMotionDataset(data.MotionData(tmp_path / "ds"), "train")
    assert len(pairs) == 2  # in dataset order: c001, c003
    caption, feats = pairs[1]
    assert caption.endswith("c003") and isinstance(feats, torch.Tensor) and feats.dtype == torch.float32
    np.testing.assert_array_equal(feats.numpy(), clips[3]["feats"])
    assert {pairs[0][0] for _ in range(30)} == {"first c001", "second c001"}
