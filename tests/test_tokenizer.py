"""tokenizer.py: shapes and code ranges against float64 references, learning (beats the mean; the entropy
penalty raises utilisation), checkpoint round trip, exact resume, clear errors, encode mode, and
experiments/sweep.py."""

import json
import math

import numpy as np
import pytest
import torch

import data
import motion
import synth
import tokenizer as tk
from common import parse_args
from experiments import sweep
from support.codes import code_counts, code_stats

TINY = dict(tk.CONFIG, width=16, depth=1, vq_dim=8, codebook_size=64, window=32, batch_size=8, lr=2e-3,
            warmup_iters=10, log_every=10, ckpt_every=1000, device="cpu")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """48 synthetic clips: 36 train, 12 test."""
    root = tmp_path_factory.mktemp("tok") / "tiny"
    clips = [synth.generate_clip(i, 0) for i in range(48)]
    ids = [c["id"] for c in clips]
    data.write_dataset(root, clips, name="tiny", joints_num=22, splits={"train": ids[:36], "test": ids[36:]})
    return root


def tiny_cfg(dataset, tmp_path, **kw):
    return dict(TINY, data_dir=str(dataset), out_dir=str(tmp_path), **kw)


def raw_feats(dataset, split, n=4, T=32):
    d = data.MotionData(dataset)
    return torch.stack([torch.from_numpy(np.array(d.motion(i)[:T])) for i in d.split(split)[:n]])


@pytest.mark.parametrize("kind,joints", [("lfq2d", 22), ("lfq2d", 52), ("lfq1d", 22), ("vq", 22),
                                         ("rvq", 22)])
def test_shapes_and_code_ranges(kind, joints):
    D = 12 * joints - 1
    cfg = dict(TINY, kind=kind, joints_num=joints, feat_dim=D)
    torch.manual_seed(0)
    model = tk.Tokenizer(cfg, np.zeros(D), np.ones(D))
    feats = torch.randn(3, 24, D)
    model.train()(model.normalise(feats), 0)  # VQ: the first training batch initialises the codebook
    model.eval()
    codes = model.encode(feats)
    P = {"lfq2d": 8 if joints == 52 else 6, "rvq": TINY["n_quantizers"]}.get(kind, 1)
    assert model.P == P and codes.shape == (3, 6, P) and codes.dtype == torch.int64
    assert 0 <= codes.min() and codes.max() < model.K == 64
    assert model.decode(codes).shape == (3, 24, D)
    if kind.startswith("lfq"):  # the encoder's last conv set to output z = b everywhere: codes are Index(b)
        with torch.no_grad():
            model.encoder[-1].weight.zero_()
            model.encoder[-1].bias.copy_(torch.tensor([0.5, -1.0, 2.0, -0.1, 0.3, -2.0]))
        # by hand, eq. (2) with dimension 0 the least significant bit: signs + - + - + - -> 1 + 4 + 16 = 21
        assert (model.encode(feats) == 21).all()
    else:
        # nearest codebook vector, layer after layer on the residual (RVQ), in float64; the encoder sees the
        # clip with its edge poses held (test_codes_do_not_depend_on_where_the_clip_ends)
        steps = model.hold // 4
        z = model._encode_z(model.normalise(motion.hold_still(feats, model.hold, joints)))[:, steps:-steps]
        z = z.double()
        residual, layers = z[:, :, 0], model.quantizer.layers if kind == "rvq" else [model.quantizer]
        for i, layer in enumerate(layers):  # (the codebook starts with repeated rows: ties are fine)
            book = layer.codebook.double()
            dist2 = ((residual[..., None, :] - book) ** 2).sum(-1)
            chosen = dist2.gather(-1, codes[..., i : i + 1])[..., 0]
            torch.testing.assert_close(chosen, dist2.min(-1).values, rtol=1e-6, atol=1e-6)
            residual = residual - book[codes[..., i]]


