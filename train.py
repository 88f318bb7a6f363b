"""Fine-tune a language model to speak motion (paper §4.1, §5.1–5.2; Table 10; appendix B/C).

Every training pair is a question–answer instance {X_Q, X_M}: an instruction built from the caption
(model.py's templates; in a share of samples with MotionBase's part texts appended) followed by the clip's
motion codes (what `python tokenizer.py --encode` wrote to data/<name>/tokens/<run>/). The model is trained by
next-token prediction, eq. (1) of §4.1, on the whole sequence (instruction and motion, the paper's choice in
Table 10) or on the motion tokens only (--loss=motion).

    python train.py                                          # gpt2-tiny from scratch on data/synth
    python train.py --model=gpt2-medium                      # fine-tune GPT-2 medium (one GPU, bf16)
    torchrun --nproc_per_node 8 train.py --model=llama2-13b  # FSDP2 over 8 GPUs (auto: FSDP above ~1B params)
    python train.py --resume                                 # continue out/lm/default from last/
    python train.py --model=llama2-13b --estimate --gpus=8   # print the memory estimate per GPU and stop

One loop serves one process, DDP and FSDP2 (support/train_scale.py); the loss divides by the count of counted
tokens over the whole global batch, so accumulation and any number of ranks give one batch's gradient.

A run writes out/lm/<run>/ (its layout: docs/design.md#on-disk-formats): model/, the best model by validation
motion loss; last/, the last checkpoint (what --resume reads); each written as one folder and swapped in.
"""

import gc
import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from transformers import AutoConfig

import data as motion_data
import model as lm_model
import tokenizer
from common import (
    atomic_write,
    bf16_on,
    cli,
    cosine_lr,
    distributed_setup,
    distributed_teardown,
    parse_args,
    progress_bar,
    recover_dir,
    resume_settings,
    write_json,
)
from support import length, train_scale
from support.train_data import Pairs, global_batch

# settings: plain values, overridden by --config=file.json, then by --key=value
CONFIG = dict(
    model="gpt2-tiny",  # a name in model.REGISTRY (gpt2, gpt2-medium, llama2-13b, ...) or a local HF folder
    init="auto",  # auto: tiny from scratch, named models from their weights | scratch (Table 9) | pretrained
    motion_vocab="add",  # add: K new rows | reuse: the K least frequent text tokens (§5.1: the paper's)
    length_token=True, countdown=True,  # the model writes the motion's length <len T> first and its positions
    # count down to the motion's end (model.py; not the paper's format: that is both False; docs/lm.md)
    loss="motion",  # motion: only the motion's tokens count (issue 30: new phrasing, chosen on val) | whole:
    # the instruction's too (Table 10: the paper's; docs/lm.md)
    data_dir="data/synth", tokenizer_run="default",  # the codes in data_dir/tokens/<tokenizer_run>/
    out_dir="out/lm", run_name="default",  # the run folder is out_dir/run_name
    max_iters=1000,  # ~1 epoch of the 15k synth train clips
    batch_size=16,  # global, in sequences (paper: 1024): split over ranks, then into micro-batches ...
    gradient_accumulation_steps=1,  # ... this many per rank and step
    lr=0.0,  # 0: the family's (model.REGISTRY): fine-tuning 2e-4 GPT-2, 2e-5 Llama (paper); tiny 3e-3
    min_lr=0.0, dropout=0.0,  # the end of the cosine schedule (0: lr / 10); dropout
    warmup_iters=20, weight_decay=0.1, grad_clip=1.0,  # AdamW (0.9, 0.95); weight decay on matrices only
    parts_prob=0.3,  # share of samples whose instruction also carries the upper/lower-body texts (MotionBase)
    uncond_prob=0.1,  # share of samples with no instruction: what classifier-free guidance (sample.py) needs
    caption_rarity=1.0,  # draw a clip's caption with odds (its count among the split's captions)^-this; 0:
    # evenly (the paper's); 1: a phrasing many clips share is drawn less (issue 30: chosen on val)
    log_interval=10,  # a line of metrics.jsonl and the console every this many steps (the host syncs then)
    eval_interval=200,  # evaluate, keep the best model and write the last checkpoint every this many steps
    eval_iters=8,  # validation batches per periodic eval (0: the whole split); the final eval uses all of it
    length_iters=1000,  # steps of the length estimator fitted after the LM (support/length.py); 0: none, and
    # sampling then lets the LM end its motions (sample.py --lengths=model)
    dtype="auto",  # auto: bf16 on a GPU that has it, else fp32 | bfloat16 | float32
    compile=False,  # torch.compile the model (GPU)
    parallel="auto",  # auto: FSDP2 above 1B parameters under torchrun, else DDP | ddp | fsdp
    activation_checkpointing=False,  # recompute each layer's activations in the backward (large models)
    estimate=False, gpus=0, gpu_gib=0.0,  # print the memory estimate (for `gpus` GPUs of gpu_gib) and stop
    seed=1337, device="auto", resume=False,
)
PAPER_K = json.loads((Path(__file__).parent / "configs" / "tokenizer_paper.json").read_text())[
    "codebook_size"]  # the paper's codebook: --estimate's K before any codes exist
