"""Fine-tune a language model to speak motion (paper §4.1, §5.1–5.2; Tables 2, 9, 10; appendix B/C).

Every training pair is a question–answer instance {X_Q, X_M}: an instruction built from the caption
(model.py's templates; in a share of samples with MotionBase's part texts appended) followed by the clip's
motion codes (what `python tokenizer.py --encode` wrote to data/<name>/tokens/<run>/). The model is trained by
next-token prediction, eq. (1) of §4.1, on the whole sequence (instruction and motion, the paper's choice in
Table 10) or on the motion tokens only (--loss=motion).

    python train.py                                          # gpt2-tiny from scratch on data/synth (~6 min)
    python train.py --model=gpt2-medium                      # fine-tune GPT-2 medium (one GPU, bf16)
    torchrun --nproc_per_node 8 train.py --model=llama2-13b  # FSDP2 over 8 GPUs (auto: FSDP above ~1B params)
    python train.py --resume                                 # continue out/lm/default from last/
    python train.py --model=llama2-13b --estimate --gpus=8   # print the memory estimate per GPU and stop

One loop serves one process, DDP and FSDP2. The loss is the sum of the counted tokens' cross-entropies divided
by the count over the whole global batch (all micro-batches, all ranks), so gradient accumulation and any
number of ranks give the gradient of one big batch.

A run writes out/lm/<run>/: config.json; model/ (a Hugging Face folder, the best model by validation motion
loss), text_tokenizer/ and motion_vocab.json (model.py); last/ (the last checkpoint: sharded model + optimizer
through torch.distributed.checkpoint, step, RNG, history; what --resume reads); metrics.jsonl (every eval),
metrics.json (the final one), loss_curve.png. Checkpoints are written as one folder and swapped in.
"""

import json
import math
import os
import time
import warnings
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

import data as motion_data
import model as lm_model
from common import (
    atomic_write,
    cli,
    distributed_setup,
    distributed_teardown,
    make_temp_dir,
    parse_args,
    progress_bar,
    recover_dir,
    replace_dir,
    resume_settings,
    write_json,
)

# settings: plain values, overridden by --config=file.json, then by --key=value
CONFIG = dict(
    model="gpt2-tiny",  # a name in model.REGISTRY (gpt2, gpt2-medium, llama2-13b, ...) or a local HF folder
    init="auto",  # auto: tiny from scratch, named models from their weights | scratch (Table 9) | pretrained
    motion_vocab="add",  # add: K new rows | reuse: the K least frequent text tokens (§5.1: the paper's)
    loss="whole",  # whole: instruction and motion tokens count (Table 10: the paper's) | motion: motion only
    task="motion",  # motion: instruction -> codes | text: plain language modelling of the captions and part
    # texts alone (Table 9 at tiny scale: no pretrained tiny model exists, so pretrain one on text first)
    init_from="",  # a train.py run folder: start from its model/ (weights and both vocabularies), as Table 9
    train_fraction=1.0, train_subsets="",  # train on this share of the train clips / only these subsets
    data_dir="data/synth", tokenizer_run="default",  # the codes in data_dir/tokens/<tokenizer_run>/
    out_dir="out/lm", run_name="default",  # the run folder is out_dir/run_name
    max_iters=1000,  # ~1 epoch of the 15k synth train clips, ~8 min on 2 CPU cores
    batch_size=16,  # global, in sequences (paper: 1024): split over ranks, then into micro-batches ...
    gradient_accumulation_steps=1,  # ... this many per rank and step
    lr=0.0,  # 0: the family's (model.REGISTRY): fine-tuning 2e-4 GPT-2, 2e-5 Llama (paper); tiny 3e-3
    min_lr=0.0,  # end of the cosine schedule (0: lr / 10)
    warmup_iters=20, weight_decay=0.1, grad_clip=1.0,  # AdamW (0.9, 0.95); weight decay on matrices only
    dropout=0.0,
    parts_prob=0.3,  # share of samples whose instruction also carries the upper/lower-body texts (MotionBase)
    uncond_prob=0.1,  # share of samples with no instruction: what classifier-free guidance (sample.py) needs
    eval_interval=200,  # evaluate, keep the best model and write the last checkpoint every this many steps
    eval_iters=8,  # validation batches per periodic eval (0: the whole split); the final eval uses all of it
    dtype="auto",  # auto: bf16 on a GPU that has it, else fp32 | bfloat16 | float32
    compile=False,  # torch.compile the model (GPU)
    parallel="auto",  # auto: FSDP2 above 1B parameters under torchrun, else DDP | ddp | fsdp
    activation_checkpointing=False,  # recompute each layer's activations in the backward (large models)
    estimate=False, gpus=0, gpu_gib=0.0,  # print the memory estimate (for `gpus` GPUs of gpu_gib) and stop
    seed=1337, device="auto", resume=False,
)
# dcp in one process says so at every save and load
warnings.filterwarnings("ignore", message=".*assuming the intent is to (save|load) in a single process")
# what a --resume must not change
ARCH_KEYS = ("model", "init", "motion_vocab", "tokenizer_run", "init_from", "task")
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "A800": 312e12, "L40S": 362e12,
                   "A10": 125e12, "4090": 165e12, "3090": 71e12}  # dense, per GPU, from the vendors' sheets


