"""Training throughput of the language model: tokens/s of one optimizer step (forward, backward, AdamW), and
MFU on a GPU.

    python bench/bench_lm.py                                   # the default model (gpt2-tiny) on this machine
    python bench/bench_lm.py --model=gpt2-medium --batch_size=16 --seq=512 --compile   # on a GPU: bf16, MFU

The model is built from its architecture in model.REGISTRY with random weights (no download) and the
vocabulary a motion run gives it (text + K motion codes + 3 specials; a tiny model's text vocabulary is its
512-token BPE); batches are random token ids of one length, so the number is the model's, without data
loading or padding. On a GPU it runs as train.py does there: bf16
autocast, fused AdamW, optionally torch.compile. MFU = tokens/s x (6N + 12·L·h·s) / peak bf16 flops of the GPU
(support/train_scale.mfu). On a GPU it also prints the peak memory of the timed steps
(torch.cuda.max_memory_allocated) beside train.py's estimate for the same model, batch and length
(train_scale.memory_estimate, one GPU): the check that the estimate --estimate prints holds. Prints one table,
everything measured in this run.
"""

import os
import sys
import time

import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import model as lm_model  # noqa: E402
from common import cli, parse_args, pick_device  # noqa: E402
from support import train_scale  # noqa: E402

CONFIG = dict(
    model="gpt2-tiny",  # a name in model.REGISTRY (its architecture; no weights are loaded)
    motion_codes=1024,  # K new vocabulary rows, as --motion_vocab=add makes
    bpe_vocab=512,  # the text vocabulary of a tiny model (its BPE, trained on the captions in a real run)
    batch_size=16, seq=192,  # 192: a synth sequence (caption + 26 steps x 6 codes)
    steps=20, warmup=3,  # timed steps after warm-up steps (compile happens in the warm-up)
    compile=False, device="auto",
)


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "bench/bench_lm.py")}
    device = pick_device(cfg["device"])
    spec = lm_model.model_spec(cfg["model"])
    text_vocab = spec["vocab_size"] or cfg["bpe_vocab"]
    hf = lm_model.hf_config(spec, vocab_size=text_vocab + cfg["motion_codes"] + 3)
    torch.manual_seed(0)
    net = transformers.AutoModelForCausalLM.from_config(hf).to(device)
    n_params = sum(p.numel() for p in net.parameters())
    cuda = device.type == "cuda"
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=cuda)
    step_fn = torch.compile(net) if cfg["compile"] else net
    autocast = torch.autocast("cuda", torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    ids = torch.randint(0, hf.vocab_size, (cfg["batch_size"], cfg["seq"]), device=device)

    def one_step():
        with autocast:
            logits = step_fn(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(cfg["warmup"]):
        one_step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(cfg["steps"]):
        one_step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / cfg["steps"]
    tok_s = cfg["batch_size"] * cfg["seq"] / seconds
    mfu = train_scale.mfu(device, hf, n_params, cfg["seq"], tok_s)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    estimate = train_scale.memory_estimate(hf, n_params, cfg["batch_size"], cfg["seq"], 1, False, cuda)
    peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}" if cuda else "n/a"
    print("| model | params | device | dtype | batch x seq | ms/step | tokens/s | MFU | peak GiB | "
          "estimate GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {cfg['model']} | {n_params / 1e6:.1f}M | {name} | {'bf16 autocast' if cuda else 'fp32'} | "
          f"{cfg['batch_size']} x {cfg['seq']} | {1000 * seconds:.1f} | {tok_s:,.0f} | "
          f"{f'{100 * mfu:.1f}%' if mfu else 'n/a'} | {peak} | {estimate['total'] / 2**30:.2f} |")


if __name__ == "__main__":
    cli(main, "bench/bench_lm.py")
