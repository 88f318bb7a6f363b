"""Training at scale, for train.py: the memory plan per GPU, DDP / FSDP2 wrapping (a model started on the
meta device materialised), the log's line per log step, the sharded checkpoints that --resume reads, and model
FLOPs utilisation. One process on a CPU uses the same code with world = 1."""

import json
import math
import os
import resource
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import transformers
from torch.distributed.checkpoint import state_dict as dcp_state
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

import model as lm_model
from common import atomic_write, make_temp_dir, read_run_file, recover_dir, replace_dir, write_json

# dcp in one process says so at every save and load
warnings.filterwarnings("ignore", message=".*assuming the intent is to (save|load) in a single process")
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "A800": 312e12, "L40S": 362e12,
                   "A10": 125e12, "4090": 165e12, "3090": 71e12}  # dense, per GPU, from the vendors' sheets


# ----------------------------------------------------------------------------------------------
# memory: what a run needs per GPU, before it starts
LOGIT_BYTES = 14  # per logit at the loss's peak (test_train measures it on masked_losses): the model's bf16
# logits (2), their fp32 copy (4), its shifted flat copy (4) and the log-softmax cross_entropy keeps (4)


def memory_estimate(hf_config, n_params, micro_batch, seq, shards, activation_checkpointing, bf16, ddp=False):
    """Bytes per GPU of training, by what holds them (train.py prints it and refuses a run that will not fit).
    Parameters are kept in fp32 (the optimizer's master copy; bf16 is autocast, or FSDP's MixedPrecisionPolicy
    casts a gathered layer), gradients in fp32, AdamW two fp32 states; FSDP shards all three over `shards`
    ranks and gathers about two layers at a time in bf16. Gradient accumulation adds nothing: FSDP
    reduce-scatters every micro-batch (train_step), so a rank holds its shard plus, in flight, about two
    layers' unsharded bf16 gradients, their fp32 copies for the reduction and its flat input
    (`reduce_buffers`, 10 bytes a parameter); DDP's buckets are a second fp32 gradient (4 bytes a parameter:
    the gradients are set to None each step, so they are views of the buckets only after a sync). Activations:
    about 34·s·b·h bytes per layer in bf16 with SDPA attention (Korthikanti et al. 2022), 2·s·b·h per layer
    plus one layer's worth with activation checkpointing; logits b·s·V, LOGIT_BYTES each."""
    layers, width, vocab = hf_config.num_hidden_layers, hf_config.hidden_size, hf_config.vocab_size
    act_bytes = 1 if bf16 else 2  # fp32 activations are twice the bf16 ones
    per_layer = 34 * seq * micro_batch * width * act_bytes
    acts = (layers * 2 * seq * micro_batch * width * act_bytes + per_layer) if activation_checkpointing \
        else layers * per_layer
    sharded = shards > 1
    est = {"parameters": 4 * n_params / shards + (2 * 2 * n_params / layers if sharded else 0),
           "gradients": 4 * n_params / shards,
           "reduce_buffers": 2 * 10 * n_params / layers if sharded else 4 * n_params if ddp else 0,
           "adamw_states": 8 * n_params / shards, "activations": acts,
           "logits": LOGIT_BYTES * micro_batch * seq * vocab}
    est["total"] = sum(est.values())
    return est