# ----------------------------------------------------------------------------------------------
# data: the instruction/motion pairs of a split, with their lengths in tokens
class Pairs:
    """The clips of one split that can be trained on: their usable captions, part texts and codes. Clips whose
    longest instance would not fit in the model's context (model.motion_room: the instruction before the
    motion's fixed start, the motion after it), or with no non-empty caption, are skipped and counted
    (.skipped)."""

    def __init__(self, lm, data, codes, split, n_ctx, keep=None, task="motion"):
        self.lm, self.data, self.codes, self.task = lm, data, codes, task
        self.clips, self.captions, self.parts, self.lengths = [], [], [], []
        self.skipped = {"too_long": 0, "empty_caption": 0}
        for clip in data.split(split) if keep is None else keep(data.split(split)):
            text = data.texts[clip]
            captions = [c for c in text["captions"] if c.strip()]
            if not captions:
                self.skipped["empty_caption"] += 1
                continue
            steps = codes.offsets[clip + 1] - codes.offsets[clip]  # prompt (to <mot>), codes, </mot> <eos>
            prompt = max(len(lm.prompt_ids(c, text.get("parts") or None, t)) for c in captions
                         for t in range(len(lm_model.TEMPLATES)))
            longest = prompt + steps * codes.P + 2
            if (longest > n_ctx) if task == "text" else lm.motion_room(prompt) < steps:
                self.skipped["too_long"] += 1
                continue
            self.clips.append(int(clip))
            self.captions.append(captions)
            self.parts.append(text.get("parts") or None)
            self.lengths.append(longest)
        self.lengths = np.array(self.lengths)

    def __len__(self):
        return len(self.clips)

    def sample(self, i, rng, parts_prob, uncond_prob=0.0):
        """A training instance of pair i: a random caption and template, part texts with parts_prob, no
        instruction at all with uncond_prob. The text task: one of its captions or part texts alone."""
        if self.task == "text":
            texts = [*self.captions[i], *(self.parts[i] or {}).values()]
            return self.lm.text_ids(texts[rng.integers(len(texts))])
        parts = self.parts[i] if self.parts[i] and rng.random() < parts_prob else None
        caption = self.captions[i][rng.integers(len(self.captions[i]))]
        if rng.random() < uncond_prob:
            caption, parts = None, None
        return self.lm.sample_ids(caption, self.codes.clip(self.clips[i]), parts,
                                  int(rng.integers(len(lm_model.TEMPLATES))))

    def fixed(self, i, text_of=None):
        """Pair i's evaluation instance: first caption, template 0, no parts; text_of=j: pair j's text.
        The text task: the first caption alone."""
        j = i if text_of is None else text_of
        if self.task == "text":
            return self.lm.text_ids(self.captions[j][0])
        return self.lm.sample_ids(self.captions[j][0], self.codes.clip(self.clips[i]))