PAPER_FORMAT = dict(length_token=False, countdown=False, loss="whole", caption_rarity=0.0)  # the paper's
# sequence, loss and even caption draws (the experiments: its claims)
ARCH_KEYS = ("model", "init", "motion_vocab", "tokenizer_run", "length_token", "countdown")  # --resume keeps
GONE = ("motion_clock", "mix_parts", "task", "init_from", "train_fraction", "train_subsets")  # until a4c2a31
SINCE = {"caption_rarity": 0.0}  # settings added since a run may have been made: what such a run used


# ----------------------------------------------------------------------------------------------
# set-up: the process group, the data, the model and its optimizer
@dataclass
class Run:
    """What one run holds: settings, folder, ranks; the MotionLM (vocabularies, collate), its Hugging Face
    model (parameters, checkpoints) and `model`, which the forward runs through (bare, DDP or FSDP2)."""
    cfg: dict
    dir: Path
    rank: int
    world: int
    device: torch.device
    lm: lm_model.MotionLM
    hf_model: torch.nn.Module
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    parallel: str  # single | ddp | fsdp
    micro: int  # sequences per micro-batch
    autocast: object
    dtype: torch.dtype  # the training dtype: what model/ is exported in
    train: Pairs
    val: Pairs
    n_params: int


def setup(cfg, clips, start, pairs):
    """Join the process group, read the data and codes, build (or load) the model and its pairs, plan its
    memory, wrap it for the ranks and make its optimizer."""
    cfg = dict(cfg)
    if cfg["loss"] not in ("whole", "motion"):
        raise ValueError(f"--loss={cfg['loss']}: expected whole or motion")
    if cfg["log_interval"] < 1:
        raise ValueError(f"--log_interval={cfg['log_interval']}: expected 1 or more steps")
    if cfg["length_iters"] < 0:
        raise ValueError(f"--length_iters={cfg['length_iters']}: expected 0 (no length estimator) or more")
    rank, world, device = distributed_setup(cfg["device"])
    run_dir = Path(cfg["out_dir"]) / cfg["run_name"]
    cfg["lr"] = cfg["lr"] or lm_model.model_spec(cfg["model"])["lr"]
    cfg["min_lr"] = cfg["min_lr"] or cfg["lr"] / 10
    bf16 = cfg["dtype"] == "bfloat16" or (cfg["dtype"] == "auto" and bf16_on(device))
    if cfg["batch_size"] % (world * cfg["gradient_accumulation_steps"]):
        raise ValueError(f"batch_size = {cfg['batch_size']} does not split over {world} ranks x "
                         f"{cfg['gradient_accumulation_steps']} accumulation steps")
    data = motion_data.MotionData(cfg["data_dir"])
    codes = tokenizer.load_codes(cfg["data_dir"], cfg["tokenizer_run"], data)
    if rank == 0 and not cfg["resume"]:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", {k: v for k, v in cfg.items() if k not in ("resume", "estimate")}
                   | {"tokenizer": codes.meta["tokenizer"], "K": codes.K, "P": codes.P})
    torch.manual_seed(cfg["seed"])
    lm = build_or_load(cfg, run_dir, codes, data, rank, world, start)
    hf_model = lm.lm
    for m in [m for m in hf_model.modules() if isinstance(m, torch.nn.Dropout)]:  # nanoGPT: none by default
        m.p = cfg["dropout"]  # (and so the same gradient on any number of ranks)
    train_pairs, val_pairs = pairs(lm, data, codes, "train", clips), pairs(lm, data, codes, "val")
    for name, skip in (("train", train_pairs.skipped), ("val", val_pairs.skipped)):
        if any(skip.values()) and rank == 0:
            print(f"train.py: {name} split: skipped {skip['too_long']} clips too long for the context of "
                  f"{lm.spec['n_ctx']} tokens (the instruction before position "
                  f"{lm_model.motion_position(lm.spec['n_ctx'])}, the motion after it) and "
                  f"{skip['empty_caption']} with an empty caption")
    if len(train_pairs) < cfg["batch_size"] or not len(val_pairs):
        raise ValueError(f"{cfg['data_dir']}: {len(train_pairs)} usable train clips (batch_size "
                         f"{cfg['batch_size']}) and {len(val_pairs)} val clips")
    n_params = sum(p.numel() for p in hf_model.parameters())
    gpu_bytes = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else 0
    parallel, micro, est = train_scale.memory_plan(hf_model.config, n_params, cfg, world,
                                                   int(train_pairs.lengths.max()), bf16, gpu_bytes, rank == 0)
    if gpu_bytes and est["total"] > 0.95 * gpu_bytes:
        raise ValueError(f"{cfg['model']} will not fit: about {est['total'] / 2**30:.0f} GiB per GPU of "
                         f"{gpu_bytes / 2**30:.0f}; use more GPUs (--parallel=fsdp), a smaller micro-batch "
                         f"(--gradient_accumulation_steps) or --activation_checkpointing")
    model = train_scale.wrap(lm, cfg, parallel, device, bf16, rank)
    decay = [p for p in hf_model.parameters() if p.dim() >= 2]  # weight decay on the matrices only
    no_decay = [p for p in hf_model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.95),
                            fused=device.type == "cuda")
    # bf16 autocast on a GPU that has it; under FSDP its MixedPrecisionPolicy casts instead
    autocast = torch.autocast("cuda", torch.bfloat16) if bf16 and parallel != "fsdp" else nullcontext()
    return Run(cfg, run_dir, rank, world, device, lm, hf_model, model, opt, parallel, micro, autocast,
               torch.bfloat16 if bf16 else torch.float32, train_pairs, val_pairs, n_params)