@pytest.mark.parametrize("kind,depth", [("lfq2d", 1), ("lfq2d", 2), ("lfq2d", 3), ("vq", 2)])
def test_codes_do_not_depend_on_where_the_clip_ends(dataset, kind, depth):
    """A code means the same motion wherever it sits: the codes of a clip's steps are the same when the clip
    goes on with its last pose held, or starts with its first pose held (with zero padding at the encoder's
    edges, 95-100% of the last 5 steps' codes changed). Likewise the frames decoded from a run of codes stay
    the same when its last code is repeated. Random weights at each depth: the hold must cover the
    receptive field the depth gives."""
    cfg = dict(TINY, kind=kind, depth=depth, joints_num=22, feat_dim=263)
    torch.manual_seed(depth)
    model = tk.Tokenizer(cfg, np.zeros(263), np.ones(263))
    feats = raw_feats(dataset, "test", n=3, T=40)
    model.train()(model.normalise(feats), 0)  # VQ: the first batch initialises the codebook
    model.eval()
    codes = model.encode(feats)
    later = motion.hold_still(feats, 24, 22)[:, 24:]  # 24 more frames of the last pose
    earlier = motion.hold_still(feats, 24, 22)[:, :-24]  # 24 frames of the first pose before
    assert torch.equal(model.encode(later)[:, :10], codes)
    assert torch.equal(model.encode(earlier)[:, 6:], codes)
    decoded = model.decode(codes)
    repeated = model.decode(torch.cat([codes, codes[:, -1:].expand(-1, 5, -1)], 1))[:, :40]
    torch.testing.assert_close(repeated, decoded, rtol=1e-5, atol=1e-5)


def test_a_run_with_the_deleted_hold_edges_switch_fails_in_one_line():
    """hold_edges=False was an ablation, decided and deleted: a run folder that asks for it is refused by
    name, not silently loaded as held."""
    cfg = dict(TINY, kind="lfq2d", depth=2, joints_num=22, feat_dim=263, hold_edges=False)
    with pytest.raises(ValueError, match="hold_edges=False: an ablation deleted after commit a4c2a31"):
        tk.Tokenizer(cfg, np.zeros(263), np.ones(263))


def mean_baseline(dataset):
    """MPJPE (mm) and normalised-feature MAE of predicting the train mean for every test frame, float64."""
    d = data.MotionData(dataset)
    err, mae, frames = 0.0, 0.0, 0
    for i in d.split("test"):
        x = np.asarray(d.motion(i), np.float64)
        x = x[: len(x) // 4 * 4]
        guess = np.broadcast_to(d.mean.astype(np.float64), x.shape)
        j, jg = motion.recover_from_ric(x, 22), motion.recover_from_ric(guess.copy(), 22)
        err += np.linalg.norm((j - j[:, :1]) - (jg - jg[:, :1]), axis=-1).mean(-1).sum()
        mae += np.abs((x - d.mean) / d.std).mean(-1).sum()
        frames += len(x)
    return 1000 * err / frames, mae / frames


def test_learns_and_entropy_raises_utilisation(dataset, tmp_path):
    cfg = tiny_cfg(dataset, tmp_path, width=32, max_iters=450)
    with_entropy = tk.train(dict(cfg, run_name="entropy"), progress=False)["metrics"]
    without = tk.train(dict(cfg, run_name="none", entropy_weight=0.0, entropy_weight_end=0.0),
                       progress=False)["metrics"]
    mpjpe_mean, mae_mean = mean_baseline(dataset)
    assert with_entropy["mpjpe_mm"] < 0.8 * mpjpe_mean and with_entropy["feature_mae"] < 0.8 * mae_mean
    assert with_entropy["utilisation"] > without["utilisation"] + 0.1


@pytest.mark.parametrize("kind", ["lfq2d", "vq"])
def test_checkpoint_round_trip(dataset, tmp_path, kind):
    result = tk.train(tiny_cfg(dataset, tmp_path, kind=kind, max_iters=20), progress=False)
    loaded = tk.load(tmp_path / "default")
    feats = raw_feats(dataset, "test")
    codes = result["model"].encode(feats)
    assert torch.equal(loaded.encode(feats), codes)
    assert torch.equal(loaded.decode(codes), result["model"].decode(codes))
    saved = json.loads((tmp_path / "default" / "metrics.json").read_text())
    again = tk.evaluate(loaded, data.MotionData(dataset))
    assert {k: saved[k] for k in again} == again


@pytest.mark.parametrize("kind", ["rvq", "lfq2d"])
def test_resume_continues_the_same_loss_curve(dataset, tmp_path, kind):
    cfg = tiny_cfg(dataset, tmp_path, kind=kind, lr_decay_iters=16, warmup_iters=4)
    straight = tk.train(dict(cfg, run_name="straight", max_iters=16), progress=False)["history"]
    tk.train(dict(cfg, run_name="split", max_iters=8), progress=False)
    resumed = tk.train(dict(cfg, run_name="split", max_iters=16, resume=True), progress=False)["history"]
    assert len(straight) == len(resumed) == 16
    assert [h["loss"] for h in resumed] == [h["loss"] for h in straight]


def test_bad_settings_give_one_clear_error(dataset, tmp_path):
    cfg = tiny_cfg(dataset, tmp_path, max_iters=2)
    model = tk.train(cfg, progress=False)["model"]
    with pytest.raises(ValueError, match="T = 18 frames is not a positive multiple of 4"):
        model.encode(torch.zeros(1, 18, 263))
    with pytest.raises(ValueError, match="power of two.*K = 1000"):
        tk.Tokenizer(dict(cfg, codebook_size=1000, joints_num=22, feat_dim=263))
    with pytest.raises(ValueError, match="window = 30 frames is not a multiple of 4"):
        tk.train(dict(cfg, window=30), progress=False)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 64\)"):
        model.decode(torch.full((1, 2, 6), 64))
    wide = tmp_path / "wide"  # a 52-joint dataset: 623-wide features
    rng = np.random.default_rng(0)
    data.write_dataset(wide, [{"id": f"c{i}", "feats": rng.normal(size=(44, 623)).astype(np.float32),
                               "captions": ["a person moves"]} for i in range(3)], name="wide", joints_num=52,
                       splits={"train": ["c0", "c1"], "test": ["c2"]})
    with pytest.raises(ValueError, match=f"{wide}: its features are 623 wide .* tokenizer's are 263 wide"):
        tk.encode_dataset(tmp_path / "default", wide)
    with pytest.raises(ValueError, match="cannot resume.*feat_dim"):
        tk.train(dict(cfg, data_dir=str(wide), resume=True, max_iters=4), progress=False)
    run = tmp_path / "default"
    with pytest.raises(ValueError, match="codes.npy: K = 128, P = 6, but the tokenizer run .* has K = 64"):
        tk.check_codes_match(run, 128, 6, "codes.npy")
    tk.check_codes_match(run, 64, 6, "codes.npy")  # the run's own shape passes
    with pytest.raises(ValueError, match="unknown tokenizer kind 'pq'"):
        tk.Tokenizer(dict(cfg, kind="pq", joints_num=22, feat_dim=263))


