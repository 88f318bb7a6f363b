#!/usr/bin/env bash
# The checks that need a GPU, prepared as one command for a session that is lent one (the device tool):
# the Triton LFQ kernels for real (their tests without the interpreter; bench_lfq.py against the bit-split
# torch path and dense) and bench_lm.py --model=gpt2-medium (tokens/s, MFU, and the peak memory beside
# train.py's estimate). Each writes to $OUT, which the device tool brings back; commit them under docs/results/.
#
#     bash bench/gpu_checks.sh        # a python3 with torch, triton and transformers; smplx from wheels/ if given
set -uo pipefail  # one failing check does not stop the others
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
if [ -d wheels ]; then python3 -m pip install -q --no-index --find-links wheels smplx; fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv >"$OUT/gpu.csv"
python3 -m pytest -q -p no:cacheprovider tests/test_lfq.py >"$OUT/lfq_tests.txt" 2>&1
python3 bench/bench_lfq.py >"$OUT/bench_lfq.md" 2>&1
python3 bench/bench_lm.py --model=gpt2-medium --batch_size=16 --seq=512 --compile >"$OUT/bench_lm.md" 2>&1
tail -n 3 "$OUT"/*
