"""Benchmark of the LFQ entropy loss (forward + backward): dense N x K vs chunked reference vs Triton kernels.

    python bench/bench_lfq.py                                  # N in {4096, 16384, 65536}, d in {10, 14, 16}
    python bench/bench_lfq.py --n=4096,16384 --d=10,14 --max_pairs=268435456

Methods, each timed on `loss = sample_entropy - codebook_entropy; loss.backward()` for z [N, d] fp32:
- dense:     what popular LFQ implementations do: logits 2 z C^T / T for all K = 2^d codes as one N x K
             tensor, softmax, mean over samples, entropies (autograd keeps several N x K tensors);
- reference: kernels.lfq's PyTorch path (tiles of samples, never N x K);
- triton:    kernels.lfq's Triton kernels (CUDA only).
Every case runs in a fresh process: one warm-up run, then --repeats timed runs (the median is reported) whose
peak memory is measured as what they allocate beyond what was there before them: on CUDA with
torch.cuda.max_memory_allocated; on the CPU as the resident-set high-water mark (VmHWM, reset through
/proc/self/clear_refs after the warm-up) minus the resident size before, with glibc's mmap threshold pinned
so that freed tensors leave the process (the number follows live tensors). A dense case whose estimated memory
(DENSE_TENSORS x N x K x 4 bytes) exceeds --mem_gib, and on the CPU any case above --max_pairs (N x K), is
skipped and the table says why. Prints one table, ratios from this one run.
"""

import argparse
import itertools
import math
import multiprocessing
import os
import statistics
import sys
import time

import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kernels.lfq as lfq  # noqa: E402

# ---- config (override with --key=value) ----
N_VALUES = "4096,16384,65536"
D_VALUES = "10,14,16"
TEMPERATURE = 0.1
REPEATS = 3
MEM_GIB = 0.0  # memory a case may use; 0: 80% of free GPU memory on CUDA, 8 GiB on the CPU (a shared box)
MAX_PAIRS = 0  # largest N x K run on the CPU (time); 0: 2^28 on the CPU, no limit on CUDA
DENSE_TENSORS = 6  # N x K fp32 tensors alive at the dense method's peak (measured on the CPU: 6.0)


def dense_entropy(z: torch.Tensor, temperature: float):
    """The usual formulation: every code's logit for every sample in one N x K tensor."""
    d = z.shape[-1]
    codes = lfq.lfq_codes(torch.arange(2**d, device=z.device), d)  # [K, d]
    prob = torch.softmax(2 * z @ codes.T / temperature, dim=-1)  # [N, K]
    sample_entropy = -(prob * torch.log(prob.clamp_min(1e-30))).sum(-1).mean()
    avg_prob = prob.mean(0)
    codebook_entropy = -(avg_prob * torch.log(avg_prob.clamp_min(1e-30))).sum()
    return sample_entropy, codebook_entropy


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key)) * 1024


def measure(method: str, n: int, d: int, temperature: float, repeats: int, device: str, results):
    """Runs in a child process: puts (median seconds, peak bytes) for one case into `results`."""
    lfq.BACKEND = "triton" if method == "triton" else "reference"
    entropy = dense_entropy if method == "dense" else lfq.lfq_entropy
    cuda = device == "cuda"

    def step(z):
        sample_entropy, codebook_entropy = entropy(z, temperature)
        (sample_entropy - codebook_entropy).backward()
        if cuda:
            torch.cuda.synchronize()

    gen = torch.Generator(device=device).manual_seed(0)
    z = torch.randn(n, d, device=device, generator=gen, requires_grad=True)
    step(z)  # warm-up: libraries, code pages, kernel compilation
    z.grad = None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS now
        before = _proc_status_bytes("VmRSS:")
    times = []
    for _ in range(repeats):
        z.grad = None
        start = time.perf_counter()
        step(z)
        times.append(time.perf_counter() - start)
    if cuda:
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = _proc_status_bytes("VmHWM:") - before
    results.put((statistics.median(times), peak))


def run_case(method, n, d, args):
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    case = (method, n, d, args.temperature, args.repeats, args.device, results)
    proc = ctx.Process(target=measure, args=case)
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        return f"failed (exit code {proc.exitcode})"
    return results.get()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default=N_VALUES, help="comma-separated sample counts N")
    parser.add_argument("--d", default=D_VALUES, help="comma-separated bits per code d (K = 2^d)")
    parser.add_argument("--temperature", type=float, default=TEMPERATURE)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--mem_gib", type=float, default=MEM_GIB)
    parser.add_argument("--max_pairs", type=int, default=MAX_PAIRS)
    args = parser.parse_args()
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        mem = args.mem_gib * 2**30 or 0.8 * free
        max_pairs = args.max_pairs or math.inf
        methods = ["dense", "reference", "triton"]
        device_name = torch.cuda.get_device_name()
    else:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"  # read by the children's glibc at start-up
        mem = args.mem_gib * 2**30 or 8 * 2**30
        max_pairs = args.max_pairs or 2**28
        methods = ["dense", "reference"]
        device_name = f"CPU ({os.cpu_count()} cores)"

    cases = list(itertools.product([int(v) for v in args.n.split(",")], [int(v) for v in args.d.split(",")]))
    rows = []
    for n, d in tqdm(cases, desc="cases"):
        row = {"N": n, "d": d}
        for method in methods:
            pairs, dense_bytes = n * 2**d, DENSE_TENSORS * n * 2**d * 4
            if method == "dense" and dense_bytes > mem:
                row[method] = f"skip: ~{dense_bytes / 2**30:.0f} GiB > {mem / 2**30:.0f} GiB"
            elif pairs > max_pairs:
                row[method] = f"skip: N*K = 2^{math.log2(pairs):.0f} > --max_pairs"
            else:
                row[method] = run_case(method, n, d, args)
        rows.append(row)

    print(f"\nLFQ entropy, forward + backward, fp32, T = {args.temperature}, on {device_name}")
    print("time in ms, peak memory in MiB; ratios = dense / other (higher: the other is better)\n")
    header = ["N", "d", "K"] + [f"{m} {unit}" for m in methods for unit in ("ms", "MiB")]
    header += [f"{m} {what}" for m in methods[1:] for what in ("time x", "mem x")]
    lines = [header]
    for row in rows:
        line = [str(row["N"]), str(row["d"]), str(2 ** row["d"])]
        for method in methods:
            got = row[method]
            line += [f"{got[0] * 1e3:.1f}", f"{got[1] / 2**20:.1f}"] if isinstance(got, tuple) else [got, ""]
        for method in methods[1:]:
            dense, other = row["dense"], row[method]
            if isinstance(dense, tuple) and isinstance(other, tuple):
                line += [f"{dense[0] / other[0]:.2f}", f"{dense[1] / max(other[1], 1):.1f}"]
            else:
                line += ["", ""]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
