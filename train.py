"""Fine-tune a language model to speak motion (paper §4.1, §5.1–5.2; Tables 2, 9, 10; appendix B/C).

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

One loop serves one process, DDP and FSDP2 (support/scale.py wraps the model and writes the sharded
checkpoints). The loss is the sum of the counted tokens' cross-entropies divided by their count over the whole
global batch (all micro-batches, all ranks): accumulation and any number of ranks give one batch's gradient.

A run writes out/lm/<run>/: config.json; model/ (a Hugging Face folder, the best model by validation motion
loss), text_tokenizer/ and motion_vocab.json (model.py); last/ (the last checkpoint: sharded model + optimizer
through torch.distributed.checkpoint, step, RNG, history; what --resume reads); metrics.jsonl (every eval),
metrics.json (the final one), loss_curve.png; length_estimator.* (support/length.py: sampling's lengths,
fitted at the end). Checkpoints are written as one folder and swapped in.
"""

import json
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist

import data as motion_data
import model as lm_model
from common import (
    atomic_write,
    cli,
    cosine_lr,
    distributed_setup,
    distributed_teardown,
    parse_args,
    progress_bar,
    read_run_file,
    recover_dir,
    resume_settings,
    write_json,
)
from support import length, report, scale
from support.codes import Codes
from support.lm_data import Pairs, global_batch
from support.pretrained import fresh_rows

