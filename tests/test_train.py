"""train.py: the global-batch loss (accumulation and ranks give one big batch's gradient), exact resume, a
kill at any moment (even mid-checkpoint) loses nothing older, the validation measures against hand
computations, clear one-line errors, and real `torchrun --nproc_per_node 2` runs (DDP, FSDP2) against one
process."""

import contextlib
import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import types
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import data
import model
import tokenizer
import train
from support import train_data as lm_data
from support import train_scale as scale
from support.codes import Codes

ROOT = Path(__file__).resolve().parents[1]
TINY_LM = dict(train.CONFIG, batch_size=8, max_iters=4, warmup_iters=2, eval_interval=4, eval_iters=1,
               lr=1e-3, length_iters=20, device="cpu")


def lm_cfg(codes_dir, out, **kw):
    return dict(TINY_LM, data_dir=str(codes_dir / "ds"), tokenizer_run="t", out_dir=str(out), **kw)


def weights(run_dir):
    return load_file(str(Path(run_dir) / "model" / "model.safetensors"))


def assert_close_weights(a, b, atol):
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= atol, f"largest parameter difference {worst:.2e} > {atol:.0e}"
    return worst


def test_accumulation_gives_one_big_batch(codes_dir, tmp_path):
    """The loss is divided by the global count of counted tokens, so 4 micro-batches of 2 give the parameters
    of one batch of 8 (a per-micro-batch mean would weight short sequences' tokens more)."""
    one = train.train(lm_cfg(codes_dir, tmp_path, run_name="one"), progress=False)
    acc = train.train(lm_cfg(codes_dir, tmp_path, run_name="acc", gradient_accumulation_steps=4),
                      progress=False)
    np.testing.assert_allclose([h["motion"] for h in acc["history"]], [h["motion"] for h in one["history"]],
                               rtol=1e-5)
    assert_close_weights(weights(tmp_path / "one"), weights(tmp_path / "acc"), atol=2e-5)
    # recomputing the activations in the backward (large models) changes nothing but memory
    train.train(lm_cfg(codes_dir, tmp_path, run_name="ckpt", activation_checkpointing=True), progress=False)
    assert_close_weights(weights(tmp_path / "one"), weights(tmp_path / "ckpt"), atol=1e-6)


def test_resume_follows_the_uninterrupted_curve(codes_dir, tmp_path):
    full = train.train(lm_cfg(codes_dir, tmp_path, run_name="full", max_iters=6, eval_interval=3),
                       progress=False)
    train.train(lm_cfg(codes_dir, tmp_path, run_name="half", max_iters=3, eval_interval=3), progress=False)
    # a last/ as written before it kept the log and the config: it resumes from model/'s config, the log
    # rebuilt from its evaluations
    progress = json.loads((tmp_path / "half" / "last" / "progress.json").read_text())
    del progress["log"]
    (tmp_path / "half" / "last" / "progress.json").write_text(json.dumps(progress))
    (tmp_path / "half" / "last" / "config.json").unlink()
    resumed = train.train(lm_cfg(codes_dir, tmp_path, run_name="half", max_iters=6, eval_interval=3,
                                 resume=True), progress=False)
    lines = [json.loads(s) for s in (tmp_path / "half" / "metrics.jsonl").read_text().splitlines()]
    assert [(line["step"], "eval" in line) for line in lines] == [(3, True), (6, False), (6, True)]
    assert [h["motion"] for h in resumed["history"]] == [h["motion"] for h in full["history"]]
    assert [h["text"] for h in resumed["history"]] == [h["text"] for h in full["history"]]
    assert_close_weights(weights(tmp_path / "full"), weights(tmp_path / "half"), atol=0)