def test_encode_mode_writes_every_clips_codes(dataset, tmp_path):
    tk.train(tiny_cfg(dataset, tmp_path, max_iters=5), progress=False)
    out = tk.encode_dataset(tmp_path / "default", dataset)
    assert out == dataset / "tokens" / "default"
    model, d = tk.load(tmp_path / "default"), data.MotionData(dataset)
    codes, offsets = np.load(out / "codes.npy", mmap_mode="r"), np.load(out / "offsets.npy")
    meta = json.loads((out / "meta.json").read_text())
    assert codes.dtype == np.uint16 and offsets.dtype == np.int64 and codes.shape == (offsets[-1], 6)
    lengths = np.diff(d.offsets)
    assert (lengths % 4).any(), "the tiny dataset should hold clips whose length is not a multiple of 4"
    assert meta["cropped"]["clips"] == (lengths % 4 > 0).sum()
    assert meta["cropped"]["frames_dropped"] == (lengths % 4).sum()
    assert (meta["K"], meta["P"], meta["dataset"]) == (64, 6, "tiny")
    for i in range(len(d)):
        T = lengths[i] // 4 * 4
        expect = model.encode(torch.from_numpy(np.array(d.motion(i)[:T]))[None])[0].numpy()
        np.testing.assert_array_equal(codes[offsets[i] : offsets[i + 1]], expect)


def test_sweep_collects_every_run_and_reuses_finished_ones(dataset, tmp_path):
    cfg = tiny_cfg(dataset, tmp_path, kinds="vq,lfq2d", log2k="4,5", iters=3, run_name="sweep")
    results = sweep.sweep(cfg)
    runs = [tmp_path / "sweep" / f"{k}_K{K}" for k in ("vq", "lfq2d") for K in (16, 32)]
    assert [(r["kind"], r["K"]) for r in results] == [("vq", 16), ("vq", 32), ("lfq2d", 16), ("lfq2d", 32)]
    assert results == [json.loads((r / "metrics.json").read_text()) for r in runs]
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["results"] == results
    assert (tmp_path / "sweep" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    stamps = [(r / "metrics.json").stat().st_mtime_ns for r in runs]
    assert sweep.sweep(cfg) == results
    assert [(r / "metrics.json").stat().st_mtime_ns for r in runs] == stamps
    # a run made by other code (its config.json's code hash differs) is trained again, the rest reused
    config = runs[0] / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "code": "made-by-other-code"}))
    sweep.sweep(cfg)
    after = [(r / "metrics.json").stat().st_mtime_ns for r in runs]
    assert after[0] != stamps[0] and after[1:] == stamps[1:]