def memory_plan(hf_config, n_params, cfg, world, seq, bf16, gpu_bytes, say=True):
    """-> (parallel, micro-batch, memory_estimate per GPU) for this run on `world` ranks, printed (say)."""
    auto = "fsdp" if n_params > 1e9 else "ddp"  # auto: shard the model (FSDP2) above 1B parameters
    parallel = "single" if world == 1 else auto if cfg["parallel"] == "auto" else cfg["parallel"]
    micro = max(1, cfg["batch_size"] // world // cfg["gradient_accumulation_steps"])
    est = memory_estimate(hf_config, n_params, micro, seq, world if parallel == "fsdp" else 1,
                          cfg["activation_checkpointing"], bf16, ddp=parallel == "ddp")
    if say:
        rows = "  ".join(f"{k} {v / 2**30:.1f}" for k, v in est.items() if k != "total")
        print(f"memory per GPU, {cfg['model']} on {world} x {parallel}: {rows} -> total "
              f"{est['total'] / 2**30:.1f} GiB" + (f" of {gpu_bytes / 2**30:.0f} GiB" if gpu_bytes else ""))
    return parallel, micro, est


def estimate(cfg, spec, K):
    """train.py --estimate: print the memory per GPU of the run `cfg` describes, for a model of the spec's
    architecture with its vocabulary grown by <mot>, </mot>, <pad>, a codebook of K (motion_vocab=add) and
    the length tokens, built on the meta device (no weights read, no memory taken)."""
    world = cfg["gpus"] or int(os.environ.get("WORLD_SIZE", 1))
    base = spec["vocab_size"] or lm_model.TINY_BPE
    vocab = lm_model.grown_vocab(base, K, cfg["motion_vocab"], lm_model.LENGTH_TOKENS * cfg["length_token"],
                                 has_pad=False)
    hf_config = lm_model.hf_config(spec, vocab)
    with torch.device("meta"):
        n_params = sum(p.numel() for p in
                       transformers.AutoModelForCausalLM.from_config(hf_config).parameters())
    seq = min(hf_config.max_position_embeddings, 512)
    _, micro, est = memory_plan(hf_config, n_params, cfg, world, seq, cfg["dtype"] != "float32",
                                cfg["gpu_gib"] * 2**30)
    print(f"({n_params / 1e9:.2f}B parameters with the {hf_config.vocab_size - base} motion rows of a "
          f"codebook of {K}; sequences of {seq} tokens, micro-batch {micro})")
    return est


def mfu(device, hf_config, n_params, seq, tok_s):
    """Model FLOPs utilisation of a GPU training tok_s tokens/s of sequences of `seq` tokens: per token 6N
    for the matmuls (forward and backward) + 12·L·h·s for attention (PaLM appendix B; nanoGPT), over the
    GPU's dense bf16 peak (PEAK_BF16_FLOPS); None on a CPU or an unlisted GPU."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    peak = next((f for k, f in PEAK_BF16_FLOPS.items() if k in name), None)
    flops = 6 * n_params + 12 * hf_config.num_hidden_layers * hf_config.hidden_size * seq
    return tok_s * flops / peak if peak else None


# ----------------------------------------------------------------------------------------------
# the module the training loop calls
def wrap(lm, cfg, parallel, device, bf16, rank=0):
    """The bare model, DDP around it, or the model sharded in place by FSDP2 (each decoder layer, then the
    root; bf16 parameters with fp32 gradient reduction on a GPU, fp32 on the CPU). A model on the meta device
    (train.build_or_load: the ranks but 0, or a resumed run) is materialised on `device`; a fresh run's ranks
    then get rank 0's weights: DDP broadcasts them as it starts, FSDP's shards come from rank 0's full state
    dict (broadcast_from_rank0: no other rank reads or holds the whole). A resumed run's come from last/."""
    if cfg["activation_checkpointing"]:
        lm.lm.activation_checkpointing_enable()
    fresh = not cfg["resume"]
    if parallel == "fsdp":
        full = lm.lm.state_dict() if rank == 0 and fresh else {}  # rank 0's weights, on the CPU
        lm.lm.to("meta").tie_weights()  # every rank alike (the move untied them): shard the empty model, then
        # fill it
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else torch.float32,
                                      reduce_dtype=torch.float32)
        for module in lm.lm.modules():
            if type(module).__name__ in (lm.lm._no_split_modules or ()):
                fully_shard(module, mp_policy=policy)
        fully_shard(lm.lm, mp_policy=policy)
        materialise(lm.lm, device)
        if fresh:
            dcp_state.set_model_state_dict(lm.lm, full, options=dcp_state.StateDictOptions(
                full_state_dict=True, broadcast_from_rank0=True))
        del full
        module = lm.lm
    else:
        if next(lm.lm.parameters()).is_meta:
            materialise(lm.lm, device)
        module = lm.lm.to(device)
        if parallel == "ddp":  # it broadcasts rank 0's parameters and buffers as it starts
            module = torch.nn.parallel.DistributedDataParallel(  # buckets as the gradients' storage: no copy
                module, device_ids=[device.index] if device.type == "cuda" else None,
                gradient_as_bucket_view=True)
    return torch.compile(module) if cfg["compile"] else module