def test_metrics_match_hand_computations(codes_dir, tmp_path):
    run = train.train(lm_cfg(codes_dir, tmp_path, run_name="m"), progress=False)
    out, history = run["metrics"], run["history"]
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert saved["val_motion_loss"] == pytest.approx(out["val_motion_loss"])
    # unigram entropy per slot, from the raw codes of the val clips
    ds = data.MotionData(codes_dir / "ds")
    codes = np.load(codes_dir / "ds" / "tokens" / "t" / "codes.npy")
    offsets = np.load(codes_dir / "ds" / "tokens" / "t" / "offsets.npy")
    val = np.concatenate([codes[offsets[i]:offsets[i + 1]] for i in ds.split("val")]).astype(np.int64)
    for p in range(val.shape[1]):
        _, counts = np.unique(val[:, p], return_counts=True)
        q = counts / counts.sum()
        assert out["unigram_motion_entropy_per_slot"][p] == pytest.approx(-(q * np.log(q)).sum(), rel=1e-9)
    # an untrained-ish model: its loss is near log of the vocabulary, far above the unigram entropy
    assert out["val_motion_loss"] > out["unigram_motion_entropy"]
    assert (tmp_path / "m" / "loss_curve.png").stat().st_size > 1000
    # metrics.jsonl: a line per log step (here only the last, step 4: log_interval is 10) and per evaluation
    lines = [json.loads(line) for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [4, 4] and lines[1]["eval"] and "eval" not in lines[0]
    assert lines[0]["motion_loss"] == pytest.approx(history[-1]["motion"], abs=1e-4)
    assert lines[0]["lr"] == history[-1]["lr"] and lines[0]["tokens_per_s"] > 0
    assert lines[0]["peak_memory_gib"] > 0.05 and lines[0]["mfu"] is None  # a CPU has no listed peak


@pytest.mark.parametrize("n", [2, 3, 7, 100])
def test_derangement_moves_every_clip(n):
    sigma = train.derangement(n, seed=n)
    assert sorted(sigma) == list(range(n)) and not (sigma == np.arange(n)).any()


def test_batches_bucket_by_length_and_cover_the_epoch():
    lengths = np.random.default_rng(0).integers(20, 300, size=1000).astype(np.int64)
    batches = lm_data.epoch_batches(lengths.tobytes(), 16, 0, 0)
    assert batches.shape == (62, 16) and len(np.unique(batches)) == 62 * 16
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[np.random.default_rng(i).choice(1000, 16)]) for i in range(62)])
    assert spread < 0.2 * random_spread, (spread, random_spread)


def test_kill_during_checkpoint_keeps_the_previous_one(codes_dir, tmp_path):
    """SIGKILL the moment a checkpoint's temp folder appears (mid-write); the previous last/ still resumes."""
    cfg = lm_cfg(codes_dir, tmp_path, run_name="k", max_iters=400, eval_interval=2)
    args = [f"--{k}={v}" for k, v in cfg.items() if k in ("data_dir", "tokenizer_run", "out_dir", "run_name",
                                                          "max_iters", "eval_interval", "eval_iters",
                                                          "batch_size", "device")]
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    run, deadline, writes = tmp_path / "k", time.time() + 120, 0
    try:
        while time.time() < deadline:
            temps = list(run.glob(".last.tmp-*")) if (run / "last").is_dir() else []
            if temps and (temps[0] / "state").exists():
                writes += 1
                if writes == 3:  # a checkpoint is half written and an older one exists
                    proc.send_signal(signal.SIGKILL)
                    break
                while temps[0].exists() and time.time() < deadline:
                    time.sleep(0.001)
            time.sleep(0.001)
    finally:
        proc.kill()
        proc.wait()
    assert writes == 3, "never caught a checkpoint being written"
    step = json.loads((run / "last" / "progress.json").read_text())["step"]
    assert step >= 2
    out = train.train(lm_cfg(codes_dir, tmp_path, run_name="k", max_iters=step + 2, eval_interval=2,
                             resume=True), progress=False)
    assert len(out["history"]) == step + 2


