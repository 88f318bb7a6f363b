"""Benchmark of the LFQ entropy loss (forward + backward): dense N x K, the N x K stream, bit split, Triton.

    python bench/bench_lfq.py                                  # N in {4096, 16384, 65536}, d in {10, 14, 18}
    python bench/bench_lfq.py --n=4096,16384 --d=10,14 --max_pairs=268435456

Methods, each timed on `loss = sample_entropy - codebook_entropy; loss.backward()` for z [N, d] fp32:
- dense:     what popular LFQ implementations do: logits 2 z C^T / T for all K = 2^d codes as one N x K
             tensor, softmax, mean over samples, entropies (autograd keeps several N x K tensors);
- streaming: kernels.lfq's reference before issue 10, kept here as the baseline: p_n(c) for tiles of samples
             x all K codes, summed into the K masses; the backward recomputes the tiles (N K exponentials);
- reference: kernels.lfq's PyTorch path: the bit split, mass = P_hi^T P_lo (paper §4.2's entropy penalty);
- triton:    the Triton kernels of kernels/lfq_triton.py (CUDA only).
Every case runs in fresh processes. Time: one warm-up run, then on the CPU the median of --repeats timed runs,
on CUDA triton.testing.do_bench's median. Peak memory, in a second process: what one run allocates beyond what
was there before it; on CUDA with torch.cuda.max_memory_allocated; on the CPU as the resident-set high-water
mark (VmHWM, reset through /proc/self/clear_refs after a warm-up run) minus the resident size before, with
glibc's mmap threshold pinned so that freed tensors leave the process (the number follows live tensors). The
pinning stays out of the timed process: there it makes every large tensor fresh pages, page-faulted anew on
each tile. A dense case whose estimated memory (DENSE_TENSORS x N x K x 4 bytes) exceeds --mem_gib, and on the
CPU a streaming case above --max_pairs (N x K), is skipped and the table says why; the reference and Triton
run every case. Prints one table, ratios from this one run.
"""

import itertools
import math
import multiprocessing
import os
import statistics
import sys
import time

import torch
import triton.testing
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kernels.lfq as lfq  # noqa: E402
from common import cli, parse_args  # noqa: E402

# settings: plain values, overridden by --key=value
CONFIG = dict(
    n="4096,16384,65536",  # comma-separated sample counts N
    d="10,14,18",  # comma-separated bits per code d (K = 2^d)
    temperature=0.1, repeats=3,  # the entropy's temperature; timed runs per case (the median is reported)
    mem_gib=0.0,  # memory a case may use; 0: 80% of free GPU memory on CUDA, 8 GiB on the CPU (a shared box)
    max_pairs=0,  # largest N x K the streaming method runs on the CPU (time); 0: 2^28 on CPU, none on CUDA
)
DENSE_TENSORS = 6  # N x K fp32 tensors alive at the dense method's peak (measured on the CPU: 6.0)
STREAMING_TILE = 1 << 22  # (sample, code) pairs per streaming tile, as kernels.lfq had it


def dense_entropy(z: torch.Tensor, temperature: float):
    """The usual formulation: every code's logit for every sample in one N x K tensor."""
    d = z.shape[-1]
    codes = lfq.lfq_codes(torch.arange(2**d, device=z.device), d)  # [K, d]
    prob = torch.softmax(2 * z @ codes.T / temperature, dim=-1)  # [N, K]
    sample_entropy = -(prob * torch.log(prob.clamp_min(1e-30))).sum(-1).mean()
    avg_prob = prob.mean(0)
    codebook_entropy = -(avg_prob * torch.log(avg_prob.clamp_min(1e-30))).sum()
    return sample_entropy, codebook_entropy


def _streaming_tiles(z: torch.Tensor, temperature: float):
    """(rows, a = 2z/T, p [C, K] = softmax over all K codes, codes [K, d]) per chunk of C samples."""
    n, d = z.shape
    codes = lfq.lfq_codes(torch.arange(2**d, device=z.device), d)
    chunk = max(1, STREAMING_TILE >> d)
    for start in range(0, n, chunk):
        a = z[start : start + chunk] * (2.0 / temperature)
        log_norm = (a.abs() + torch.log1p(torch.exp(-2 * a.abs()))).sum(-1)  # sum_i log(2 cosh a_i)
        yield slice(start, start + chunk), a, (a @ codes.T).sub_(log_norm[:, None]).exp_(), codes


class StreamingMass(torch.autograd.Function):
    """mass(c) = sum_n p_n(c), streamed over tiles of samples x all K codes; backward:
    dL/dz_ni = (2/T) (sum_c p_n(c) g(c) c_i - gbar_n tanh(a_ni)), gbar_n = sum_c p_n(c) g(c)."""

    @staticmethod
    def forward(ctx, z, temperature):
        mass = torch.zeros(2 ** z.shape[1], device=z.device, dtype=z.dtype)
        for _, _, p, _ in _streaming_tiles(z, temperature):
            mass += p.sum(0)
        ctx.save_for_backward(z)
        ctx.temperature = temperature
        return mass

    @staticmethod
    def backward(ctx, grad_mass):
        (z,) = ctx.saved_tensors
        grad_z = torch.empty_like(z)
        for rows, a, p, codes in _streaming_tiles(z, ctx.temperature):
            weighted = p.mul_(grad_mass)
            gbar = weighted.sum(1, keepdim=True)
            grad_z[rows] = (2.0 / ctx.temperature) * (weighted @ codes - gbar * torch.tanh(a))
        return grad_z, None