def build_or_load(cfg, run_dir, codes, data, rank, world, start=None):
    """A fresh run: rank 0 builds the model (its BPE and motion vocabulary from the train captions) or takes
    `start`, and saves its vocabularies (model/ waits for the first evaluation: no copy of the weights is
    written to be read back); the other ranks build the same model on the meta device, from rank 0's config,
    to be filled with rank 0's weights (train_scale.wrap). A resumed run: every rank builds it on the meta
    device, to be filled from last/ (train_scale.load_last)."""
    if cfg["resume"]:
        recover_dir(run_dir / "model")
        last = recover_dir(run_dir / "last")
        config = AutoConfig.from_pretrained(last) if last and (last / "config.json").is_file() else None
        return lm_model.load(run_dir, weights=False, config=config)  # None: model/'s (an older last/)
    lm = None
    if rank == 0:
        lm = start or lm_model.build(cfg["model"], K=codes.K, P=codes.P, captions=[
            t for i in data.split("train") for t in (*data.texts[i]["captions"],
                                                     *(data.texts[i].get("parts") or {}).values())],
            **{k: cfg[k] for k in ("init", "motion_vocab", "seed", "length_token", "countdown")})
        lm.save(run_dir, weights=False)
        shutil.rmtree(run_dir / "model", ignore_errors=True)  # an earlier run's, under this name
    config = [lm.lm.config if rank == 0 else None]
    if world > 1:  # after rank 0's save: the others read its vocabularies next
        dist.broadcast_object_list(config)
    return lm if rank == 0 else lm_model.load(run_dir, weights=False, config=config[0])