def test_a_kill_between_the_renames_is_recovered(codes_dir, tmp_path):
    train.train(lm_cfg(codes_dir, tmp_path, run_name="r", max_iters=2, eval_interval=2), progress=False)
    run = tmp_path / "r"
    aside = tmp_path / "r" / ".last.old-12345"  # what replace_dir's first rename leaves before the second
    aside.mkdir()
    os.replace(run / "last", aside / "old")
    out = train.train(lm_cfg(codes_dir, tmp_path, run_name="r", max_iters=4, eval_interval=2, resume=True),
                      progress=False)
    assert len(out["history"]) == 4 and (run / "last").is_dir()
    stale = run / ".last.old-67890"  # a kill after the second rename: the old copy was never deleted
    (stale / "old").mkdir(parents=True)
    train.train(lm_cfg(codes_dir, tmp_path, run_name="r", max_iters=6, eval_interval=2, resume=True),
                progress=False)
    assert not stale.exists() and (run / "last").is_dir()


def test_clear_errors(codes_dir, tmp_path, run_script):
    ds = codes_dir / "ds"
    cases = [
        ([f"--data_dir={ds}", "--tokenizer_run=nope"], r"no motion codes here; make them with `python "
                                                        r"tokenizer.py --encode"),
        ([f"--data_dir={ds}", "--tokenizer_run=t", "--model=gpt5"], r"unknown"),
        ([f"--data_dir={ds}", "--tokenizer_run=t", "--loss=all"], r"expected whole or motion"),
        ([f"--out_dir={tmp_path}", "--run_name=none", "--resume"], r"no run to resume"),
    ]
    for args, message in cases:
        status, _, err = run_script("train.py", *args)
        lines = err.strip().splitlines()
        assert status == 1 and len(lines) == 1 and lines[0].startswith("train.py: "), err
        assert __import__("re").search(message, lines[0]), lines[0]


def test_codes_of_another_tokenizer_are_refused(codes_dir, tmp_path):
    meta_path = codes_dir / "ds" / "tokens" / "t" / "meta.json"
    meta = json.loads(meta_path.read_text())
    (codes_dir / "ds" / "tokens" / "bad").mkdir(exist_ok=True)
    for f in ("codes.npy", "offsets.npy"):
        (codes_dir / "ds" / "tokens" / "bad" / f).write_bytes((meta_path.parent / f).read_bytes())
    (codes_dir / "ds" / "tokens" / "bad" / "meta.json").write_text(json.dumps({**meta, "K": 128}))
    with pytest.raises(ValueError, match=r"K = 128, P = 6, but the tokenizer run .* has K = 64, P = 6"):
        tokenizer.load_codes(codes_dir / "ds", "bad", data.MotionData(codes_dir / "ds"))
    unheld = {k: v for k, v in meta.items() if k != "hold_frames"}  # written before the edges were held
    (codes_dir / "ds" / "tokens" / "bad" / "meta.json").write_text(json.dumps(unheld))
    with pytest.raises(ValueError, match=r"encoded with zero-padded clip edges.*tokenizer.py --encode"):
        Codes(codes_dir / "ds", "bad", data.MotionData(codes_dir / "ds"))


def test_resume_with_another_model_or_a_deleted_setting_is_refused(codes_dir, tmp_path, run_script):
    train.train(lm_cfg(codes_dir, tmp_path, run_name="a", max_iters=2, eval_interval=2), progress=False)
    with pytest.raises(ValueError, match=r"cannot resume with a different model .*'model': \('gpt2-tiny', "
                                         r"'llama-tiny'\)"):
        train.main([f"--out_dir={tmp_path}", "--run_name=a", "--resume", "--model=llama-tiny"])
    # a run made by an earlier train.py with a setting it no longer has (here the part mixes) stops at once
    config = tmp_path / "a" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"mix_parts": 0.0}))
    status, _, err = run_script("train.py", f"--out_dir={tmp_path}", "--run_name=a", "--resume",
                                "--max_iters=4")
    assert status == 1 and err.strip().splitlines() == [
        f"train.py: {config}: the run was made with --mix_parts, a setting that train.py no longer has, so "
        "--resume cannot continue it; start it over"]


