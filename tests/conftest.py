"""Test-wide set-up.

TRITON_INTERPRET must be set before triton is imported anywhere, so that the Triton kernels in
kernels/ run on the CPU (through triton's interpreter) when there is no GPU. On a CUDA machine the
kernels run for real and the variable is left alone.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402  (torch does not import triton at import time)

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Real data beside the project (../shared/fixtures); absent in a user's clone, present in CI.
FIXTURES = ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"real-data fixtures not found at {FIXTURES} (they live beside the project, not in it)")
    return FIXTURES


@pytest.fixture(scope="session")
def codes_dir(tmp_path_factory):
    """A tiny pipeline for the language-model tests: 40 synth clips (30 train, 5 val, 5 test) in ds/, a 2D-LFQ
    tokenizer (K = 64, P = 6) trained for 10 steps in tok/t/, and every clip's codes in ds/tokens/t/."""
    import data
    import synth
    import tokenizer as tk

    root = tmp_path_factory.mktemp("lm")
    clips = [synth.generate_clip(i, 0) for i in range(40)]
    ids = [c["id"] for c in clips]
    data.write_dataset(root / "ds", clips, name="ds", joints_num=22,
                       splits={"train": ids[:30], "val": ids[30:35], "test": ids[35:]})
    cfg = dict(tk.CONFIG, width=16, depth=1, codebook_size=64, window=32, batch_size=8, max_iters=10,
               warmup_iters=2, log_every=5, ckpt_every=100, device="cpu", eval_clips=2,
               data_dir=str(root / "ds"), out_dir=str(root / "tok"), run_name="t")
    tk.train(cfg, progress=False)
    tk.encode_dataset(root / "tok" / "t", root / "ds")
    return root