class Codes:
    """data_dir/tokens/<run>/: codes [steps, P] + offsets, checked against the dataset and tokenizer run."""

    def __init__(self, data_dir, run, data):
        root = Path(data_dir) / "tokens" / run
        make = f"`python tokenizer.py --encode --data_dir={data_dir} --run_name={run}`"
        if not (root / "meta.json").is_file():
            raise FileNotFoundError(f"{root}: no motion codes here; make them with {make}")
        self.meta = json.loads((root / "meta.json").read_text())
        self.K, self.P = self.meta["K"], self.meta["P"]
        self.codes = np.load(root / "codes.npy", mmap_mode="r")
        self.offsets = np.load(root / "offsets.npy")
        if len(self.offsets) != len(data) + 1 or self.codes.shape != (self.offsets[-1], self.P):
            raise ValueError(f"{root}: codes {self.codes.shape} for {len(self.offsets) - 1} clips do not "
                             f"match {data.root} ({len(data)} clips) or P = {self.P}; remake them with "
                             f"{make}")
        if "hold_frames" not in self.meta:  # an LM on them would learn edge codes the decoder never sees
            raise ValueError(f"{root}: these codes were encoded with zero-padded clip edges, before the "
                             f"tokenizer held them (tokenizer.py, Tokenizer.encode); remake them with {make}")
        import tokenizer  # the codes' K and P must be those of the tokenizer run they came from

        K, P = tokenizer.codes_shape(self.meta["tokenizer"])
        if (K, P) != (self.K, self.P):
            raise ValueError(f"{root / 'meta.json'}: K = {self.K}, P = {self.P}, but the tokenizer run "
                             f"{self.meta['tokenizer']} has K = {K}, P = {P}; remake them with {make}")

    def clip(self, i):
        return np.asarray(self.codes[self.offsets[i]:self.offsets[i + 1]], dtype=np.int64)