def test_a_run_made_before_a_setting_existed_resumes_with_what_it_used(codes_dir, tmp_path, monkeypatch):
    """--resume of a run whose config.json predates caption_rarity (train.SINCE) keeps its even draws, not
    today's default; a run that saved the setting, or an override, decides it as usual."""
    train.train(lm_cfg(codes_dir, tmp_path, run_name="a", max_iters=2, eval_interval=2), progress=False)
    config = tmp_path / "a" / "config.json"
    saved = json.loads(config.read_text())
    resumed = []
    monkeypatch.setattr(train, "train", lambda cfg, **kw: resumed.append(cfg["caption_rarity"]))
    for stored, argv in ((None, []), (None, ["--caption_rarity=2.0"]), (1.0, [])):
        config.write_text(json.dumps({k: v for k, v in saved.items() if k != "caption_rarity"}
                                     | ({} if stored is None else {"caption_rarity": stored})))
        train.main([f"--out_dir={tmp_path}", "--run_name=a", "--resume", *argv])
    assert resumed == [0.0, 2.0, 1.0] and train.CONFIG["caption_rarity"] == 1.0


def test_the_readme_13b_command_fits_80_gb_by_the_estimate(capsys):
    """The README's torchrun command for llama2-13b, with its batch settings, fits 8 GPUs of 80 GiB by the
    estimate, which counts FSDP's shards, the reduction's buffers and the logits of the paper's codebook."""
    line = next(s for s in (ROOT / "README.md").read_text().splitlines()
                if s.startswith("torchrun") and "--model=llama2-13b" in s)
    batch = {k: int(v) for k, v in re.findall(r"--(batch_size|gradient_accumulation_steps)=(\d+)", line)}
    assert batch.keys() == {"batch_size", "gradient_accumulation_steps"}, line
    est = scale.estimate(dict(train.CONFIG, model="llama2-13b", gpus=8, gpu_gib=80.0, **batch),
                         model.model_spec("llama2-13b"), K=train.PAPER_K)
    layers, width, mlp, vocab = 40, 5120, 13824, 32000 + 3 + train.PAPER_K + model.LENGTH_TOKENS
    vocab = -(-vocab // 64) * 64
    n = layers * (4 * width**2 + 3 * width * mlp + 2 * width) + 2 * vocab * width + width  # Llama-2-13B
    assert est["adamw_states"] == pytest.approx(8 * n / 8, rel=1e-6)
    assert est["reduce_buffers"] > 0 and est["parameters"] > 4 * n / 8
    micro = batch["batch_size"] // 8 // batch["gradient_accumulation_steps"]
    assert est["logits"] == scale.LOGIT_BYTES * micro * 512 * vocab
    assert est["total"] < 80 * 2**30
    assert "llama2-13b on 8 x fsdp" in capsys.readouterr().out


class LiveBytes(TorchDispatchMode):
    """The peak bytes of the tensors that ops make while the mode is on (each storage counted from the op
    that made it until it is freed)."""

    def __init__(self):
        super().__init__()
        self.live, self.now, self.peak = set(), 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            storage = t.untyped_storage() if isinstance(t, torch.Tensor) else None
            if storage is not None and storage.data_ptr() and storage.data_ptr() not in self.live:
                self.live.add(storage.data_ptr())
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
                weakref.finalize(storage, self.freed, storage.data_ptr(), storage.nbytes())
        return out

    def freed(self, ptr, nbytes):
        self.live.discard(ptr)
        self.now -= nbytes


def test_the_estimate_counts_the_bytes_the_loss_holds_per_logit():
    """train.masked_losses on bf16 logits (what a model under autocast gives), forward and backward: its peak
    over the logits' count is the estimate's LOGIT_BYTES, within 10%."""
    B, L, V, H = 3, 50, 4001, 16
    hidden = torch.randn(B, L, H, dtype=torch.bfloat16, requires_grad=True)
    head = torch.randn(V, H, dtype=torch.bfloat16)
    ids = torch.randint(0, V, (B, L))
    fake = types.SimpleNamespace(device=torch.device("cpu"), autocast=contextlib.nullcontext(),
                                 model=lambda input_ids, **_: types.SimpleNamespace(logits=hidden @ head.T))
    batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                 position_ids=torch.arange(L).expand(B, L))
    with LiveBytes() as mode:
        ce, _ = train.masked_losses(fake, batch)
        ce.sum().backward()
    per_logit = (mode.peak - hidden.numel() * 2) / (B * L * V)  # the hidden's gradient is no logit
    assert per_logit == pytest.approx(scale.LOGIT_BYTES, rel=0.1), per_logit