# settings: plain values, overridden by --config=file.json, then by --key=value
CONFIG = dict(
    model="gpt2-tiny",  # a name in model.REGISTRY (gpt2, gpt2-medium, llama2-13b, ...) or a local HF folder
    init="auto",  # auto: tiny from scratch, named models from their weights | scratch (Table 9) | pretrained
    motion_vocab="add",  # add: K new rows | reuse: the K least frequent text tokens (§5.1: the paper's)
    motion_clock=True,  # the motion at a fixed position (model.position_ids); False: natural (an ablation)
    length_token=True, countdown=True,  # the model writes the motion's length <len T> first and its positions
    # count down to the motion's end (model.py; not the paper's format: that is both False; docs/lm.md)
    loss="whole",  # whole: instruction and motion tokens count (Table 10: the paper's) | motion: motion only
    task="motion",  # motion: instruction -> codes | text: plain language modelling of the captions and part
    # texts alone (Table 9 at tiny scale: no pretrained tiny model exists, so pretrain one on text first)
    init_from="",  # a train.py run folder: start from its model/ (weights and both vocabularies), as Table 9
    train_fraction=1.0, train_subsets="",  # train on this share of the train clips / only these subsets
    data_dir="data/synth", tokenizer_run="default",  # the codes in data_dir/tokens/<tokenizer_run>/
    out_dir="out/lm", run_name="default",  # the run folder is out_dir/run_name
    max_iters=1000,  # ~1 epoch of the 15k synth train clips
    batch_size=16,  # global, in sequences (paper: 1024): split over ranks, then into micro-batches ...
    gradient_accumulation_steps=1,  # ... this many per rank and step
    lr=0.0,  # 0: the family's (model.REGISTRY): fine-tuning 2e-4 GPT-2, 2e-5 Llama (paper); tiny 3e-3
    min_lr=0.0, dropout=0.0,  # the end of the cosine schedule (0: lr / 10); dropout
    warmup_iters=20, weight_decay=0.1, grad_clip=1.0,  # AdamW (0.9, 0.95); weight decay on matrices only
    parts_prob=0.3,  # share of samples whose instruction also carries the upper/lower-body texts (MotionBase)
    mix_parts=0.0,  # share of samples whose upper-body codes and text come from another clip (editing)
    uncond_prob=0.1,  # share of samples with no instruction: what classifier-free guidance (sample.py) needs
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
PAPER_FORMAT = dict(length_token=False, countdown=False)  # the paper's sequence (experiments: its claims)
ARCH_KEYS = ("model", "init", "motion_vocab", "tokenizer_run", "init_from", "task", "length_token",
             "countdown")  # what a --resume must not change


# ----------------------------------------------------------------------------------------------
# loss and evaluation
def masked_losses(model, batch, device, autocast):
    """Per-token cross-entropy [B, L] (nats; token t predicted from t-1, model.token_losses) and the batch."""
    batch = {k: v.to(device) for k, v in batch.items()}
    with autocast:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits
    return lm_model.token_losses(logits.float(), batch["input_ids"]), batch


@torch.no_grad()
def evaluate(run, samples):
    """Mean cross-entropy of the motion-code tokens (kind 2) and of the instruction tokens (kind 1) over
    `samples`, split over the ranks in equal numbers of batches (FSDP needs every rank in every forward)."""
    run.model.eval()
    per_rank = -(-len(samples) // run.world)
    ks = range(run.rank * per_rank, (run.rank + 1) * per_rank)
    mine = [(samples[k % len(samples)], k < len(samples)) for k in ks]  # the padding copies do not count
    sums = torch.zeros(4, dtype=torch.float64, device=run.device)  # motion CE, motion n, text CE, text n
    for b in range(0, len(mine), run.micro):
        chunk = mine[b:b + run.micro]
        ce, batch = masked_losses(run.model, run.lm.collate([s for s, _ in chunk], "whole"), run.device,
                                  run.autocast)
        real = torch.tensor([keep for _, keep in chunk], device=run.device)[:, None]
        for row, kind in ((0, 2), (2, 1)):
            mask = (batch["kinds"] == kind) & real
            sums[row] += ce[mask].double().sum()
            sums[row + 1] += mask.sum()
    if run.world > 1:
        dist.all_reduce(sums)
    run.model.train()
    return (sums[0] / sums[1]).item(), (sums[2] / sums[3]).item()


# ----------------------------------------------------------------------------------------------
# training: one process, DDP or FSDP2 under torchrun
def train(cfg, progress=True):
    """Train into out_dir/run_name/; returns {"history", "evals", "metrics"}."""
    run = setup(checked(cfg))
    cfg, lm, opt = run.cfg, run.lm, run.opt
    state = scale.load_last(run.dir, lm.lm, opt, run.rank) if cfg["resume"] else \
        {"step": 0, "history": [], "evals": [], "best": float("inf"), "tokens": 0, "seconds": 0.0}
    start, history, evals = state["step"], state["history"], state["evals"]
    val_quick = sorted((run.val.fixed(i) for i in range(len(run.val) if not cfg["eval_iters"] else
                        min(len(run.val), cfg["eval_iters"] * cfg["batch_size"]))), key=lambda s: len(s[0]))
    run.model.train()
    bar = progress_bar(range(start, cfg["max_iters"]), initial=start, total=cfg["max_iters"],
                       desc=f"{cfg['model']} {run.n_params / 1e6:.1f}M", disable=run.rank > 0 or not progress)
    t_last, tokens_since = time.time(), 0
    for step in bar:
        lr = cosine_lr(step, cfg["lr"], cfg["min_lr"], cfg["warmup_iters"], cfg["max_iters"])
        for group in opt.param_groups:
            group["lr"] = lr
        samples, clip_ids = global_batch(run.train, step, cfg)
        stats = train_step(run, samples, clip_ids, step)
        history.append({"motion": (stats[0] / stats[1]).item(), "text": (stats[2] / stats[3]).item(),
                        "lr": lr})
        tokens_since += sum(len(ids) for ids, _ in samples)
        if (step + 1) % 10 == 0 or step + 1 == cfg["max_iters"]:
            now = time.time()
            state["tokens"] += tokens_since
            state["seconds"] += now - t_last
            tok_s = tokens_since / (now - t_last)
            bar.set_postfix(throughput(run, history[-1], tok_s, samples), refresh=False)
            t_last, tokens_since = time.time(), 0
        if (step + 1) % cfg["eval_interval"] == 0 or step + 1 == cfg["max_iters"]:
            t_eval = time.time()
            checkpoint(run, state, step + 1, evaluate(run, val_quick))
            t_last += time.time() - t_eval  # tokens/s counts training only, not the eval and checkpoint
    bar.close()
    metrics, summary = final_report(run, state)
    if run.rank == 0:
        if cfg["task"] == "motion" and cfg["length_iters"]:  # sampling holds the LM to it (support/length.py)
            est = length.fit(lm.text, run.train, run.val, cfg["length_iters"], seed=cfg["seed"])
            length.save(run.dir, *est)
        write_json(run.dir / "metrics.json", metrics)
        if progress:
            print(f"{run.dir}: {summary}")
    del run.model, run.opt, run.lm, opt, lm  # they hold the process group: free them before tearing it down
    distributed_teardown()
    return {"history": history, "evals": evals, "metrics": metrics}


def checked(cfg):
    cfg = dict(cfg)
    if cfg["loss"] not in ("whole", "motion"):
        raise ValueError(f"--loss={cfg['loss']}: expected whole or motion")
    if cfg["task"] not in ("motion", "text") or (cfg["task"] == "text" and cfg["loss"] != "whole"):
        raise ValueError(f"--task={cfg['task']} --loss={cfg['loss']}: expected task motion, or text with the "
                         f"whole loss (text has no motion tokens)")
    if not 0 < cfg["train_fraction"] <= 1:
        raise ValueError(f"--train_fraction={cfg['train_fraction']}: expected a share in (0, 1]")
    if cfg["length_iters"] < 0:
        raise ValueError(f"--length_iters={cfg['length_iters']}: expected 0 (no length estimator) or more")
    return cfg


def setup(cfg):
    """Join the process group, read the data and codes, build (or load) the model and its pairs, plan its
    memory, wrap it for the ranks and make its optimizer."""
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
    train_pairs, val_pairs = split_pairs(cfg, lm, data, codes, rank)
    n_params = sum(p.numel() for p in lm.lm.parameters())
    gpu_bytes = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else 0
    parallel, _, est, line = scale.memory_plan(lm.lm.config, n_params, cfg, world,
                                               int(train_pairs.lengths.max()), bf16, gpu_bytes)
    if rank == 0:
        print(line)
    if gpu_bytes and est["total"] > 0.95 * gpu_bytes:
        raise ValueError(f"{cfg['model']} will not fit: about {est['total'] / 2**30:.0f} GiB per GPU of "
                         f"{gpu_bytes / 2**30:.0f}; use more GPUs (--parallel=fsdp), a smaller micro-batch "
                         f"(--gradient_accumulation_steps) or --activation_checkpointing")
    model = scale.wrap(lm, cfg, parallel, device, bf16)
    decay = [p for p in lm.lm.parameters() if p.dim() >= 2]
    no_decay = [p for p in lm.lm.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.95),
                            fused=device.type == "cuda")
    bf16_autocast = bf16 and parallel != "fsdp"  # FSDP casts through its MixedPrecisionPolicy instead
    autocast = torch.autocast("cuda", torch.bfloat16) if bf16_autocast else nullcontext()
    # what one run holds: settings, ranks, the model (bare, DDP or FSDP-wrapped), the optimizer, the pairs
    return SimpleNamespace(cfg=cfg, dir=run_dir, rank=rank, world=world, device=device, lm=lm, model=model,
                           opt=opt, parallel=parallel, micro=cfg["batch_size"] // world // accum, accum=accum,
                           autocast=autocast, train=train_pairs, val=val_pairs, n_params=n_params,
                           peak=scale.peak_flops(device))


def split_pairs(cfg, lm, data, codes, rank):
    """The train and val pairs, with what did not fit said once."""
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
    return train_pairs, val_pairs


def train_step(run, samples, clip_ids, step):
    """One optimizer step on the global batch `samples` (this rank's slice, in micro-batches) -> summed
    cross-entropy and counts of the motion and instruction tokens [4], over all ranks."""
    cfg, micro, accum = run.cfg, run.micro, run.accum
    count_kinds = (1, 2, 3) if cfg["loss"] == "whole" else (2, 3)
    # position 0 is never predicted; the count is the global batch's, so every micro-batch divides by it
    n_counted = sum(sum(k in count_kinds for k in kinds[1:]) for _, kinds in samples)
    mine = samples[run.rank * micro * accum:(run.rank + 1) * micro * accum]
    stats = torch.zeros(4, dtype=torch.float64, device=run.device)
    for m in range(accum):
        sync = m == accum - 1
        if run.parallel == "fsdp":
            run.model.set_requires_gradient_sync(sync)
        with run.model.no_sync() if run.parallel == "ddp" and not sync else nullcontext():
            ce, batch = masked_losses(run.model, run.lm.collate(mine[m * micro:(m + 1) * micro], cfg["loss"]),
                                      run.device, run.autocast)
            counted = batch["labels"] != -100
            counted[:, 0] = False
            loss = (ce * counted).sum() * run.world / n_counted  # DDP/FSDP average over ranks: undo it
            if not torch.isfinite(loss):
                raise ValueError(f"non-finite loss at step {step} (clips {', '.join(clip_ids)}); the "
                                 f"last checkpoint in {run.dir} is as it was")
            loss.backward()
        for row, kind in ((0, 2), (2, 1)):
            mask = batch["kinds"] == kind
            mask[:, 0] = False
            stats[row] += ce.detach()[mask].double().sum()
            stats[row + 1] += mask.sum()
    if cfg["grad_clip"]:
        torch.nn.utils.clip_grad_norm_(run.lm.lm.parameters(), cfg["grad_clip"])
    run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    if run.world > 1:
        dist.all_reduce(stats)
    return stats


def throughput(run, last, tok_s, samples):
    """The progress bar's postfix: the last step's losses, tokens/s, and MFU on a GPU with a known peak."""
    post = {"motion": f"{last['motion']:.3f}", "text": f"{last['text']:.3f}", "tok/s": f"{tok_s:.0f}"}
    if run.peak:
        seq = np.mean([len(ids) for ids, _ in samples])
        flops = scale.flops_per_token(run.lm.lm.config, run.n_params, seq)
        post["mfu"] = f"{100 * tok_s / run.world * flops / run.peak:.1f}%"
    return post


def checkpoint(run, state, step, val_losses):
    """After a periodic eval: keep the best model (model/), write last/, metrics.jsonl and the loss curves."""
    val_motion, val_text = val_losses
    history, evals = state["history"], state["evals"]
    evals.append({"step": step, "val_motion_loss": val_motion, "val_text_loss": val_text,
                  "train_motion_loss": float(np.mean([h["motion"] for h in history[-50:]]))})
    score = val_text if run.cfg["task"] == "text" else val_motion  # the best model by this
    if score < state["best"]:
        state["best"] = score
        scale.save_best(run.dir, run.lm, run.lm.lm, run.rank, run.parallel)
    state.update(step=step)
    scale.save_last(run.dir, run.lm.lm, run.opt, state, run.rank, run.world)
    if run.rank == 0:
        lines = "".join(json.dumps(e) + "\n" for e in evals)
        atomic_write(run.dir / "metrics.jsonl", lambda p: p.write_text(lines))
        report.plot_curves(run.dir / "loss_curve.png", history, evals)


def final_report(run, state):
    """The whole validation split (all ranks take part): the val losses, and how much the text is worth (the
    loss with every clip's instruction swapped for another's, against the codes' unigram entropy)."""
    cfg, val_pairs = run.cfg, run.val
    val_motion, val_text = evaluate(run, sorted((val_pairs.fixed(i) for i in range(len(val_pairs))),
                                                key=lambda s: len(s[0])))
    metrics = dict(val_text_loss=val_text, params=run.n_params, steps=cfg["max_iters"], model=cfg["model"],
                   world=run.world, parallel=run.parallel, val_clips=len(val_pairs))
    if cfg["task"] == "text":
        metrics |= {"best_val_text_loss": state["best"], "task": "text"}
        return metrics, f"val text loss {val_text:.3f} nats per token (text-only pretraining)"
    sigma = derangement(len(val_pairs), cfg["seed"])
    shuffled, _ = evaluate(run, [val_pairs.fixed(i, text_of=int(sigma[i])) for i in range(len(val_pairs))])
    entropy, per_slot = unigram_entropy(val_pairs)
    metrics |= {"val_motion_loss": val_motion, "unigram_motion_entropy": entropy,
                "unigram_motion_entropy_per_slot": per_slot, "shuffled_caption_motion_loss": shuffled,
                "text_conditioning_gap": shuffled - val_motion, "best_val_motion_loss": state["best"],
                "tokens_per_s": state["tokens"] / max(state["seconds"], 1e-9), "loss": cfg["loss"],
                "note": "nats per motion-code token on the val split; shuffled = every clip's "
                        "instruction swapped for another clip's (a derangement)"}
    return metrics, (f"val loss {val_motion:.3f} nats per motion token; unigram entropy {entropy:.3f}; with "
                     f"swapped captions {shuffled:.3f} (the text is worth {shuffled - val_motion:.3f}); "
                     f"{metrics['tokens_per_s']:.0f} tokens/s")


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


# ----------------------------------------------------------------------------------------------
# the model a run starts from, and the paper-claim options (experiments/claims.py: Tables 9 and 2)
def build_or_load(cfg, run_dir, codes, data, rank, world):
    """A fresh run: rank 0 builds the model (its BPE and motion vocabulary from the train captions), or takes
    --init_from's, saves it, and the other ranks load that, so that every rank starts from the same weights
    and vocabulary. A resumed run loads the saved one (the weights are then overwritten from last/)."""
    if not cfg["resume"]:
        if rank == 0 and cfg["init_from"]:
            lm = from_run(cfg["init_from"], codes, cfg["length_token"])
            lm.save(run_dir)
        elif rank == 0:
            texts = []
            for i in data.split("train"):
                texts += [*data.texts[i]["captions"], *(data.texts[i].get("parts") or {}).values()]
            lm = lm_model.build(cfg["model"], K=codes.K, P=codes.P, captions=texts, **{k: cfg[k] for k in (
                "init", "motion_vocab", "seed", "motion_clock", "length_token", "countdown")})
            lm.save(run_dir)
        if world > 1:
            dist.barrier()
        if rank == 0:
            return lm
    recover_dir(run_dir / "model")
    return lm_model.load(run_dir)


def from_run(init_from, codes, length_token):
    """--init_from: the model of another run (Table 9 at tiny scale: one pretrained on text alone)."""
    lm = lm_model.load(init_from)
    if (lm.K, lm.P, len(lm.length_ids) > 0) != (codes.K, codes.P, length_token):
        raise ValueError(f"--init_from={init_from}: its motion vocabulary has K = {lm.K}, P = {lm.P}, length "
                         f"tokens {len(lm.length_ids) > 0}; this run: K = {codes.K}, P = {codes.P}, "
                         f"--length_token={length_token}")
    remake = f"rerun python train.py --run_name={Path(init_from).name}"
    if read_run_file(Path(init_from) / "config.json", remake).get("task") == "text":
        # as a pretrained checkpoint gets new motion rows (--motion_vocab=add): text-only training never had a
        # code as its target, and its softmax pushed the code rows' logits down all along
        fresh_rows(lm.lm, torch.cat([lm.motion_ids, lm.length_ids]))
    return lm


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


def main(argv):
    overrides = parse_args(argv, CONFIG, "train.py")
    cfg = {**CONFIG, **overrides}
    run_dir = Path(cfg["out_dir"]) / cfg["run_name"]
    if cfg["estimate"]:  # the memory per GPU of this run, from a meta-device model (no weights read)
        scale.estimate(cfg, lm_model.hf_config(lm_model.model_spec(cfg["model"])))
        return
    if cfg["resume"]:
        cfg = resume_settings(run_dir, CONFIG, overrides, ARCH_KEYS)
    train(cfg)


if __name__ == "__main__":
    cli(main, "train.py")
