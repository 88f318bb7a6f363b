"""The motion tokenizer (paper §4.2, Table 6): the 2D lookup-free quantizer (2D-LFQ), which turns 4 frames of
motion into P codes, one per body part, and back; its training, test metrics, and a dataset's codes.
--kind=lfq1d is Table 11's 1D-LFQ, --kind=vq|rvq Figures 4/5's baselines (support/tokenizer_baselines.py).

    python tokenizer.py                                   # 2D-LFQ on data/synth -> out/tokenizer/default/
    python tokenizer.py --config=configs/tokenizer_paper.json          # the paper's settings (a GPU)
    torchrun --nproc_per_node 8 tokenizer.py --config=...              # DDP (nccl on CUDA, gloo on CPU)
    python tokenizer.py --resume                          # continue out/tokenizer/<run> from its checkpoint
    python tokenizer.py --encode                          # every clip's codes -> data/synth/tokens/default/

API: load(run_dir) -> Tokenizer: .encode(raw feats [B, T, D]) -> codes [B, T/4, P] int64 in [0, K),
.decode(codes) -> raw feats; P codes per step: the body parts (2D-LFQ), 1 (VQ, 1D-LFQ), RVQ's layers."""

import math
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import (
    atomic_write,
    cli,
    cosine_lr,
    distributed_setup,
    distributed_teardown,
    parse_args,
    pick_device,
    progress_bar,
    read_run_file,
    resume_settings,
    save_weights,
    write_json,
)
from data import MotionData
from kernels.lfq import LFQ
from motion import FRAMES_PER_CODE, hold_still, mpjpe, part_columns, recover_from_ric, root_aligned
from support.codes import Codes, code_counts, code_stats, write_codes
from support.tokenizer_baselines import BASELINES

# config: plain values, overridden by --config=file.json, then by --key=value
CONFIG = dict(
    kind="lfq2d",  # lfq2d (the paper's 2D-LFQ) | lfq1d | vq | rvq
    data_dir="data/synth", out_dir="out/tokenizer",
    run_name="default",  # weights -> out_dir/run_name/, codes -> data_dir/tokens/run_name/
    codebook_size=1024,  # K; LFQ: d = log2 K bits per code (the paper: 16384)
    width=64, depth=2,  # conv channels; residual blocks per temporal resolution (dilations 1, 3, 9, ...)
    vq_dim=64, ema_decay=0.99,  # VQ/RVQ: code vector size (the paper: 512), codebook EMA
    n_quantizers=4, quantizer_dropout=0.2,  # RVQ: layers; chance that a step uses only the first n ~ U{1..L}
    window=48,  # training crop in frames, a multiple of 4 (the paper's T2M-GPT setting: 64)
    batch_size=32,  # global batch, split over DDP ranks (the paper: 256)
    max_iters=3000,  # the paper: 300k (why 3000 here: docs/tokenizer.md)
    lr=1e-3, warmup_iters=100, weight_decay=0.0, grad_clip=1.0,  # AdamW (the paper: lr 1e-4)
    lr_decay_iters=0,  # cosine decay to lr/10 over this many steps (0: max_iters)
    recon_weight=1.0,  # smooth-L1 on normalised features ...
    root_weight=5.0,  # ... with the root's 4 columns (yaw, xz velocity, height) weighted this much more
    joint_weight=1.0,  # L1 on root-aligned joint positions (metres) through motion.recover_from_ric
    traj_weight=1.0,  # L1 on the root's path (metres, integrated from the root velocities over the crop)
    commit_weight=0.25,  # ||z - sg(q)||^2
    entropy_weight=0.1,  # LFQ: E_n[H(p_n)] - H(E_n[p_n]) (Yu et al. 2023), its weight goes linearly ...
    entropy_weight_end=0.1, entropy_anneal_iters=0,  # ... to this one over this many steps (0: constant)
    entropy_temperature=0.1,  # logits 2 z.c / T: at |z| ~ 1, T = 0.01 saturates the softmax (no gradient)
    seed=1337, device="auto", ckpt_every=500, log_every=50,  # the bar's utilisation: over log_every batches
    eval_clips=0,  # test clips for metrics.json (0: the whole test split)
    resume=False, encode=False,  # modes: continue a run, write a dataset's codes
)
ARCH_KEYS = ("kind", "codebook_size", "width", "depth", "vq_dim", "n_quantizers", "joints_num", "feat_dim")
ALPHA = FRAMES_PER_CODE  # temporal downsampling (§4.2, α = 4): two stride-2 convolutions