def torchrun(cfg, nproc=2, script="train.py"):
    args = [f"--{k}={v}" for k, v in cfg.items() if v != train.CONFIG.get(k) or k == "device"]
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                           "--standalone", script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("model,parallel", [("llama-tiny", "ddp"), ("gpt2-tiny", "fsdp")])  # FSDP: tied head
def test_two_ranks_with_accumulation_match_one_process(codes_dir, tmp_path, model, parallel):
    """2 gloo ranks, 2 micro-batches each, with the same global batch give the single process's parameters
    within 2e-5 (fp32; the difference is summation order in the gradient reduction, amplified a little by
    Adam). After every micro-batch's backward (tests/rank_probe.py) an FSDP rank holds only its half of the
    gradient (reduce-scatter each micro-batch; with gradient sync off it kept the whole, unsharded), a DDP
    rank the whole."""
    cfg = lm_cfg(codes_dir, tmp_path, model=model, max_iters=3, eval_interval=3,
                 gradient_accumulation_steps=2)
    single = train.train(dict(cfg, run_name="single"), progress=False)
    result = torchrun(dict(cfg, run_name=parallel, parallel=parallel), script="tests/rank_probe.py")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"on 2 x {parallel}" in result.stdout
    assert_close_weights(weights(tmp_path / "single"), weights(tmp_path / parallel), atol=2e-5)
    metrics = json.loads((tmp_path / parallel / "metrics.json").read_text())
    assert metrics["world"] == 2 and metrics["parallel"] == parallel
    assert metrics["val_motion_loss"] == pytest.approx(single["metrics"]["val_motion_loss"], rel=1e-4)
    for rank in (0, 1):
        held = json.loads((tmp_path / parallel / f"grad_elements_{rank}.json").read_text())
        assert len(held) == 3 * 2, held  # steps x micro-batches
        share = np.array(held) / metrics["params"]
        if parallel == "fsdp":  # a half, and the padding of odd-sized parameters' shards
            assert (share <= 0.51).all() and (share >= 0.49).all(), share
        else:
            np.testing.assert_array_equal(share, 1.0)
    # the sharded checkpoint loads back on 2 ranks (dcp.load + set_state_dict) and training goes on
    result = torchrun(dict(cfg, run_name=parallel, parallel=parallel, max_iters=4, resume=True))
    assert result.returncode == 0, result.stderr[-3000:]
    progress = json.loads((tmp_path / parallel / "last" / "progress.json").read_text())
    assert progress["step"] == 4 and len(progress["history"]) == 4


def test_a_length_token_run_saves_samples(codes_dir, tmp_path):
    """--length_token=True end to end: the run's model keeps its length tokens, every train instance carries
    its clip's <len T>, and it generates within max_steps. (That the loss counts <len T> is test_model's
    layout test.)"""
    train.train(lm_cfg(codes_dir, tmp_path, run_name="len", length_token=True), progress=False)
    lm = model.load(tmp_path / "len")
    assert len(lm.length_ids) == model.LENGTH_TOKENS
    ds = data.MotionData(codes_dir / "ds")
    codes = Codes(codes_dir / "ds", "t", ds)
    pairs = lm_data.Pairs(lm, ds, codes, "train")
    for i in range(len(pairs)):
        ids, kinds = pairs.sample(i, np.random.default_rng(i), 0.3, 0.1)
        assert ids[kinds.index(model.Kind.LENGTH)] == lm.length_ids[len(codes.clip(pairs.clips[i])) - 1]
    assert len(lm.generate(["a person walks forward."], max_steps=12)[0]) <= 12