def streaming_entropy(z: torch.Tensor, temperature: float):
    x = (4.0 / temperature) * z.abs()  # the per-sample entropy's closed form, as kernels.lfq
    sample_entropy = (torch.nn.functional.softplus(-x) + x * torch.sigmoid(-x)).sum(-1).mean()
    q = StreamingMass.apply(z, temperature) / z.shape[0]
    return sample_entropy, -(q * torch.log(q.clamp_min(1e-30))).sum()


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key)) * 1024


def measure(what: str, method: str, n: int, d: int, temperature: float, repeats: int, device: str, results):
    """Runs in a child process: puts the median seconds (what = "time") or the peak bytes ("memory") of one
    case into `results`."""
    lfq.BACKEND = "triton" if method == "triton" else "reference"
    entropy = {"dense": dense_entropy, "streaming": streaming_entropy}.get(method, lfq.lfq_entropy)
    cuda = device == "cuda"

    def step(z):
        sample_entropy, codebook_entropy = entropy(z, temperature)
        (sample_entropy - codebook_entropy).backward()

    gen = torch.Generator(device=device).manual_seed(0)
    z = torch.randn(n, d, device=device, generator=gen, requires_grad=True)
    step(z)  # warm-up: libraries, code pages, kernel compilation
    z.grad = None
    if what == "time" and cuda:
        results.put(triton.testing.do_bench(lambda: step(z), grad_to_none=[z], return_mode="median") / 1e3)
    elif what == "time":
        times = []
        for _ in range(repeats):
            z.grad = None
            start = time.perf_counter()
            step(z)
            times.append(time.perf_counter() - start)
        results.put(statistics.median(times))
    elif cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(z)
        torch.cuda.synchronize()
        results.put(torch.cuda.max_memory_allocated() - before)
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS now
        before = _proc_status_bytes("VmRSS:")
        step(z)
        results.put(_proc_status_bytes("VmHWM:") - before)


def run_child(what, method, n, d, args):
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=measure, args=(what, method, n, d, args["temperature"], args["repeats"],
                                             args["device"], results))
    if what == "memory" and args["device"] == "cpu":
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"  # read by the child's glibc at start-up
    try:
        proc.start()
    finally:
        os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
    proc.join()
    return results.get() if proc.exitcode == 0 else None


def run_case(method, n, d, args):
    """(seconds, peak bytes), or the reason why not."""
    seconds = run_child("time", method, n, d, args)
    peak = run_child("memory", method, n, d, args) if seconds is not None else None
    return (seconds, peak) if peak is not None else "failed"


def main(argv):
    args = {**CONFIG, **parse_args(argv, CONFIG, "bench/bench_lfq.py")}
    args["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    if args["device"] == "cuda":
        free, _ = torch.cuda.mem_get_info()
        mem = args["mem_gib"] * 2**30 or 0.8 * free
        max_pairs = args["max_pairs"] or math.inf
        methods = ["dense", "streaming", "reference", "triton"]
        device_name = torch.cuda.get_device_name()
    else:
        mem = args["mem_gib"] * 2**30 or 8 * 2**30
        max_pairs = args["max_pairs"] or 2**28
        methods = ["dense", "streaming", "reference"]
        device_name = f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"

    cases = list(itertools.product(*([int(v) for v in args[k].split(",")] for k in ("n", "d"))))
    rows = []
    for n, d in tqdm(cases, desc="cases"):
        row = {"N": n, "d": d}
        for method in methods:
            pairs, dense_bytes = n * 2**d, DENSE_TENSORS * n * 2**d * 4
            if method == "dense" and dense_bytes > mem:
                row[method] = f"skip: ~{dense_bytes / 2**30:.0f} GiB > {mem / 2**30:.0f} GiB"
            elif method == "streaming" and pairs > max_pairs:
                row[method] = f"skip: N*K = 2^{math.log2(pairs):.0f} > --max_pairs"
            else:
                row[method] = run_case(method, n, d, args)
        rows.append(row)

    print(f"\nLFQ entropy, forward + backward, fp32, T = {args['temperature']}, on {device_name}")
    print("time in ms, extra peak memory in MiB; ratios = dense (or streaming) / other: higher, the other is "
          "better\n")
    others = methods[1:]
    header = ["N", "d", "K"] + [f"{m} {unit}" for m in methods for unit in ("ms", "MiB")]
    header += [f"{m} {what}" for m in others for what in ("time x", "mem x")]
    header += [f"{m} time x streaming" for m in others[1:]]
    lines = [header]
    for row in rows:
        line = [str(row["N"]), str(row["d"]), str(2 ** row["d"])]
        for method in methods:
            got = row[method]
            line += [f"{got[0] * 1e3:.1f}", f"{got[1] / 2**20:.1f}"] if isinstance(got, tuple) else [got, ""]
        ratios = [("dense", m, k) for m in others for k in (0, 1)] + [("streaming", m, 0) for m in others[1:]]
        for base, method, k in ratios:
            a, b = row[base], row[method]
            if not (isinstance(a, tuple) and isinstance(b, tuple)):
                line.append("")
                continue
            ratio = a[0] / b[0] if k == 0 else a[1] / max(b[1], 1)
            line.append(f"{ratio:.1f}" if ratio < 10 else f"{ratio:.0f}")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


if __name__ == "__main__":
    cli(main, "bench/bench_lfq.py")