# ----------------------------------------------------------------------------------------------
# the loop: one process, DDP or FSDP2 under torchrun
def train(cfg, progress=True, clips=None, lm=None, pairs=Pairs):
    """Train into out_dir/run_name/ -> {"history", "evals", "metrics"}. For experiments/claims.py: `clips`,
    the train clips to use (None: all); `lm`, a MotionLM to start from; `pairs`, the training pairs' class."""
    run = setup(cfg, clips, lm, pairs)
    cfg = run.cfg
    state = train_scale.load_last(run.dir, run.hf_model, run.opt, run.rank) if cfg["resume"] else \
        {"step": 0, "history": [], "evals": [], "log": [], "best": float("inf"), "tokens": 0, "seconds": 0.0}
    start = state["step"]
    state.setdefault("log", [{"eval": True, **e} for e in state["evals"]])  # last/ from before the log
    if run.rank == 0:  # from last/'s records: a killed run's lines after it are dropped
        train_scale.write_log(run.dir, state["log"])
    val_quick = sorted((run.val.fixed(i) for i in range(len(run.val) if not cfg["eval_iters"] else
                        min(len(run.val), cfg["eval_iters"] * cfg["batch_size"]))), key=lambda s: len(s[0]))
    run.model.train()
    bar = progress_bar(range(start, cfg["max_iters"]), initial=start, total=cfg["max_iters"],
                       desc=f"{cfg['model']} {run.n_params / 1e6:.1f}M", disable=run.rank > 0 or not progress)
    pending, t_last, tokens = [], time.time(), 0  # the steps since the last log step, on the device
    for step in bar:
        lr = cosine_lr(step, cfg["lr"], cfg["min_lr"], cfg["warmup_iters"], cfg["max_iters"])
        for group in run.opt.param_groups:
            group["lr"] = lr
        samples, clip_ids, n_counted, n_tokens = global_batch(run.train, step, cfg, run.rank, run.world)
        pending.append((step, lr, clip_ids, train_step(run, samples, n_counted)))
        tokens += n_tokens
        evaluating = (step + 1) % cfg["eval_interval"] == 0 or step + 1 == cfg["max_iters"]
        if (step + 1) % cfg["log_interval"] == 0 or evaluating:  # one host sync for the steps since
            line = train_scale.log_step(run, state, pending, tokens, t_last)
            pending, t_last, tokens = [], time.time(), 0
            bar.set_postfix({k: line[k] for k in ("motion", "text", "tok/s", "mfu") if line[k]},
                            refresh=False)
            if progress and run.rank == 0:
                bar.write(" ".join(f"{k} {v}" for k, v in line.items() if v is not None))
        if evaluating:
            t_eval = time.time()
            checkpoint(run, state, step + 1, *evaluate(run, val_quick))
            t_last += time.time() - t_eval  # tokens/s counts training only, not the eval and checkpoint
    bar.close()
    metrics, summary = final_report(run, state)
    if run.rank == 0:
        if cfg["length_iters"]:  # sampling holds the LM to it (support/length.py)
            length.save(run.dir, *length.fit(run.lm.text, run.train, run.val, cfg["length_iters"],
                                             seed=cfg["seed"]))
        write_json(run.dir / "metrics.json", metrics)
        if progress:
            print(f"{run.dir}: {summary}")
    del run  # its models hold the process group: free them before tearing it down (FSDP's hooks make
    gc.collect()  # reference cycles, which only the collector frees; left to exit, gloo's threads can abort)
    distributed_teardown()
    return {"history": state["history"], "evals": state["evals"], "metrics": metrics}


def masked_losses(run, batch):
    """Per-token cross-entropy [B, L] (nats; token t predicted from t-1, model.token_losses) and the batch
    (on a GPU copied from pinned memory, without waiting)."""
    cuda = run.device.type == "cuda"
    batch = {k: (v.pin_memory() if cuda else v).to(run.device, non_blocking=cuda) for k, v in batch.items()}
    with run.autocast:
        logits = run.model(**{k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}).logits
    return lm_model.token_losses(logits.float(), batch["input_ids"]), batch


def add_kind_sums(sums, ce, kinds, keep):
    """sums [4] += the cross-entropy and number of the motion-code tokens, then the instruction's (`keep`).
    On a GPU the mask multiplies (boolean indexing would wait for it; the sum's grouping differs in the last
    bits); on the CPU it indexes, as it always did."""
    for row, kind in ((0, lm_model.Kind.CODE), (2, lm_model.Kind.TEXT)):
        mask = (kinds == kind) & keep
        sums[row] += (ce.double() * mask).sum() if ce.is_cuda else ce[mask].double().sum()
        sums[row + 1] += mask.sum()