@pytest.mark.parametrize("loss", ["whole", "motion"])
def test_the_loss_divides_by_the_tokens_its_labels_count(codes_dir, tmp_path, loss):
    """train_step's loss is the mean cross-entropy over exactly the tokens collate's labels count (the length
    token <len T> included, model.counted): its gradient is that of a float64 masked mean computed here from
    the model's logits and the labels (a denominator that left <len T> out was 1% off on a batch of 8)."""
    run = train.setup(lm_cfg(codes_dir, tmp_path, loss=loss, grad_clip=0.0), None, None, lm_data.Pairs)
    assert not (run.dir / "model").exists()  # no copy of the weights at the start: the first eval writes it
    samples, _, n_counted, _ = lm_data.global_batch(run.train, 0, run.cfg)
    assert any(model.Kind.LENGTH in kinds for _, kinds in samples)
    reference = copy.deepcopy(run.hf_model).double()
    batch = run.lm.collate(samples, loss)
    assert n_counted == (batch["labels"][:, 1:] != -100).sum()
    logits = reference(**{k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}).logits
    mean = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100)
    mean.backward()
    grads = {}
    run.opt.step = lambda: grads.update({n: p.grad.clone() for n, p in run.hf_model.named_parameters()})
    stats = train.train_step(run, samples, n_counted)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(grads[name].double(), p.grad, rtol=1e-3, atol=1e-6)
    norm = torch.cat([p.grad.flatten() for p in reference.parameters()]).norm()  # the log's grad norm
    assert stats[6].item() == pytest.approx(norm.item(), rel=1e-4) and stats[4] == stats[5] == 0


def test_caption_rarity_draws_a_caption_with_odds_its_count_to_the_minus_rarity(codes_dir, tmp_path):
    """Pairs.draw with rarity r: a clip's caption i with probability count_i^-r / sum_j count_j^-r, count_i
    the caption's occurrences among the split's captions (here 3, 1 and 2 on three clips made to share
    them); r = 0: each caption equally often. 20,000 draws each, within 4.5 binomial standard deviations."""
    run = train.setup(lm_cfg(codes_dir, tmp_path), None, None, lm_data.Pairs)
    data, train_clips = copy.copy(run.train.data), run.train.clips[:3]
    data.texts = [data.texts[i] for i in range(len(data.ids))]
    shared = (["s x.", "u x.", "t x."], ["s x.", "v x."], ["s x.", "t x."])
    for clip, captions in zip(train_clips, shared, strict=True):
        data.texts[clip] = {**data.texts[clip], "captions": captions}
    pairs = lm_data.Pairs(run.lm, data, run.train.codes, "train", clips=train_clips)
    n, rng = 20_000, np.random.default_rng(0)
    for rarity, odds in ((1.0, [1 / 3, 1, 1 / 2]), (0.0, [1, 1, 1])):
        drawn = np.bincount([pairs.draw(0, rng, 0.0, 0.0, rarity)[0] for _ in range(n)], minlength=3)
        p = np.array(odds) / sum(odds)
        assert (np.abs(drawn / n - p) < 4.5 * np.sqrt(p * (1 - p) / n)).all(), (rarity, drawn / n, p)