# model: the conv encoder/decoder of T2M-GPT, generalised from Conv1d over time to Conv2d over (time, part)
def conv(dims, c_in, c_out, k, stride=1, dilation=1):
    """Kernel k over time; in 2D also 3 (1 when k == 1) over the P parts, stride 1: neighbouring parts mix."""
    pad = (dilation * (k - 1) + 1 - stride) // 2  # keeps T (stride 1) or halves it (k = 4, stride 2)
    if dims == 1:
        return nn.Conv1d(c_in, c_out, k, stride, pad, dilation)
    kp = 3 if k > 1 else 1
    return nn.Conv2d(c_in, c_out, (k, kp), (stride, 1), (pad, kp // 2), (dilation, 1))


class ResBlock(nn.Module):
    def __init__(self, dims, width, dilation):
        super().__init__()
        self.conv1, self.conv2 = conv(dims, width, width, 3, dilation=dilation), conv(dims, width, width, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


def encoder(dims, c_in, c_out, width, depth):  # T -> T/2 -> T/4
    layers = [conv(dims, c_in, width, 3), nn.ReLU()]
    for _ in range(2):
        layers += [conv(dims, width, width, 4, 2), *(ResBlock(dims, width, 3**i) for i in range(depth))]
    return nn.Sequential(*layers, conv(dims, width, c_out, 3))


def decoder(dims, c_in, c_out, width, depth):  # T/4 -> T/2 -> T, mirroring the encoder
    layers = [conv(dims, c_in, width, 3), nn.ReLU()]
    for _ in range(2):
        layers += [*(ResBlock(dims, width, 3**i) for i in reversed(range(depth))),
                   nn.Upsample(scale_factor=2 if dims == 1 else (2, 1)), conv(dims, width, width, 3)]
    return nn.Sequential(*layers, conv(dims, width, width, 3), nn.ReLU(), conv(dims, width, c_out, 3))


class Tokenizer(nn.Module):
    """Features [B, T, D] <-> codes [B, T/4, P]; the weights carry their normalisation (mean, std buffers)."""

    def __init__(self, cfg, mean=None, std=None):
        super().__init__()
        kind, K, width, depth, D = (cfg[k] for k in ("kind", "codebook_size", "width", "depth", "feat_dim"))
        self.kind, self.K, self.joints_num, self.feat_dim = kind, K, cfg["joints_num"], D
        self.register_buffer("mean", torch.zeros(D) if mean is None else torch.as_tensor(mean).float())
        self.register_buffer("std", torch.ones(D) if std is None else torch.as_tensor(std).float())
        if kind not in ("lfq2d", "lfq1d", *BASELINES):
            raise ValueError(f"unknown tokenizer kind {kind!r}: expected lfq2d, lfq1d, vq or rvq")
        # its interface (all kinds): forward(z, step) -> (q, codes, losses), nearest, lookup, .dim, .n_layers
        self.quantizer = BASELINES[kind](cfg) if kind in BASELINES else LFQ(K, cfg["entropy_temperature"])
        if cfg.get("hold_edges") is False:  # a switch deleted once decided
            raise ValueError("hold_edges=False: an ablation deleted after commit a4c2a31 (its figures: "
                             "docs/results/choices_held_edges.json); train a new run")
        # frames a code sees beyond its own 4 (the encoder's receptive radius: convs of 3, two strided convs
        # of 4, residual convs of 3 dilated 3^i at 1/2 and 1/4 rate), rounded up to whole steps: see encode()
        self.hold = ALPHA * math.ceil((9.5 + 3 * (3**depth - 1)) / ALPHA)
        self.by_part = kind == "lfq2d"  # 2D-LFQ; the other kinds are 1D, over time alone
        if self.by_part:
            # §4.2: the clip is an image T x D, its feature columns grouped by body part (motion.part_columns:
            # root, torso, arms, legs [, hands]). The parts differ in width (root 7 columns, a leg 50) and in
            # meaning, so each gets its own linear lift to `width` channels (and projection back): a regular
            # [width, T, P] grid on which Conv2d downsamples time by α = 4 and keeps the P part slots.
            parts = part_columns(self.joints_num)
            order = torch.cat([torch.as_tensor(c, dtype=torch.long) for c in parts.values()])
            if sorted(order.tolist()) != list(range(D)):
                raise ValueError(f"motion.part_columns({self.joints_num}) does not cover {D} columns once")
            self.part_names, self.part_sizes = list(parts), [len(c) for c in parts.values()]
            self.register_buffer("part_order", order, persistent=False)  # columns regrouped part by part
            self.register_buffer("unorder", torch.argsort(order), persistent=False)  # and back
            self.lift = nn.ModuleList(nn.Linear(n, width) for n in self.part_sizes)
            self.unlift = nn.ModuleList(nn.Linear(width, n) for n in self.part_sizes)
        self.P = len(self.part_names) if self.by_part else self.quantizer.n_layers
        dims, channels = (2, width) if self.by_part else (1, D)  # 2D: Conv2d over (time, part), lifted parts
        self.encoder = encoder(dims, channels, self.quantizer.dim, width, depth)
        self.decoder = decoder(dims, self.quantizer.dim, channels, width, depth)

    def normalise(self, feats):
        return (feats - self.mean) / self.std

    def denormalise(self, x):
        return x * self.std + self.mean

    def _encode_z(self, x):  # normalised [B, T, D] -> z [B, T/4, S, code_dim], S = P in 2D-LFQ, else 1
        if self.by_part:
            parts = x[..., self.part_order].split(self.part_sizes, -1)
            h = torch.stack([lift(p) for lift, p in zip(self.lift, parts, strict=True)], -2)  # [B, T, P, C]
            # [B, C, T, P] as a view of [B, T, P, C]: channels-last memory, in which oneDNN's convolutions
            # (forward and backward) run about twice as fast on a CPU as in [B, C, T, P] order; the
            # layout carries through the network (convolutions, ReLU, upsampling keep it)
            return self.encoder(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # -> [B, T/4, P, d]
        return self.encoder(x.transpose(1, 2)).transpose(1, 2).unsqueeze(2)

    def _decode_q(self, q):  # [B, T/4, S, code_dim] -> normalised [B, T, D]
        if self.by_part:
            h = self.decoder(q.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # channels-last -> [B, T, P, C]
            # unbind, not h[..., i] per part: its backward is one stack, not P zero-filled copies of h summed
            parts = h.unbind(2)
            return torch.cat([u(p) for u, p in zip(self.unlift, parts, strict=True)], -1)[..., self.unorder]
        return self.decoder(q.squeeze(2).transpose(1, 2)).transpose(1, 2)

    def forward(self, x, step=0):  # normalised -> (reconstruction, codes, auxiliary losses), in training
        q, codes, aux = self.quantizer(self._encode_z(x), step)
        return self._decode_q(q), codes, aux

    # A clip's ends (docs/tokenizer.md): zero padding made the last codes say "the clip ends here". Held edge
    # poses (and edge codes) make a code mean the same motion wherever it sits: the LM stops with </mot>.
    @torch.no_grad()
    def encode(self, feats):
        """Raw features [B, T, D] (T a multiple of 4) -> codes [B, T/4, P] int64 in [0, K): the clip's edge
        poses held still for self.hold frames on each side, those steps' codes dropped."""
        B, T, D = feats.shape if feats.ndim == 3 else (0, 0, 0)
        if D != self.feat_dim:
            raise ValueError(f"tokenizer.encode: expected features [B, T, {self.feat_dim}], "
                             f"got {tuple(feats.shape)}")
        if T % ALPHA or not T:
            raise ValueError(f"tokenizer.encode: T = {T} frames is not a positive multiple of {ALPHA} (the "
                             f"temporal downsampling α); crop the clip to {T // ALPHA * ALPHA} frames")
        held = hold_still(feats.to(self.mean.device).float(), self.hold, self.joints_num)
        codes = self.quantizer.nearest(self._encode_z(self.normalise(held)))
        return codes[:, self.hold // ALPHA: codes.shape[1] - self.hold // ALPHA]

    @torch.no_grad()
    def decode(self, codes):  # codes [B, T', P] -> raw features [B, 4 T', D]
        if codes.ndim != 3 or codes.shape[-1] != self.P or codes.is_floating_point() or not codes.shape[1]:
            raise ValueError(f"tokenizer.decode: expected integer codes [B, T' >= 1, {self.P}], "
                             f"got {codes.dtype} {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.K):
            raise ValueError(f"tokenizer.decode: codes must lie in [0, {self.K}), "
                             f"got [{codes.min()}, {codes.max()}]")
        steps, n = codes.shape[1], self.hold // ALPHA
        codes = codes.to(self.mean.device).long()
        held = torch.cat([codes[:, :1].expand(-1, n, -1), codes, codes[:, -1:].expand(-1, n, -1)], 1)
        feats = self.denormalise(self._decode_q(self.quantizer.lookup(held)))
        return feats[:, self.hold:self.hold + ALPHA * steps]


# losses and metrics
def compute_losses(model, core, feats, step, cfg):
    """Raw features [B, T, D] -> (losses, codes). §4.2: reconstruction, a joint-position term (the
    perceptual loss's role), commitment, the LFQ entropy penalty; no GAN loss (dropped for stability).
    `model` is `core` or its DDP wrapper."""
    x = core.normalise(feats)
    recon, codes, aux = model(x, step)
    world, world_hat = (recover_from_ric(f, core.joints_num) for f in (feats, core.denormalise(recon)))
    joints, joints_hat = root_aligned(world), root_aligned(world_hat)
    # The root's path is integrated from 3 of D features and root-aligned joints do not see it: a sideways
    # drift decoded as standing still costs almost nothing. Weighting the root columns (as Guo et al.'s
    # feat_bias = 5) and comparing the integrated path (a velocity error grows into a distance) make it count.
    columns = torch.ones(x.shape[-1], device=x.device)
    columns[:4] = cfg["root_weight"]  # HumanML3D layout: root yaw velocity, xz velocity, height first
    out = {"recon": (F.smooth_l1_loss(recon, x, reduction="none") * columns).mean(),
           "joints": F.l1_loss(joints_hat, joints),
           "traj": F.l1_loss(world_hat[..., 0, :], world[..., 0, :]), **aux}
    anneal = min(1.0, step / cfg["entropy_anneal_iters"]) if cfg["entropy_anneal_iters"] else 0.0
    entropy_weight = cfg["entropy_weight"] + (cfg["entropy_weight_end"] - cfg["entropy_weight"]) * anneal
    out["loss"] = (cfg["recon_weight"] * out["recon"] + cfg["joint_weight"] * out["joints"]
                   + cfg["traj_weight"] * out["traj"]
                   + cfg["commit_weight"] * out["commit"] + entropy_weight * out.get("entropy", 0))
    out["mpjpe"] = (joints_hat - joints).detach().norm(dim=-1).mean() * 1000  # mm
    return out, codes


@torch.no_grad()
def evaluate(model, data, split="test", max_clips=0, clips=None, keep=None):
    """Whole clips through encode/decode: root-aligned MPJPE in mm (joints via recover_from_ric), MAE on
    normalised features, codebook utilisation and perplexity of the codes. `clips` (default: the split's
    first max_clips); `keep`, a list, receives each batch's (feats, reconstruction) (eval.py's FID)."""
    clips = data.split(split)[: max_clips or None] if clips is None else clips
    if not len(clips):
        raise ValueError(f"{data.root}: split {split!r} is empty")
    err = frames = mae = 0.0
    counts = torch.zeros(model.quantizer.n_layers, model.K)
    for _, feats in data.whole_clips(clips, ALPHA):
        feats = feats.to(model.mean.device)
        codes = model.encode(feats)
        recon = model.decode(codes)
        joints, joints_hat = (recover_from_ric(f, model.joints_num) for f in (feats, recon))
        err += float(mpjpe(joints_hat, joints)) * feats.shape[0] * feats.shape[1]  # mm, weighted by frames
        mae += float((model.normalise(recon) - model.normalise(feats)).abs().mean(-1).sum())
        frames += feats.shape[0] * feats.shape[1]
        counts += code_counts(codes, model.K, model.quantizer.n_layers)
        if keep is not None:
            keep.append((feats, recon))
    return {"split": split, "clips": len(clips), "mpjpe_mm": err / frames, "feature_mae": mae / frames,
            **code_stats(counts)}


# training: one process, or DDP under torchrun
def train(cfg, progress=True):
    """Train into out_dir/run/; returns {"model", "history" (per-step losses), "metrics" (test split)}."""
    cfg = dict(cfg)
    if cfg["window"] % ALPHA:
        raise ValueError(f"window = {cfg['window']} frames is not a multiple of {ALPHA} (the downsampling α)")
    rank, world, device = distributed_setup(cfg["device"])
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if cfg["batch_size"] % world:
        raise ValueError(f"batch_size = {cfg['batch_size']} does not split over {world} ranks")
    run_dir, data = Path(cfg["out_dir"]) / cfg["run_name"], MotionData(cfg["data_dir"])
    cfg.update(joints_num=data.joints_num, feat_dim=data.feat_dim)
    clips = data.split("train")
    clips = clips[np.diff(data.offsets)[clips] >= cfg["window"]]
    if not len(clips):
        raise ValueError(f"{cfg['data_dir']}: no train clip has the window's {cfg['window']} frames")

    torch.manual_seed(cfg["seed"])
    model = Tokenizer(cfg, data.mean, data.std).to(device)
    # fused: one kernel for all parameters' updates (the same update; on a CPU 2 ms a step instead of 5-8)
    opt = torch.optim.AdamW(model.parameters(), cfg["lr"], (0.9, 0.99), weight_decay=cfg["weight_decay"],
                            fused=True)
    start, history, ckpt = 0, [], run_dir / "train_state.pt"
    if cfg["resume"]:  # cfg (with this dataset's joints_num and feat_dim) must build the checkpoint's model
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt}: no checkpoint to resume from")
        resume_settings(run_dir, cfg, cfg, ARCH_KEYS)  # one clear error where the model would differ
        state = read_run_file(ckpt, "cannot resume from it; start over without --resume")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start, history = state["step"], state["history"]
    elif rank == 0:  # a new run
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", {k: cfg[k] for k in cfg if k not in ("resume", "encode")})
    # no buffer sync per forward under DDP: the VQ buffers are kept in sync by the quantizer itself
    ddp = model if world == 1 else nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False)
    usage = torch.zeros(model.quantizer.n_layers, model.K)
    n_params = sum(p.numel() for p in model.parameters())
    t0 = time.time()
    model.train()
    bar = progress_bar(range(start, cfg["max_iters"]), initial=start, total=cfg["max_iters"],
               desc=f"{cfg['kind']} K={model.K} {n_params / 1e6:.2f}M", disable=rank > 0 or not progress)
    for step in bar:
        # a function of (seed, step, rank) only: the same batches after --resume, others on each DDP rank
        idx, feats = data.random_windows(clips, cfg["window"], cfg["batch_size"] // world,
                                         np.random.default_rng([cfg["seed"], step, rank]))
        out, codes = train_step(ddp, model, opt, data, idx, feats, step, cfg)
        history.append({k: v.item() for k, v in out.items()})
        usage += code_counts(codes, model.K, model.quantizer.n_layers)
        if (step + 1) % cfg["log_every"] == 0 or step + 1 == cfg["max_iters"]:
            last = history[-1]  # the last training batch's, not the test metrics (those come at the end)
            bar.set_postfix(batch_loss=f"{last['loss']:.4f}", batch_mpjpe=f"{last['mpjpe']:.1f}mm",
                            util=f"{code_stats(usage)['utilisation']:.3f}", refresh=False)
            usage.zero_()
        if rank == 0 and ((step + 1) % cfg["ckpt_every"] == 0 or step + 1 == cfg["max_iters"]):
            # model.safetensors (what load() reads) and train_state.pt (what --resume reads), each atomic
            state = {"model": save_weights(run_dir / "model.safetensors", model.state_dict()),
                     "optimizer": opt.state_dict(), "step": step + 1, "history": history,
                     "rng": torch.get_rng_state()}
            atomic_write(ckpt, partial(torch.save, state))

    metrics = None
    if rank == 0:
        model.eval()
        metrics = evaluate(model, data, "test", cfg["eval_clips"])
        metrics.update(kind=cfg["kind"], K=model.K, P=model.P, params=n_params, steps=cfg["max_iters"],
                       seconds=round(time.time() - t0, 1))
        write_json(run_dir / "metrics.json", metrics)
        if progress:  # the test split's figures (the bar showed training batches')
            print(f"\n{run_dir}: {metrics['clips']} {metrics['split']} clips\n| metric | value |\n|---|---|")
            print("\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                            for k, v in metrics.items() if k not in ("split", "clips")))
    del ddp  # DDP holds the process group: free it first so that the group is torn down cleanly
    distributed_teardown()
    return {"model": model, "history": history, "metrics": metrics}


def train_step(ddp, model, opt, data, idx, feats, step, cfg):
    """One AdamW step on raw features [B, window, D] cropped from data's clips idx -> (losses, codes).
    `ddp` is `model` or its DDP wrapper."""
    for group in opt.param_groups:  # warm-up, then cosine from lr to lr/10
        group["lr"] = cosine_lr(step, cfg["lr"], cfg["lr"] / 10, cfg["warmup_iters"],
                                cfg["lr_decay_iters"] or cfg["max_iters"])
    out, codes = compute_losses(ddp, model, feats.to(model.mean.device), step, cfg)
    if not torch.isfinite(out["loss"]):  # stop before NaN reaches the weights (and any checkpoint)
        bad = ~feats.isfinite().flatten(1).all(1).numpy()
        ids = sorted({data.ids[i] for i in idx[bad if bad.any() else slice(None)]})
        raise ValueError(f"{cfg['data_dir']}: step {step}: loss {out['loss'].item()} on clips {ids} (NaN "
                         "or inf in their features, or the training diverged); stopped before the update")
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    if cfg["grad_clip"]:
        nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
    opt.step()
    return out, codes


# trained runs, and a dataset's codes (train.py reads these and never runs the encoder)
def load(run_dir, device="cpu"):
    """The trained tokenizer in out/tokenizer/<run>/ (config.json + model.safetensors), in eval mode."""
    run_dir = Path(run_dir)
    for path in (run_dir / "config.json", run_dir / "model.safetensors"):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing, so {run_dir} is not a trained tokenizer run (train "
                                    f"one with `python tokenizer.py --run_name={run_dir.name}`)")
    remake = f"rerun python tokenizer.py --run_name={run_dir.name}"
    model = Tokenizer(read_run_file(run_dir / "config.json", remake))
    model.load_state_dict(read_run_file(run_dir / "model.safetensors", remake))
    return model.to(device).eval()


def check_codes_match(tokenizer_run, K, P, what):
    """`what`'s K and P must be those of tokenizer_run, which decodes them (from its config.json alone)."""
    remake = f"rerun python tokenizer.py --run_name={Path(tokenizer_run).name}"
    run = Tokenizer(read_run_file(Path(tokenizer_run) / "config.json", remake))
    if (K, P) != (run.K, run.P):
        raise ValueError(f"{what}: K = {K}, P = {P}, but the tokenizer run {tokenizer_run} has K = {run.K}, "
                         f"P = {run.P}")


def load_codes(data_dir, run, data):
    """Codes(data_dir, run, data), checked to have the K and P of the tokenizer run that will decode them."""
    codes = Codes(data_dir, run, data)
    try:
        check_codes_match(codes.meta["tokenizer"], codes.K, codes.P, codes.root / "meta.json")
    except ValueError as e:
        raise ValueError(f"{e}; {codes.remake}") from None
    return codes


def encode_dataset(run_dir, data_dir, device="cpu"):
    """Every clip's codes -> data_dir/tokens/<run>/ (support/codes.py: the folder's format); -> its path."""
    model, data = load(run_dir, device), MotionData(data_dir)
    if data.feat_dim != model.feat_dim:
        raise ValueError(f"{data_dir}: its features are {data.feat_dim} wide ({data.joints_num} joints), the "
                         f"tokenizer's are {model.feat_dim} wide; train a tokenizer on this dataset")
    return write_codes(model, run_dir, data, data_dir, ALPHA, device)


def main(argv):
    overrides = parse_args(argv, CONFIG, "tokenizer.py")
    cfg = {**CONFIG, **overrides}
    run_dir = Path(cfg["out_dir"]) / cfg["run_name"]
    if cfg["encode"]:
        try:
            print(f"wrote {encode_dataset(run_dir, cfg['data_dir'], pick_device(cfg['device']))}")
        except KeyboardInterrupt as e:
            raise KeyboardInterrupt(f"{Path(cfg['data_dir'], 'tokens', run_dir.name)} left as it was") from e
        return
    cfg = resume_settings(run_dir, CONFIG, overrides, ARCH_KEYS) if cfg["resume"] else cfg
    try:
        train(cfg)
    except KeyboardInterrupt as e:
        raise KeyboardInterrupt(f"{run_dir} keeps its checkpoints (--resume continues the last)") from e


if __name__ == "__main__":
    cli(main, "tokenizer.py")