def train_step(run, samples, n_counted):
    """One optimizer step on the global batch, of which `samples` are this rank's, sorted by length, in
    micro-batches; n_counted is the global batch's count of tokens the loss counts -> a float64 tensor left
    on the device until a log step (log_step): the sums of cross-entropy and counts of the motion-code and
    instruction tokens over all ranks, the number of ranks whose loss was not finite, whether this rank's
    was, and the gradient's norm before clipping."""
    cfg, micro, accum = run.cfg, run.micro, run.cfg["gradient_accumulation_steps"]
    stats = torch.zeros(5, dtype=torch.float64, device=run.device)
    for m in range(accum):
        # DDP skips its all-reduce until the last micro-batch: its full gradient exists anyway. FSDP must
        # not (set_requires_gradient_sync(False) keeps an unsharded fp32 gradient of the whole model per rank
        # until then): it reduce-scatters every micro-batch into the shards, which accumulate there
        with run.model.no_sync() if run.parallel == "ddp" and m < accum - 1 else nullcontext():
            ce, batch = masked_losses(run, run.lm.collate(samples[m * micro:(m + 1) * micro], cfg["loss"]))
            # ce[:, 0] is 0 (never predicted); DDP/FSDP average the gradient over the ranks: * world undoes it
            loss = (ce * (batch["labels"] != -100)).sum() * run.world / n_counted
            loss.backward()
        stats[4] += ~torch.isfinite(loss.detach())
        add_kind_sums(stats, ce.detach(), batch["kinds"], torch.arange(ce.shape[1], device=run.device) > 0)
    mine = stats[4].clamp(max=1)
    stats[4] = mine  # all-reduced: the ranks whose loss was not finite
    # the norm, and on clip 0 a scale by 1.0 (exact): the log keeps it either way
    norm = torch.nn.utils.clip_grad_norm_(run.hf_model.parameters(), cfg["grad_clip"] or float("inf"))
    run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    if run.world > 1:
        dist.all_reduce(stats)
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP: a DTensor
    return torch.cat([stats, mine.view(1), norm.double().view(1)])