def test_an_epochs_batches_group_instances_by_their_drawn_length(codes_dir, tmp_path):
    """Over one epoch of global_batch: each pair at most once, with the instance its own rng draws
    (Pairs.draw, (seed, epoch, pair)), in batches of similar drawn lengths: less padding than the same
    instances in batches grouped by each pair's longest caption (Pairs.lengths), the grouping before."""
    run = train.setup(lm_cfg(codes_dir, tmp_path, batch_size=4, parts_prob=0.5), None, None, lm_data.Pairs)
    pairs, cfg, steps = run.train, run.cfg, len(run.train) // 4
    index = {pairs.data.ids[c]: i for i, c in enumerate(pairs.clips)}
    draws = (cfg["parts_prob"], cfg["uncond_prob"], cfg["caption_rarity"])
    own = {i: pairs.build(i, pairs.draw(i, np.random.default_rng([cfg["seed"], 0, i]), *draws))[0]
           for i in range(len(pairs))}
    seen, padded = [], {"drawn": 0, "longest caption": 0}
    for step in range(steps):
        samples, clips, _, n_tokens = lm_data.global_batch(pairs, step, cfg)
        assert [list(ids) for ids, _ in samples] == [list(own[index[c]]) for c in clips]
        seen += clips
        padded["drawn"] += len(samples) * max(len(ids) for ids, _ in samples) - n_tokens
    assert len(set(seen)) == len(seen) == steps * 4
    for batch in lm_data.epoch_batches(pairs.lengths.astype(np.int64).tobytes(), 4, cfg["seed"], 0):
        sizes = [len(own[i]) for i in batch]
        padded["longest caption"] += len(sizes) * max(sizes) - sum(sizes)
    assert padded["drawn"] < padded["longest caption"], padded


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_builds_only_its_share_of_the_global_batch(codes_dir, tmp_path, world):
    """global_batch on `world` ranks: rank r builds every world-th instance of the one process's batch (sorted
    by length) from r on and nothing else; every rank gets the one process's count of counted tokens, and of
    all tokens."""
    run = train.setup(lm_cfg(codes_dir, tmp_path, loss="motion", batch_size=7), None, None, lm_data.Pairs)
    one, one_clips, n_counted, n_tokens = lm_data.global_batch(run.train, 3, run.cfg)
    assert [len(ids) for ids, _ in one] == sorted(len(ids) for ids, _ in one)
    assert n_counted == sum(int(model.counted(kinds[1:], "motion").sum()) for _, kinds in one)
    assert n_tokens == sum(len(ids) for ids, _ in one)
    built = []
    run.train.build = lambda i, choice, build=run.train.build: built.append(i) or build(i, choice)
    for rank in range(world):
        built.clear()
        mine, clips, counted, tokens = lm_data.global_batch(run.train, 3, run.cfg, rank, world)
        assert mine == one[rank::world] and clips == one_clips[rank::world]
        assert (counted, tokens) == (n_counted, n_tokens) and len(built) == len(mine)


def test_a_non_finite_loss_stops_the_run_at_the_next_log_step(codes_dir, tmp_path, monkeypatch):
    """A NaN loss at step 2 (between log steps: the loop reads the device only there) stops the run at step
    4's log naming step 2 and its clips, before the checkpoint due then: last/ stays step 2's."""
    losses = train.masked_losses
    calls = []

    def nan_at_step_2(run, batch):
        calls.extend([1] * torch.is_grad_enabled())  # training's calls, not the evaluations'
        ce, batch = losses(run, batch)
        return (ce * float("nan") if len(calls) == 3 else ce), batch

    monkeypatch.setattr(train, "masked_losses", nan_at_step_2)
    cfg = lm_cfg(codes_dir, tmp_path, run_name="nan", max_iters=6, eval_interval=2, eval_iters=1)
    with pytest.raises(ValueError, match=r"^non-finite loss at step 2 on this rank \(clips [^)]+\); the last "
                                         r"checkpoint in .* is as it was$"):
        train.train(cfg, progress=False)
    assert json.loads((tmp_path / "nan" / "last" / "progress.json").read_text())["step"] == 2


def test_validation_losses_are_means_over_the_predicted_tokens(codes_dir, tmp_path):
    """evaluate's motion and instruction losses are the float64 mean cross-entropy of the code tokens and of
    the text tokens that are predicted (position 0 is not: counting its zero took ~5% off the text loss)."""
    run = train.setup(lm_cfg(codes_dir, tmp_path), None, None, lm_data.Pairs)
    samples = [run.val.fixed(i) for i in range(len(run.val))]
    motion, text = train.evaluate(run, samples)
    batch = run.lm.collate(samples)
    logits = copy.deepcopy(run.hf_model).double()(
        **{k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}).logits
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), batch["input_ids"][:, 1:], reduction="none")
    kinds = batch["kinds"][:, 1:]
    for got, kind in ((motion, model.Kind.CODE), (text, model.Kind.TEXT)):
        assert got == pytest.approx(ce[kinds == kind].mean().item(), rel=1e-4)