@lru_cache(maxsize=2)
def epoch_batches(lengths, batch_size, seed, epoch):
    """The global batches of one epoch, [n_batches, batch_size] pair indices: a shuffle, then runs of 64
    batches sorted by length (so a batch pads little), and the batches shuffled again. A function of (seed,
    epoch) only: the same batches after --resume, on any number of ranks."""
    lengths = np.frombuffer(lengths, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))[: len(lengths) // batch_size * batch_size]
    run = batch_size * 64
    runs = np.split(order, range(run, len(order), run))
    order = np.concatenate([r[np.argsort(lengths[r], kind="stable")] for r in runs])
    return order.reshape(-1, batch_size)[rng.permutation(len(order) // batch_size)]


def global_batch(pairs, step, cfg):
    """Step's global batch as (ids, kinds) instances sorted by length, and their clip ids: every rank builds
    all of it (cheap) so that each knows the global count of counted tokens, then takes its own slice."""
    batches = epoch_batches(pairs.lengths.astype(np.int64).tobytes(), cfg["batch_size"], cfg["seed"],
                            step // (len(pairs) // cfg["batch_size"]))
    picked = batches[step % len(batches)]
    samples = [pairs.sample(i, np.random.default_rng([cfg["seed"], step, k]), cfg["parts_prob"],
                            cfg["uncond_prob"]) for k, i in enumerate(picked)]
    order = sorted(range(len(samples)), key=lambda k: len(samples[k][0]))
    return [samples[k] for k in order], [pairs.data.ids[pairs.clips[picked[k]]] for k in order]


# ----------------------------------------------------------------------------------------------
# loss, evaluation, schedule
def masked_losses(model, lm, batch, device, autocast):
    """Per-token cross-entropy [B, L] (nats; token t predicted from t-1, model.token_losses) and the batch."""
    batch = {k: v.to(device) for k, v in batch.items()}
    with autocast:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits
    return lm_model.token_losses(logits.float(), batch["input_ids"]), batch


@torch.no_grad()
def evaluate(model, lm, samples, micro, device, autocast, rank, world):
    """Summed cross-entropy and counts of motion-code tokens (kind 2) and instruction tokens (kind 1) over
    `samples`, split over the ranks in equal numbers of batches (FSDP needs every rank in every forward)."""
    model.eval()
    per_rank = -(-len(samples) // world)
    ks = range(rank * per_rank, (rank + 1) * per_rank)
    mine = [(samples[k % len(samples)], k < len(samples)) for k in ks]  # the padding copies do not count
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # motion CE, motion n, text CE, text n
    for b in range(0, len(mine), micro):
        chunk = mine[b:b + micro]
        ce, batch = masked_losses(model, lm, lm.collate([s for s, _ in chunk], "whole"), device, autocast)
        real = torch.tensor([keep for _, keep in chunk], device=device)[:, None]
        for row, kind in ((0, 2), (2, 1)):
            mask = (batch["kinds"] == kind) & real
            sums[row] += ce[mask].double().sum()
            sums[row + 1] += mask.sum()
    if world > 1:
        dist.all_reduce(sums)
    model.train()
    return (sums[0] / sums[1]).item(), (sums[2] / sums[3]).item()


def unigram_entropy(pairs):
    """Entropy (nats) of the codes of each part slot over the pairs: the loss of a model that knows which slot
    comes next and nothing else; its mean over the P slots is the bar a text-conditioned LM must beat."""
    codes = np.concatenate([pairs.codes.clip(c) for c in pairs.clips])
    h = []
    for p in range(codes.shape[1]):
        freq = np.bincount(codes[:, p]) / len(codes)
        freq = freq[freq > 0]
        h.append(float(-(freq * np.log(freq)).sum()))
    return float(np.mean(h)), h


def derangement(n, seed):
    """A permutation with no fixed point (n >= 2): a random cycle through all n."""
    order = np.random.default_rng(seed).permutation(n)
    sigma = np.empty(n, dtype=np.int64)
    sigma[order] = np.roll(order, -1)
    return sigma


def lr_at(step, cfg):  # linear warm-up, then cosine from lr to min_lr at max_iters
    if step < cfg["warmup_iters"]:
        return cfg["lr"] * (step + 1) / cfg["warmup_iters"]
    frac = (step - cfg["warmup_iters"]) / max(1, cfg["max_iters"] - cfg["warmup_iters"])
    return cfg["min_lr"] + 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))) * (cfg["lr"] - cfg["min_lr"])


def pick_parallel(parallel, world, n_params):  # auto: shard the model (FSDP2) above 1B parameters
    return "single" if world == 1 else parallel if parallel != "auto" else "fsdp" if n_params > 1e9 else "ddp"


def memory_plan(hf_config, n_params, cfg, world, seq, bf16, gpu_bytes=0):
    """-> (parallel, micro-batch, model.memory_estimate per GPU, its line) for this run on `world` ranks."""
    parallel = pick_parallel(cfg["parallel"], world, n_params)
    micro = max(1, cfg["batch_size"] // world // cfg["gradient_accumulation_steps"])
    est = lm_model.memory_estimate(hf_config, n_params, micro, seq, world if parallel == "fsdp" else 1,
                                   cfg["activation_checkpointing"], bf16)
    line = lm_model.estimate_line(est, f"{cfg['model']} on {world} x {parallel}", gpu_bytes)
    return parallel, micro, est, line


# ----------------------------------------------------------------------------------------------
# checkpoints: last/ (resume) and model/ (the best weights), each one folder swapped into place
def save_last(run_dir, lm_module, opt, progress, rank, world):
    """Each rank writes its shards (torch.distributed.checkpoint) to one temp folder; rank 0 swaps it in."""
    tmp = [str(make_temp_dir(run_dir / "last")) if rank == 0 else None]
    if world > 1:
        dist.broadcast_object_list(tmp)
    tmp = Path(tmp[0])
    msd, osd = get_state_dict(lm_module, opt)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=tmp / "state")
    cuda_rng = torch.cuda.get_rng_state() if torch.cuda.is_available() else None
    torch.save({"cpu": torch.get_rng_state(), "cuda": cuda_rng}, tmp / f"rng_{rank}.pt")
    if world > 1:
        dist.barrier()
    if rank == 0:
        write_json(tmp / "progress.json", {**progress, "world": world})
        replace_dir(tmp, run_dir / "last")
    if world > 1:
        dist.barrier()


def load_last(run_dir, lm_module, opt, rank):
    last = recover_dir(run_dir / "last")  # a kill between replace_dir's two renames left it aside
    if last is None or not (last / "progress.json").is_file():
        raise FileNotFoundError(f"{run_dir / 'last'}: no checkpoint to resume from")
    msd, osd = get_state_dict(lm_module, opt)
    state = {"model": msd, "optim": osd}
    dcp.load(state, checkpoint_id=last / "state")
    set_state_dict(lm_module, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    progress = json.loads((last / "progress.json").read_text())
    rng_file = last / f"rng_{rank}.pt"
    if rng_file.is_file():  # absent when resuming on more ranks than the run had
        rng = torch.load(rng_file, weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return progress


def save_best(run_dir, lm, lm_module, rank, parallel):
    """model/ (+ text tokenizer, motion vocabulary): a Hugging Face folder. FSDP gathers the full state dict
    onto rank 0's CPU first (a collective: every rank calls it)."""
    full = None
    if parallel == "fsdp":
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        full = get_model_state_dict(lm_module, options=options)
    if rank == 0:
        lm.save(run_dir, state_dict=full)


def plot_curves(path, history, evals):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = np.arange(1, len(history) + 1)
    for ax, key, title in ((axes[0], "motion", "motion tokens"), (axes[1], "text", "instruction tokens")):
        train = np.array([h[key] for h in history], dtype=float)
        smooth = np.convolve(train, np.ones(20) / 20, mode="valid") if len(train) >= 20 else train
        ax.plot(steps[len(steps) - len(smooth):], smooth, label="train (20-step mean)")
        ax.plot([e["step"] for e in evals], [e[f"val_{key}_loss"] for e in evals], "o-", label="val")
        ax.set(title=f"loss per {title}", xlabel="step", ylabel="nats")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# training: one process, DDP or FSDP2 under torchrun
def wrap(lm, cfg, parallel, device, bf16):
    """The module the loop calls: the bare model, DDP around it, or the model sharded in place by FSDP2 (each
    decoder layer, then the root; bf16 parameters with fp32 gradient reduction on a GPU, fp32 on the CPU)."""
    if cfg["activation_checkpointing"]:
        lm.lm.activation_checkpointing_enable()
    if parallel == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else torch.float32,
                                      reduce_dtype=torch.float32)
        for module in lm.lm.modules():
            if type(module).__name__ in (lm.lm._no_split_modules or ()):
                fully_shard(module, mp_policy=policy)
        fully_shard(lm.lm, mp_policy=policy)
        module = lm.lm
    elif parallel == "ddp":
        module = torch.nn.parallel.DistributedDataParallel(
            lm.lm.to(device), device_ids=[device.index] if device.type == "cuda" else None)
    else:
        module = lm.lm.to(device)
    return torch.compile(module) if cfg["compile"] else module


def train_clips(data, clips, cfg):
    """The train split's clips this run uses: those of --train_subsets (all when empty), then a random
    --train_fraction of them (a function of --seed)."""
    if cfg["train_subsets"]:
        wanted = set(cfg["train_subsets"].split(","))
        clips = clips[[data.texts[i].get("subset") in wanted for i in clips]]
        if not len(clips):
            raise ValueError(f"{data.root}: no train clip in the subsets {sorted(wanted)}")
    n = max(1, round(cfg["train_fraction"] * len(clips)))
    return np.sort(np.random.default_rng(cfg["seed"]).permutation(clips)[:n])


def build_or_load(cfg, run_dir, codes, data, rank, world):
    """A fresh run: rank 0 builds the model (its BPE and motion vocabulary from the train captions), or takes
    --init_from's, saves it, and the other ranks load that, so that every rank starts from the same weights
    and vocabulary. A resumed run loads the saved one (the weights are then overwritten from last/)."""
    if not cfg["resume"]:
        if rank == 0 and cfg["init_from"]:
            lm = lm_model.load(cfg["init_from"])
            if (lm.K, lm.P) != (codes.K, codes.P):
                raise ValueError(f"--init_from={cfg['init_from']}: its motion vocabulary has K = {lm.K}, "
                                 f"P = {lm.P}; these codes have K = {codes.K}, P = {codes.P}")
            if json.loads((Path(cfg["init_from"]) / "config.json").read_text()).get("task") == "text":
                # as a pretrained checkpoint gets new motion rows (--motion_vocab=add): text-only training
                # never had a code as its target, and its softmax pushed the code rows' logits down all along
                lm_model.fresh_rows(lm.lm, lm.motion_ids)
            lm.save(run_dir)
        elif rank == 0:
            texts = []
            for i in data.split("train"):
                texts += [*data.texts[i]["captions"], *(data.texts[i].get("parts") or {}).values()]
            lm = lm_model.build(cfg["model"], K=codes.K, P=codes.P, captions=texts, init=cfg["init"],
                                motion_vocab=cfg["motion_vocab"], seed=cfg["seed"])
            lm.save(run_dir)
        if world > 1:
            dist.barrier()
        if rank == 0:
            return lm
    recover_dir(run_dir / "model")
    return lm_model.load(run_dir)


def train(cfg, progress=True):
    """Train into out_dir/run_name/; returns {"history", "evals", "metrics"}."""
    cfg = dict(cfg)
    if cfg["loss"] not in ("whole", "motion"):
        raise ValueError(f"--loss={cfg['loss']}: expected whole or motion")
    if cfg["task"] not in ("motion", "text") or (cfg["task"] == "text" and cfg["loss"] != "whole"):
        raise ValueError(f"--task={cfg['task']} --loss={cfg['loss']}: expected task motion, or text with the "
                         f"whole loss (text has no motion tokens)")
    if not 0 < cfg["train_fraction"] <= 1:
        raise ValueError(f"--train_fraction={cfg['train_fraction']}: expected a share in (0, 1]")
    rank, world, device = distributed_setup(cfg["device"])
    run_dir = Path(cfg["out_dir"]) / cfg["run_name"]
    spec = lm_model.model_spec(cfg["model"])
    cfg["lr"] = cfg["lr"] or spec["lr"]
    cfg["min_lr"] = cfg["min_lr"] or cfg["lr"] / 10
    bf16 = cfg["dtype"] == "bfloat16" or (cfg["dtype"] == "auto" and device.type == "cuda"
                                          and torch.cuda.is_bf16_supported())
    accum = cfg["gradient_accumulation_steps"]
    if cfg["batch_size"] % (world * accum):
        raise ValueError(f"batch_size = {cfg['batch_size']} does not split over {world} ranks x {accum} "
                         f"accumulation steps")
    micro = cfg["batch_size"] // world // accum
    data = motion_data.MotionData(cfg["data_dir"])
    codes = Codes(cfg["data_dir"], cfg["tokenizer_run"], data)
    if rank == 0 and not cfg["resume"]:
        run_dir.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in cfg.items() if k not in ("resume", "estimate")}
        write_json(run_dir / "config.json",
                   {**settings, "tokenizer": codes.meta["tokenizer"], "K": codes.K, "P": codes.P})
    torch.manual_seed(cfg["seed"])
    lm = build_or_load(cfg, run_dir, codes, data, rank, world)
    for m in lm.lm.modules():  # nanoGPT: no dropout by default (and the same gradient on any number of ranks)
        if isinstance(m, torch.nn.Dropout):
            m.p = cfg["dropout"]
    n_ctx = lm.lm.config.max_position_embeddings
    train_pairs = Pairs(lm, data, codes, "train", n_ctx, lambda clips: train_clips(data, clips, cfg),
                        cfg["task"])
    val_pairs = Pairs(lm, data, codes, "val", n_ctx, task=cfg["task"])
    for name, skip in (("train", train_pairs.skipped), ("val", val_pairs.skipped)):
        if any(skip.values()) and rank == 0:
            print(f"train.py: {name} split: skipped {skip['too_long']} clips that do not fit the model's "
                  f"context of {n_ctx} tokens (the instruction before position "
                  f"{lm_model.motion_position(n_ctx)}, the motion after it) and {skip['empty_caption']} with "
                  f"an empty caption")
    if len(train_pairs) < cfg["batch_size"] or not len(val_pairs):
        raise ValueError(f"{cfg['data_dir']}: {len(train_pairs)} usable train clips (batch_size "
                         f"{cfg['batch_size']}) and {len(val_pairs)} val clips")

    n_params = sum(p.numel() for p in lm.lm.parameters())
    gpu_bytes = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else 0
    parallel, _, est, line = memory_plan(lm.lm.config, n_params, cfg, world, int(train_pairs.lengths.max()),
                                         bf16, gpu_bytes)
    if rank == 0:
        print(line)
    if gpu_bytes and est["total"] > 0.95 * gpu_bytes:
        raise ValueError(f"{cfg['model']} will not fit: about {est['total'] / 2**30:.0f} GiB per GPU of "
                         f"{gpu_bytes / 2**30:.0f}; use more GPUs (--parallel=fsdp), a smaller micro-batch "
                         f"(--gradient_accumulation_steps) or --activation_checkpointing")
    model = wrap(lm, cfg, parallel, device, bf16)
    decay = [p for p in lm.lm.parameters() if p.dim() >= 2]
    no_decay = [p for p in lm.lm.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.95),
                            fused=device.type == "cuda")
    progress_state = load_last(run_dir, lm.lm, opt, rank) if cfg["resume"] else \
        {"step": 0, "history": [], "evals": [], "best": float("inf"), "tokens": 0, "seconds": 0.0}
    start, history, evals = progress_state["step"], progress_state["history"], progress_state["evals"]
    autocast = torch.autocast("cuda", torch.bfloat16) if bf16 and parallel != "fsdp" else nullcontext()
    val_quick = sorted((val_pairs.fixed(i) for i in range(len(val_pairs) if not cfg["eval_iters"] else
                        min(len(val_pairs), cfg["eval_iters"] * cfg["batch_size"]))), key=lambda s: len(s[0]))
    peak = next((f for k, f in PEAK_BF16_FLOPS.items() if device.type == "cuda" and k in
                 torch.cuda.get_device_name(device)), None)
    model.train()
    bar = progress_bar(range(start, cfg["max_iters"]), initial=start, total=cfg["max_iters"],
                       desc=f"{cfg['model']} {n_params / 1e6:.1f}M", disable=rank > 0 or not progress)
    t_last, tokens_since = time.time(), 0
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        samples, clip_ids = global_batch(train_pairs, step, cfg)
        count_kinds = (1, 2, 3) if cfg["loss"] == "whole" else (2, 3)
        # position 0 is never predicted; the count is the global batch's, so every micro-batch divides by it
        n_counted = sum(sum(k in count_kinds for k in kinds[1:]) for _, kinds in samples)
        mine = samples[rank * micro * accum:(rank + 1) * micro * accum]
        stats = torch.zeros(4, dtype=torch.float64, device=device)
        for m in range(accum):
            sync = m == accum - 1
            if parallel == "fsdp":
                model.set_requires_gradient_sync(sync)
            with model.no_sync() if parallel == "ddp" and not sync else nullcontext():
                ce, batch = masked_losses(model, lm, lm.collate(mine[m * micro:(m + 1) * micro], cfg["loss"]),
                                          device, autocast)
                counted = batch["labels"] != -100
                counted[:, 0] = False
                loss = (ce * counted).sum() * world / n_counted  # DDP/FSDP average over ranks: undo it
                if not torch.isfinite(loss):
                    raise ValueError(f"non-finite loss at step {step} (clips {', '.join(clip_ids)}); the "
                                     f"last checkpoint in {run_dir} is as it was")
                loss.backward()
            for row, kind in ((0, 2), (2, 1)):
                mask = batch["kinds"] == kind
                mask[:, 0] = False
                stats[row] += ce.detach()[mask].double().sum()
                stats[row + 1] += mask.sum()
        if cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(lm.lm.parameters(), cfg["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        if world > 1:
            dist.all_reduce(stats)
        history.append({"motion": (stats[0] / stats[1]).item(), "text": (stats[2] / stats[3]).item(),
                        "lr": lr_at(step, cfg)})
        tokens_since += sum(len(ids) for ids, _ in samples)
        if (step + 1) % 10 == 0 or step + 1 == cfg["max_iters"]:
            now = time.time()
            progress_state["tokens"] += tokens_since
            progress_state["seconds"] += now - t_last
            tok_s = tokens_since / (now - t_last)
            post = {"motion": f"{history[-1]['motion']:.3f}", "text": f"{history[-1]['text']:.3f}",
                    "tok/s": f"{tok_s:.0f}"}
            if peak:  # 6N per token for the matmuls + 12·L·h·s for attention (PaLM appendix B; nanoGPT)
                seq = np.mean([len(ids) for ids, _ in samples])
                flops = 6 * n_params + 12 * lm.lm.config.num_hidden_layers * lm.lm.config.hidden_size * seq
                post["mfu"] = f"{100 * tok_s / world * flops / peak:.1f}%"
            bar.set_postfix(post, refresh=False)
            t_last, tokens_since = time.time(), 0
        if (step + 1) % cfg["eval_interval"] == 0 or step + 1 == cfg["max_iters"]:
            t_eval = time.time()
            val_motion, val_text = evaluate(model, lm, val_quick, micro, device, autocast, rank, world)
            evals.append({"step": step + 1, "val_motion_loss": val_motion, "val_text_loss": val_text,
                          "train_motion_loss": float(np.mean([h["motion"] for h in history[-50:]]))})
            score = val_text if cfg["task"] == "text" else val_motion  # the best model by this
            if score < progress_state["best"]:
                progress_state["best"] = score
                save_best(run_dir, lm, lm.lm, rank, parallel)
            progress_state.update(step=step + 1)
            save_last(run_dir, lm.lm, opt, progress_state, rank, world)
            if rank == 0:
                atomic_write(run_dir / "metrics.jsonl",
                             lambda p: p.write_text("".join(json.dumps(e) + "\n" for e in evals)))
                plot_curves(run_dir / "loss_curve.png", history, evals)
            t_last += time.time() - t_eval  # tokens/s counts training only, not the eval and checkpoint
    bar.close()

    # the final report on the whole validation split (all ranks take part)
    val_all = sorted((val_pairs.fixed(i) for i in range(len(val_pairs))), key=lambda s: len(s[0]))
    val_motion, val_text = evaluate(model, lm, val_all, micro, device, autocast, rank, world)
    metrics = {"val_text_loss": val_text, "params": n_params, "steps": cfg["max_iters"],
               "model": cfg["model"], "world": world, "parallel": parallel, "val_clips": len(val_pairs)}
    if cfg["task"] == "text":
        metrics |= {"best_val_text_loss": progress_state["best"], "task": "text"}
        summary = f"val text loss {val_text:.3f} nats per token (text-only pretraining)"
    else:
        sigma = derangement(len(val_pairs), cfg["seed"])
        swapped = [val_pairs.fixed(i, text_of=int(sigma[i])) for i in range(len(val_pairs))]
        shuffled, _ = evaluate(model, lm, swapped, micro, device, autocast, rank, world)
        entropy, per_slot = unigram_entropy(val_pairs)
        metrics |= {"val_motion_loss": val_motion, "unigram_motion_entropy": entropy,
                    "unigram_motion_entropy_per_slot": per_slot, "shuffled_caption_motion_loss": shuffled,
                    "text_conditioning_gap": shuffled - val_motion,
                    "best_val_motion_loss": progress_state["best"],
                    "tokens_per_s": progress_state["tokens"] / max(progress_state["seconds"], 1e-9),
                    "loss": cfg["loss"],
                    "note": "nats per motion-code token on the val split; shuffled = every clip's "
                            "instruction swapped for another clip's (a derangement)"}
        summary = (f"val loss {val_motion:.3f} nats per motion token; unigram entropy {entropy:.3f}; with "
                   f"swapped captions {shuffled:.3f} (the text is worth {shuffled - val_motion:.3f}); "
                   f"{metrics['tokens_per_s']:.0f} tokens/s")
    if rank == 0:
        write_json(run_dir / "metrics.json", metrics)
        if progress:
            print(f"{run_dir}: {summary}")
    del model, opt, lm  # they hold the process group: free them before tearing it down
    distributed_teardown()
    return {"history": history, "evals": evals, "metrics": metrics}


def estimate(cfg):
    """--estimate: the memory per GPU of this run without loading weights (a meta-device model)."""
    import transformers
    spec = lm_model.model_spec(cfg["model"])
    world = cfg["gpus"] or int(os.environ.get("WORLD_SIZE", 1))
    hf = lm_model.hf_config(spec)
    with torch.device("meta"):
        n_params = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_config(hf).parameters())
    seq = min(hf.max_position_embeddings, 512)
    _, micro, est, line = memory_plan(hf, n_params, cfg, world, seq, cfg["dtype"] != "float32",
                                      cfg["gpu_gib"] * 2**30)
    print(line)
    print(f"({n_params / 1e9:.2f}B parameters before the motion vocabulary; sequences of {seq} tokens, "
          f"micro-batch {micro})")
    return est


def main(argv):
    overrides = parse_args(argv, CONFIG, "train.py")
    cfg = {**CONFIG, **overrides}
    run_dir = Path(cfg["out_dir"]) / cfg["run_name"]
    if cfg["estimate"]:
        estimate(cfg)
        return
    if cfg["resume"]:
        cfg = resume_settings(run_dir, CONFIG, overrides, ARCH_KEYS)
    train(cfg)


if __name__ == "__main__":
    cli(main, "train.py")
