"""A torchrun target for test_train's two-rank test: train.py as its command line runs it, with the end of
every training backward recording the gradient elements this rank then holds, written to
<out_dir>/<run_name>/grad_elements_<rank>.json. Counted: each parameter's .grad (FSDP2: its local shard), and
the unsharded gradient FSDP2 keeps for a parameter between micro-batches when gradient sync is off (the
internals of torch's FSDPParam, read here only)."""

import json
import os
import sys
import weakref
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402
from common import parse_args  # noqa: E402

runs, held = [], []


def gradient_elements(module):
    n = sum((p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad).numel()
            for p in module.parameters() if p.grad is not None)
    for m in module.modules():
        group = m._get_fsdp_state()._fsdp_param_group if hasattr(m, "_get_fsdp_state") else None
        for param in group.fsdp_params if group else ():
            unsharded = getattr(param, "_unsharded_param", None)
            kept = [unsharded.grad if unsharded is not None else None, param.unsharded_accumulated_grad]
            n += sum(g.numel() for g in kept if g is not None)
    return n


def probed_setup(*args, **kwargs):
    run = setup(*args, **kwargs)
    runs.append(weakref.ref(run))  # not kept alive: train() frees its model before the process group goes
    return run


def probed_backward(tensor, *args, **kwargs):
    backward(tensor, *args, **kwargs)
    if runs and len(held) < backwards:  # the LM's micro-batches, not the length estimator fitted after them
        held.append(gradient_elements(runs[-1]().hf_model))


cfg = {**train.CONFIG, **parse_args(sys.argv[1:], train.CONFIG, "train.py")}
backwards = cfg["max_iters"] * cfg["gradient_accumulation_steps"]  # a fresh run's
setup, backward = train.setup, torch.Tensor.backward
train.setup, torch.Tensor.backward = probed_setup, probed_backward
train.main(sys.argv[1:])
out = Path(cfg["out_dir"]) / cfg["run_name"] / f"grad_elements_{os.environ.get('RANK', 0)}.json"
out.write_text(json.dumps(held))
