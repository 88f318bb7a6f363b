"""The Triton kernels of kernels/lfq_triton.py compiled ahead of time for real GPUs, without one: registers
and spills per kernel, number of bits d and GPU architecture.

    python bench/compile_lfq.py                        # sm_80 and sm_90, the d of every tokenizer config
    python bench/compile_lfq.py --archs=90 --ds=10,18 --out=/tmp/compile.json

Each kernel is compiled as kernels/lfq_triton.compile_specs says the wrappers launch it (the same tiles,
constexprs and warps) by Triton's own compiler for a `GPUTarget` (TTIR -> TTGIR -> LLVM IR -> PTX -> cubin,
every step of a real launch but loading it), then the PTX goes through the ptxas of Triton's wheel with -v,
which prints the registers per thread and the bytes spilled to local memory. Spills are loads and stores to
slow memory in the inner loop: the entropy kernels hold two blocks of code probabilities in registers, and a
tile too large for 255 registers per thread spills (at 4 warps, 2.4 KB did; at WARPS_GPU = 8, 24 bytes at
most). TRITON_INTERPRET=1 (the tests' CPU mode) stops `triton.compile`, so this runs without it:
tests/test_compile_lfq.py calls it in a subprocess. The default d: those of every tokenizer config
(tokenizer.py's K, configs/tokenizer*.json, the sweep's log2k). Writes JSON and prints a table.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.compiler import get_ptxas  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import tokenizer  # noqa: E402
from common import cli, parse_args, write_json  # noqa: E402
from experiments.sweep import CONFIG as SWEEP  # noqa: E402
from kernels.lfq_triton import compile_specs  # noqa: E402

# settings: plain values, overridden by --key=value
CONFIG = dict(
    archs="80,90",  # compute capabilities: A100 (sm_80), H100 (sm_90)
    ds="",  # comma-separated bits per code ("": those of every tokenizer config)
    out="docs/results/lfq_compile.json",
)


def tokenizer_bits():
    """log2 K of tokenizer.py's default and of configs/tokenizer*.json (the demo's 10, the paper's 14)."""
    configs = [json.loads(p.read_text()) for p in sorted((ROOT / "configs").glob("tokenizer*.json"))]
    sizes = [tokenizer.CONFIG["codebook_size"], *(c["codebook_size"] for c in configs)]
    return sorted({int(k).bit_length() - 1 for k in sizes})


def config_bits():  # and the sweep's log2k
    return sorted(set(tokenizer_bits()) | {int(b) for b in str(SWEEP["log2k"]).split(",")})


def ptxas_usage(ptx, arch):
    """(registers per thread, spill store bytes, spill load bytes) that ptxas -v reports for the PTX."""
    target = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1)  # sm_90a for Hopper, as Triton writes it
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "k.ptx").write_text(ptx)
        proc = subprocess.run([get_ptxas(arch).path, "-v", f"--gpu-name={target}", str(Path(tmp) / "k.ptx"),
                               "-o", str(Path(tmp) / "k.cubin")], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"ptxas failed for {target}: {proc.stderr[-2000:]}")
    registers = int(re.search(r"Used (\d+) registers", proc.stderr).group(1))
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", proc.stderr)
    return registers, int(spills.group(1)), int(spills.group(2))


def compile_all(archs, ds):
    """[{kernel, d, arch, warps, registers, spill_stores, spill_loads}] for every kernel, d and arch."""
    rows = []
    for arch in archs:
        for d in ds:
            for name, (kernel, signature, constexprs, warps) in compile_specs(d).items():
                source = ASTSource(kernel, signature | dict.fromkeys(constexprs, "constexpr"), constexprs)
                compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                                          options={"num_warps": warps})
                registers, stores, loads = ptxas_usage(compiled.asm["ptx"], arch)
                rows.append({"kernel": name, "d": d, "arch": f"sm_{arch}", "warps": warps,
                             "registers": registers, "spill_stores": stores, "spill_loads": loads})
                print(f"| {name} | {d} | sm_{arch} | {warps} | {registers} | {stores} | {loads} |",
                      flush=True)
    return rows


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "bench/compile_lfq.py")}
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("bench/compile_lfq.py: unset TRITON_INTERPRET (it stops triton.compile)")
    archs = [int(a) for a in str(cfg["archs"]).split(",")]
    ds = [int(d) for d in str(cfg["ds"]).split(",")] if cfg["ds"] else config_bits()
    print(f"Triton {triton.__version__}; ptxas: {get_ptxas(archs[0]).path}\n")
    print("| kernel | d | arch | warps | registers | spill stores (bytes) | spill loads (bytes) |\n"
          "|---|---|---|---|---|---|---|")
    rows = compile_all(archs, ds)
    write_json(Path(cfg["out"]), {"triton": triton.__version__, "archs": archs, "ds": ds, "kernels": rows})
    print(f"\nwrote {cfg['out']}")


if __name__ == "__main__":
    cli(main, "bench/compile_lfq.py")
