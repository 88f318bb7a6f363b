"""Test-wide set-up.

TRITON_INTERPRET must be set before triton is imported anywhere, so that the Triton kernels in
kernels/ run on the CPU (through triton's interpreter) when there is no GPU. On a CUDA machine the
kernels run for real and the variable is left alone.
"""

import importlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402  (torch does not import triton at import time)

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests never download (huggingface_hub reads it when first imported)

# Real data beside the project (../shared/fixtures); absent in a user's clone, present in CI.
FIXTURES = ROOT.parent / "shared" / "fixtures"


LONGEST = "tests/test_readme.py::test_readme_commands_run"  # ~7 min alone: half of the suite's time


def pytest_collection_modifyitems(items):
    """The longest test first: under `make test`'s two workers (pytest -n 2) it runs on one while the other
    takes the rest, instead of starting late and running alone at the end."""
    items.sort(key=lambda item: item.nodeid != LONGEST)


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


@pytest.fixture(scope="session")
def lm_dir(codes_dir, tmp_path_factory):
    """A language-model run trained for 3 steps on codes_dir's pipeline (with its length estimator), for the
    tests that only read it (sampling, editing)."""
    import train

    out = tmp_path_factory.mktemp("lm_run")
    train.train(dict(train.CONFIG, data_dir=str(codes_dir / "ds"), tokenizer_run="t", out_dir=str(out),
                     run_name="r", batch_size=8, max_iters=3, warmup_iters=1, eval_interval=3, eval_iters=1,
                     length_iters=20, device="cpu"), progress=False)
    return out / "r"


@pytest.fixture
def run_script(capsys, monkeypatch):
    """`python <script> args` run in this process -> (exit status, stdout, stderr), ended as common.cli ends
    the script: a ValueError or OSError is status 1 and its one line on stderr. No interpreter start-up (~6 s
    a call); tests/test_cli.py runs the scripts as real processes."""
    from common import cli

    def run(script, *args):
        module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
        monkeypatch.setattr(sys, "argv", [script, *args])
        monkeypatch.delenv("NANOMOTION_DEBUG", raising=False)
        capsys.readouterr()
        try:
            cli(module.main, script)
            status = 0
        except SystemExit as stop:  # sys.exit("message") prints the message and exits with 1
            status = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
        out, err = capsys.readouterr()
        return status, out, err
    return run
