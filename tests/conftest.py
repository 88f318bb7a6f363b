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