@torch.no_grad()
def evaluate(run, samples):
    """Mean cross-entropy of the motion-code tokens and of the instruction tokens over `samples`, split over
    the ranks in equal numbers of batches (FSDP needs every rank in every forward)."""
    run.model.eval()
    n = -(-len(samples) // run.world)  # per rank; the padding copies (k >= len(samples)) do not count
    mine = [(samples[k % len(samples)], k < len(samples)) for k in range(run.rank * n, (run.rank + 1) * n)]
    sums = torch.zeros(4, dtype=torch.float64, device=run.device)  # motion CE, motion n, text CE, text n
    for b in range(0, len(mine), run.micro):
        chunk = mine[b:b + run.micro]
        ce, batch = masked_losses(run, run.lm.collate([s for s, _ in chunk]))
        real = torch.tensor([keep for _, keep in chunk], device=run.device)[:, None]
        add_kind_sums(sums, ce, batch["kinds"], real & (torch.arange(ce.shape[1], device=run.device) > 0))
    if run.world > 1:
        dist.all_reduce(sums)
    run.model.train()
    return (sums[0] / sums[1]).item(), (sums[2] / sums[3]).item()


# ----------------------------------------------------------------------------------------------
# saving: the checkpoints, the loss curves and the final report
def checkpoint(run, state, step, val_motion, val_text):
    """After a periodic eval: keep the best model (model/), write last/, metrics.jsonl and the loss curves."""
    history, evals = state["history"], state["evals"]
    evals.append({"step": step, "val_motion_loss": val_motion, "val_text_loss": val_text,
                  "train_motion_loss": float(np.mean([h["motion"] for h in history[-50:]]))})
    score = val_text if np.isnan(val_motion) else val_motion  # the best model by it; by the text where
    if score < state["best"]:  # there is no motion (text-only pretraining: experiments/claims.py)
        state["best"] = score
        train_scale.save_best(run.dir, run.lm, run.hf_model, run.rank, run.dtype)
    state["log"].append({"eval": True, **evals[-1]})
    state.update(step=step)
    train_scale.save_last(run.dir, run.hf_model, run.opt, state, run.rank, run.world)
    if run.rank == 0:
        train_scale.write_log(run.dir, state["log"])
        plot_curves(run.dir / "loss_curve.png", history, evals)


def plot_curves(path, history, evals):
    """loss_curve.png: train (a 20-step mean) and val loss, motion and instruction tokens."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "motion", "motion tokens"), (axes[1], "text", "instruction tokens")):
        train = np.array([h[key] for h in history], dtype=float)
        smooth = np.convolve(train, np.ones(20) / 20, mode="valid") if len(train) >= 20 else train
        ax.plot(np.arange(len(train) - len(smooth), len(train)) + 1, smooth, label="train (20-step mean)")
        ax.plot([e["step"] for e in evals], [e[f"val_{key}_loss"] for e in evals], "o-", label="val")
        ax.set(title=f"loss per {title}", xlabel="step", ylabel="nats")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


def final_report(run, state):
    """The whole validation split (all ranks take part): the val losses, and how much the text is worth (the
    loss with every clip's instruction swapped for another's, against the codes' unigram entropy)."""
    cfg, val_pairs = run.cfg, run.val
    val_motion, val_text = evaluate(run, sorted((val_pairs.fixed(i) for i in range(len(val_pairs))),
                                                key=lambda s: len(s[0])))
    metrics = dict(val_text_loss=val_text, params=run.n_params, steps=cfg["max_iters"], model=cfg["model"],
                   world=run.world, parallel=run.parallel, val_clips=len(val_pairs))
    if np.isnan(val_motion):  # no motion tokens: text-only pretraining (experiments/claims.py)
        metrics |= {"best_val_text_loss": state["best"], "task": "text"}
        return metrics, f"val text loss {val_text:.3f} nats per token (text-only pretraining)"
    sigma = derangement(len(val_pairs), cfg["seed"])
    shuffled, _ = evaluate(run, [val_pairs.fixed(i, text_of=int(sigma[i])) for i in range(len(val_pairs))])
    # the codes' unigram entropy per part slot: the loss of a model that knows which slot comes next and
    # nothing else; its mean over the P slots is the bar a text-conditioned LM must beat
    codes = np.concatenate([val_pairs.codes.clip(c) for c in val_pairs.clips])
    freqs = [np.unique(slot, return_counts=True)[1] / len(codes) for slot in codes.T]
    per_slot = [float(-(freq * np.log(freq)).sum()) for freq in freqs]
    entropy = float(np.mean(per_slot))
    metrics |= {"val_motion_loss": val_motion, "unigram_motion_entropy": entropy,
                "unigram_motion_entropy_per_slot": per_slot, "shuffled_caption_motion_loss": shuffled,
                "text_conditioning_gap": shuffled - val_motion, "best_val_motion_loss": state["best"],
                "tokens_per_s": state["tokens"] / max(state["seconds"], 1e-9), "loss": cfg["loss"],
                "note": "nats per motion-code token on the val split; shuffled = every clip's "
                        "instruction swapped for another clip's (a derangement)"}
    return metrics, (f"val loss {val_motion:.3f} nats per motion token; unigram entropy {entropy:.3f}; with "
                     f"swapped captions {shuffled:.3f} (the text is worth {shuffled - val_motion:.3f}); "
                     f"{metrics['tokens_per_s']:.0f} tokens/s")


def derangement(n, seed):
    """A permutation with no fixed point (n >= 2): a random cycle through all n."""
    order = np.random.default_rng(seed).permutation(n)
    return np.roll(order, -1)[np.argsort(order)]  # sigma[order[i]] = order[i + 1]


def main(argv):
    overrides = parse_args(argv, CONFIG, "train.py")
    cfg = {**CONFIG, **overrides}
    run_dir = Path(cfg["out_dir"]) / cfg["run_name"]
    if cfg["estimate"]:  # the memory per GPU of this run, from a meta-device model (no weights read)
        meta = Path(cfg["data_dir"]) / "tokens" / cfg["tokenizer_run"] / "meta.json"  # K, else the paper's
        K = json.loads(meta.read_text())["K"] if meta.is_file() else PAPER_K
        train_scale.estimate(cfg, lm_model.model_spec(cfg["model"]), K)
        return
    if cfg["resume"]:  # a run made with a setting that train.py no longer has (GONE) does not resume at all
        cfg = resume_settings(run_dir, CONFIG, overrides, ARCH_KEYS, since=SINCE)
        if gone := [k for k in json.loads((run_dir / "config.json").read_text()) if k in GONE]:
            raise ValueError(f"{run_dir / 'config.json'}: the run was made with --{gone[0]}, a setting that "
                             f"train.py no longer has, so --resume cannot continue it; start it over")
    train(cfg)


if __name__ == "__main__":
    cli(main, "train.py")