def materialise(hf_model, device):
    """A model built on the meta device (load(weights=False)), on `device`: its parameters' memory allocated
    but not set (they are filled from rank 0 or a checkpoint), and the buffers no state dict holds (Llama's
    rotary frequencies) computed as its constructor computes them; tied weights tied again (to_empty gives
    each module its own tensor of a plain model)."""
    hf_model.to_empty(device=device)
    hf_model.tie_weights()
    with torch.no_grad():
        for module in hf_model.modules():
            if module._non_persistent_buffers_set and not list(module.parameters(recurse=False)):
                hf_model._init_weights(module)  # transformers' own: for the rotary embedding, its buffers
    return hf_model



# ----------------------------------------------------------------------------------------------
# the log: a line per log step
def log_step(run, state, pending, tokens, since):
    """The steps since the last log step (at time `since`), fetched from the device at once: their losses
    join the history; a non-finite loss or gradient stops the run naming its step and clips (before any
    checkpoint: the last one is left as it was); a line of loss, lr, tokens/s, MFU, grad norm and peak memory
    joins metrics.jsonl -> that line."""
    values = torch.stack([v for *_, v in pending]).tolist()  # the host sync: the GPU's queue is done
    seconds = time.time() - since
    for (step, lr, clip_ids, _), v in zip(pending, values, strict=True):
        if v[4] or not math.isfinite(v[6]):  # a loss, or a gradient (a bf16 overflow in the backward)
            what = "loss" if v[4] else "gradient"
            where = f"on this rank (clips {', '.join(clip_ids)})" if v[5] or not v[4] else "on another rank"
            raise ValueError(f"non-finite {what} at step {step} {where}; the last checkpoint in {run.dir} "
                             "is as it was")
        state["history"].append({"motion": mean(v[0], v[1]), "text": mean(v[2], v[3]), "lr": lr})
    state["tokens"], state["seconds"] = state["tokens"] + tokens, state["seconds"] + seconds
    tok_s = tokens / seconds
    seq = tokens / len(pending) / run.cfg["batch_size"]
    util = mfu(run.device, run.hf_model.config, run.n_params, seq, tok_s / run.world)
    peak = (torch.cuda.max_memory_allocated(run.device) if run.device.type == "cuda" else
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # Linux: KiB
    last = state["history"][-1]
    record = {"step": pending[-1][0] + 1, "motion_loss": round(last["motion"], 4),
              "text_loss": round(last["text"], 4), "lr": pending[-1][1], "tokens_per_s": round(tok_s),
              "mfu": None if util is None else round(util, 4), "grad_norm": round(values[-1][6], 4),
              "peak_memory_gib": round(peak / 2**30, 2)}
    state["log"].append(record)
    if run.rank == 0:
        with open(run.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
    return {"step": record["step"], "motion": f"{last['motion']:.3f}", "text": f"{last['text']:.3f}",
            "lr": f"{record['lr']:.2e}", "tok/s": f"{tok_s:.0f}", "mfu": util and f"{100 * util:.1f}%",
            "grad_norm": f"{record['grad_norm']:.3f}", "peak_gib": f"{record['peak_memory_gib']:.2f}"}


def mean(total, n):
    """A sum over a count, as a float; nan for none (a text-only run has no motion tokens)."""
    return total / n if n else float("nan")


def write_log(run_dir, log):
    """metrics.jsonl: the log's lines (log steps and evaluations), written whole."""
    lines = "".join(json.dumps(e) + "\n" for e in log)
    atomic_write(run_dir / "metrics.jsonl", lambda p: p.write_text(lines))


# ----------------------------------------------------------------------------------------------
# checkpoints: last/ (resume) and model/ (the best weights), each one folder swapped into place
def save_last(run_dir, lm_module, opt, progress, rank, world):
    """Each rank writes its shards (torch.distributed.checkpoint) to one temp folder; rank 0 swaps it in."""
    tmp = [str(make_temp_dir(run_dir / "last")) if rank == 0 else None]
    if world > 1:
        dist.broadcast_object_list(tmp)
    tmp = Path(tmp[0])
    msd, osd = dcp_state.get_state_dict(lm_module, opt)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=tmp / "state")
    cuda_rng = torch.cuda.get_rng_state() if torch.cuda.is_available() else None
    torch.save({"cpu": torch.get_rng_state(), "cuda": cuda_rng}, tmp / f"rng_{rank}.pt")
    if world > 1:
        dist.barrier()
    if rank == 0:
        write_json(tmp / "progress.json", {**progress, "world": world})
        lm_module.config.to_json_file(tmp / "config.json")  # the architecture a resume builds (train.py)
        replace_dir(tmp, run_dir / "last")
    if world > 1:
        dist.barrier()


def load_last(run_dir, lm_module, opt, rank):
    """The training progress saved in last/, with the model, optimizer and this rank's RNG restored."""
    last = recover_dir(run_dir / "last")  # a kill between replace_dir's two renames left it aside
    if last is None or not (last / "progress.json").is_file():
        raise FileNotFoundError(f"{run_dir / 'last'}: no checkpoint to resume from")
    # a damaged last/ fails naming it, before anything is written: --resume never starts over by itself
    remake = f"cannot resume from it; start over without --resume (python train.py --run_name={run_dir.name})"
    progress = read_run_file(last / "progress.json", remake)
    msd, osd = dcp_state.get_state_dict(lm_module, opt)
    state = {"model": msd, "optim": osd}
    # dcp.load logs two tracebacks to stderr (through the root logger) before raising on a checkpoint whose
    # metadata it cannot read: the metadata is read first
    read_run_file(last, remake, lambda f: dcp.FileSystemReader(f / "state").read_metadata())
    read_run_file(last, remake, lambda f: dcp.load(state, checkpoint_id=f / "state"))
    dcp_state.set_state_dict(lm_module, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    rng_file = last / f"rng_{rank}.pt"
    if rng_file.is_file():  # absent when resuming on more ranks than the run had
        rng = read_run_file(rng_file, remake)
        torch.set_rng_state(rng["cpu"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return progress


def save_best(run_dir, lm, lm_module, rank, dtype):
    """model/ (+ text tokenizer, motion vocabulary): a Hugging Face folder in the training dtype (bf16 on a
    GPU: half the fp32 master's bytes; last/ keeps the master for an exact resume). Under FSDP each parameter
    is gathered in turn (a collective: every rank calls this) and rank 0 keeps its copy on the CPU. A tied
    weight (GPT-2's head, its embedding) is written once, as Hugging Face writes it: the copies share nothing
    by which it could tell."""
    first = dict(lm_module.named_parameters())  # one name per parameter: a tied one's first
    tied = {name for name, _ in lm_module.named_parameters(remove_duplicate=False)} - first.keys()
    full = {}
    for name, tensor in lm_module.state_dict().items():
        if name in tied:
            continue
        tensor = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor  # FSDP: a DTensor
        if rank == 0:
            full[name] = tensor.detach().to("cpu", dtype, copy=True)
    if rank == 0:
        lm.save(run_dir, state_dict=full)