def test_command_line_overrides(tmp_path):
    config = tmp_path / "paper.json"
    config.write_text(json.dumps({"codebook_size": 16384, "batch_size": 256}))
    argv = [f"--config={config}", "--batch_size=4", "--resume", "--lr=0.5"]
    got = parse_args(argv, tk.CONFIG, "tokenizer.py")
    assert got == {"codebook_size": 16384, "batch_size": 4, "resume": True, "lr": 0.5}
    with pytest.raises(SystemExit, match="unknown argument '--nope=1'"):
        parse_args(["--nope=1"], tk.CONFIG, "tokenizer.py")


def test_code_stats_on_hand_counts():
    """Two of four codes used twice each: utilisation 1/2; a uniform histogram over 2 codes: perplexity 2."""
    stats = code_stats(torch.tensor([[2.0, 2.0, 0.0, 0.0]]))
    assert stats["utilisation"] == 0.5 and stats["perplexity"] == pytest.approx(2.0, rel=1e-6)
    stats = code_stats(torch.tensor([[3.0, 1.0, 0.0, 0.0]]))  # exp(-(3/4 ln 3/4 + 1/4 ln 1/4))
    assert stats["perplexity"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    # codes 0, 1, 1, 3 of K = 8 (one row for all part slots): 3 of 8 used
    assert code_stats(code_counts(torch.tensor([[0, 1], [1, 3]]), 8, 1))["utilisation"] == 3 / 8


def test_root_weight_and_path_terms_against_hand_formulas(fixtures_dir):
    """compute_losses on a body gliding sideways at v m/frame, reconstructed by a stand-in model as the same
    clip with no sideways root velocity: the reconstruction term is the smooth-L1 of that one column times
    root_weight over all T x D entries, and the path term is the L1 between the root paths x_t = v t and
    x_t = 0, mean over the T - 1 feature frames and 3 axes: v (T - 2) / 6."""
    rest = np.load(fixtures_dir / "humanml3d" / "skeleton_example_h3d.npy")[:22]
    v, T = 0.02, 33
    left = rest[1] - rest[2]  # right hip -> left hip, in the floor plane: the body's left
    left = np.array([left[0], 0.0, left[2]]) / np.hypot(left[0], left[2])
    joints = rest[None] + np.arange(T)[:, None, None] * v * left
    feats = torch.tensor(motion.features_from_joints(joints), dtype=torch.float32)[None]  # [1, T-1, D]
    feats[..., 0] = 0  # no yaw (frame 0 carries HumanML3D's facing quirk): the path is a straight line
    mean, std = torch.zeros(feats.shape[-1]), torch.full((feats.shape[-1],), 0.5)

    class StandIn:
        joints_num = 22

        def normalise(self, f):
            return (f - mean) / std

        def denormalise(self, x):
            return x * std + mean

        def __call__(self, x, step):
            recon = x.clone()
            recon[..., 1] = 0.0  # root velocity, sideways component (normalised; the mean is 0)
            return recon, None, {"commit": torch.tensor(0.0)}

    cfg = dict(tk.CONFIG, root_weight=5.0, traj_weight=1.0)
    out, _ = tk.compute_losses(StandIn(), StandIn(), feats, 0, cfg)
    d = (feats[0, :, 1] / 0.5).double().abs()
    sl1 = torch.where(d < 1, 0.5 * d ** 2, d - 0.5)
    side = feats[0, :, 1].mean().item()
    assert abs(side - v) < 1e-3 and feats[0, :, 1].std() < 1e-6  # the column is the sideways velocity
    assert out["recon"].item() == pytest.approx(5.0 * sl1.sum().item() / feats[0].numel(), rel=1e-5)
    assert out["traj"].item() == pytest.approx(side * (T - 2) / 6, rel=1e-4)  # x_t = side·t, t = 0 .. T-2
    assert out["joints"].item() < 1e-4  # root-aligned joints do not see the path at all
