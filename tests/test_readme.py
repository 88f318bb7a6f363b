"""The README's commands, run as printed, in order, so that the README cannot rot.

Every shell command in the README's ```bash blocks that needs no download and no GPU runs in a scratch
folder holding the project's scripts, with tiny settings appended (a later --key=value wins), so that the
whole pipeline -- data, tokenizer, codes, language model, evaluator, evaluation, samples, claims, benches --
takes a few minutes. The commands it skips are listed in SKIP, each with its reason; a command matching
neither SKIP nor TINY fails the test, so a new README command is either run or explicitly skipped. CHEAPER
cheapens a few commands further where what it leaves out is checked elsewhere (its reason says where).
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"

# substring of the command -> why it is not run here
SKIP = {
    "make demo": "the whole pipeline at full size (~20 min); each stage's own command runs below",
    "make test": "runs this test",
    "torchrun": "several GPUs (tests/test_train.py runs torchrun with 2 CPU ranks)",
    "tokenizer_paper.json": "the paper's tokenizer (112M parameters, 300k steps): a GPU",
    "humanml3d --run_name=paper": "needs the paper's tokenizer, trained by the command before it on a GPU",
    "--model=gpt2-medium": "downloads GPT-2 medium's weights (and wants a GPU)",
    "--source=smplx": "needs the SMPL-X model files, downloaded under their licence",
    "--t2m_checkpoint": "needs Guo et al.'s evaluator checkpoint and GloVe files (a download)",
}
# script -> settings appended to its README command (tiny data, a few steps)
TINY = {
    "data.py": ["--size=500", "--workers=1"],
    "synth.py": ["--size=2"],
    "tokenizer.py": ["--max_iters=3", "--batch_size=8", "--width=16", "--eval_clips=8", "--ckpt_every=3"],
    "experiments/sweep.py": ["--iters=2", "--kinds=lfq2d,vq", "--log2k=6", "--batch_size=8", "--width=16",
                 "--eval_clips=8"],
    "train.py": ["--max_iters=2", "--batch_size=8", "--eval_iters=1", "--eval_interval=2",
                 "--length_iters=20"],
    "eval.py": ["--max_iters=3", "--batch_size=32", "--eval_clips=16", "--replications=1",
                "--diversity_times=20", "--rprecision_batch=8", "--bootstrap=20"],
    "experiments/multimodality.py": ["--mm_texts=2", "--mm_samples=11", "--bootstrap=20"],
    "sample.py": [],
    "experiments/edits.py": [],
    # an untrained LM in the paper's format writes every motion to the longest: the time is the takes, one per
    # drawn clip and per checkable clip of the split; 16 clips are two R-Precision batches of 8 (fewer clips
    # than a batch leave R@k undefined), and on the test split 4 of seen and 3 of new phrasing, the fewest the
    # *_seen and *_new rows take (the pretrain claim needs R@3_new: 12 clips would fail it); a run's figures
    # keep no bootstrap interval (experiments/claims.py --bootstrap)
    "experiments/claims.py": ["--max_iters=2", "--seeds=1", "--eval_clips=16", "--rprecision_batch=8",
                              "--text_iters=2", "--tokenizer_iters=2", "--bootstrap=20"],
    "bench/bench_lm.py": ["--steps=1", "--warmup=1", "--batch_size=2", "--seq=32"],
    "bench/bench_lfq.py": ["--n=256", "--d=4", "--repeats=1"],
}

# substring of a README command -> (settings appended after its script's TINY ones, why the command still
# checks what it shows); the GIFs, ~0.15 s a frame, were most of sample.py's time
NO_GIF = (["--gif=False"], "the first sample.py command writes a GIF, and tests/test_sample.py checks a "
          "take's (test_cli_writes_npy_and_gif) and an edit's, its source beside it "
          "(test_edit_cli_writes_the_edit_beside_its_source_and_errors_write_nothing)")
CHEAPER = {
    "data.py --show=0,5,12": (["--show=0"], "one clip's GIF is rendered as three are (~0.15 s a frame); "
                              "tests/test_bvh.py renders --show's GIF and BVH "
                              "(test_data_show_writes_a_bvh_beside_the_gif)"),
    "sample.py --text=a person walks forward and waves --bvh": NO_GIF,
    "sample.py --text=a man walks forward. --text=someone squats. --num_samples=3": NO_GIF,
    "sample.py --file=prompts.txt": NO_GIF,
    "sample.py --edit=": NO_GIF,
    "eval.py --eval_clips=200 --replications=2": (["--lm_dir="], "TINY's --eval_clips and --replications "
                                                   "override its two, which would make it `python eval.py`, "
                                                   "the command before it, again: on the ground truth alone "
                                                   "it still parses them"),
}


def readme_commands():
    """Each command line of the README's ```bash blocks, its comment dropped, in order."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [shlex.split(line, comments=True) for block in blocks for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def humanml3d_source(src):
    """A HumanML3D-layout folder (README's DIR) from the real clip in ../shared/fixtures."""
    feats = np.load(FIXTURES / "humanml3d" / "new_joint_vecs_012314.npy")
    (src / "new_joint_vecs").mkdir(parents=True)
    (src / "texts").mkdir()
    for name, cut in (("012314", feats), ("000002", feats[:100]), ("000003", feats[20:90])):
        np.save(src / "new_joint_vecs" / f"{name}.npy", cut)
        (src / "texts" / f"{name}.txt").write_text(f"a person walks {name}#a/DET#0.0#0.0\n")
    (src / "train.txt").write_text("012314\n000003\n")
    (src / "test.txt").write_text("000002\n")


def test_readme_commands_run(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    for entry in ROOT.iterdir():  # the scripts, packages, configs and docs, not data/, out/ or .venv/
        if entry.suffix == ".py" or entry.name in ("kernels", "support", "experiments", "bench", "configs",
                                                   "docs"):
            (work / entry.name).symlink_to(entry)
    (work / "prompts.txt").write_text("a person jumps twice.\nsomeone waves the right hand.\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(work)}
    ran, skipped = [], []
    for argv in readme_commands():
        line = " ".join(argv)
        reason = next((why for key, why in SKIP.items() if key in line), None)
        if reason is None and "DIR" in argv[-1] and "--source=humanml3d" in line:
            if not FIXTURES.is_dir():
                reason = f"needs the real-data fixtures in {FIXTURES}"
            else:
                humanml3d_source(tmp_path / "h3d")
                argv = [a.replace("DIR", str(tmp_path / "h3d")) for a in argv]
        if reason:
            skipped.append((line, reason))
            continue
        assert argv[0] == "python" and argv[1] in TINY, f"README command neither run nor skipped: {line}"
        cheaper = next((more for key, (more, _) in CHEAPER.items() if key in line), [])
        cmd = [sys.executable, *argv[1:], *TINY[argv[1]], *cheaper]
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, \
            f"README command failed: {line}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        ran.append(line)
    print(f"ran {len(ran)} README commands; skipped {len(skipped)}:\n" +
          "\n".join(f"  {line}  ({why})" for line, why in skipped))
    assert len(ran) >= 20, ran


@pytest.mark.parametrize("key", list(SKIP) + list(CHEAPER))
def test_every_skip_and_cheaper_key_still_matches_a_readme_command(key):
    """A SKIP entry whose command left the README would silently skip a new one; a CHEAPER one must match
    exactly one command, or it would cheapen another."""
    matches = sum(key in " ".join(argv) for argv in readme_commands())
    assert matches == 1 if key in CHEAPER else matches >= 1, f"{matches} README commands match {key!r}"
