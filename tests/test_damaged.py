"""A damaged run folder (a file cut short by a full disk or an interrupted copy, or edited by hand) fails with
one line, `<script>: <file>: damaged or incomplete (<why>); <what makes it again>`, exit status 1, and writes
nothing: the LM run, the tokenizer run, the evaluator, the codes, the dataset, and --resume from a damaged
checkpoint (which says so, never starting over). common.read_run_file is the one place that opens them."""

import json
import re
import shutil
from pathlib import Path

import pytest

import data
import eval as ev_mod
import sample
import train
from support import eval_evaluator as evaluator
from support.codes import Codes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(codes_dir, tmp_path_factory):
    """A briefly trained LM run lm/r (model/, last/, ...) on the shared tiny pipeline, an evaluator ev/."""
    out, ds = tmp_path_factory.mktemp("runs"), str(codes_dir / "ds")
    train.train(dict(train.CONFIG, data_dir=ds, tokenizer_run="t", out_dir=str(out / "lm"), run_name="r",
                     batch_size=8, max_iters=2, warmup_iters=1, eval_interval=2, eval_iters=1,
                     length_iters=20, device="cpu"),
                progress=False)
    evaluator.train_evaluator(dict(ev_mod.CONFIG, data_dir=ds, evaluator_dir=str(out / "ev"), width=16,
                                   heads=2, text_layers=1, motion_layers=1, emb_dim=8, bpe_vocab_size=300,
                                   batch_size=8, max_iters=1, warmup_iters=1, device="cpu"), progress=False)
    return out


def cut(path, size):  # the file's first `size` bytes, as a full disk or an interrupted copy leaves it
    path.write_bytes(path.read_bytes()[:size])


def files(root):  # every file and folder under root with its size and mtime: did anything get written?
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob("*")}


def one_line(run_script, tmp_path, script, *args):
    """Run `python script args` (conftest's run_script) -> its one stderr line, after checking status 1 and
    that nothing under tmp_path (the damaged copies and the outputs) was written."""
    before = files(tmp_path)
    status, _, err = run_script(script, *args)
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1, err[-3000:]
    assert files(tmp_path) == before
    return lines[0]


def copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["LM weights", "LM config", "tokenizer weights"])
def test_sample_names_the_damaged_file(runs, codes_dir, tmp_path, damage, run_script):
    lm = copy(runs / "lm" / "r", tmp_path / "r")
    remake = "rerun python train.py --run_name=r"
    if damage == "LM weights":
        bad = lm / "model" / "model.safetensors"
        cut(bad, 1000)
    elif damage == "LM config":
        bad = lm / "config.json"
        bad.write_text("{tokenizer: 't'}")
    else:  # the tokenizer run that the LM run names
        tok = copy(codes_dir / "tok" / "t", tmp_path / "tok")
        config = json.loads((lm / "config.json").read_text())
        (lm / "config.json").write_text(json.dumps({**config, "tokenizer": str(tok)}))
        bad, remake = tok / "model.safetensors", "rerun python tokenizer.py --run_name=tok"
        cut(bad, 1000)
    line = one_line(run_script, tmp_path, "sample.py", f"--lm_dir={lm}", "--text=a man waves", "--device=cpu",
                    f"--out_dir={tmp_path / 'samples'}")
    assert line.startswith(f"sample.py: {bad}: damaged or incomplete (") and line.endswith(remake), line
    print(line)


def test_eval_names_the_damaged_evaluator(runs, codes_dir, tmp_path, run_script):
    ev = copy(runs / "ev", tmp_path / "ev")
    cut(ev / "model.safetensors", 1000)
    ds = codes_dir / "ds"
    line = one_line(run_script, tmp_path, "eval.py", f"--evaluator_dir={ev}", f"--data_dir={ds}", "--lm_dir=",
                    f"--out={tmp_path / 'eval.json'}", "--device=cpu")
    assert line.startswith(f"eval.py: {ev / 'model.safetensors'}: damaged or incomplete (") and \
        line.endswith("; rerun python eval.py --train_evaluator"), line
    print(line)


def test_resume_from_a_damaged_checkpoint_says_so(runs, tmp_path, run_script):
    """train.py --resume with last/'s metadata cut short (dcp would log tracebacks reading it), and with its
    shard cut short (in-process): one message naming last/; nothing is trained or written."""
    lm = copy(runs / "lm" / "r", tmp_path / "lm" / "r")
    (lm / "last" / "state" / ".metadata").write_bytes(b"")
    line = one_line(run_script, tmp_path, "train.py", "--resume", f"--out_dir={tmp_path / 'lm'}",
                    "--run_name=r")
    expected = f"train.py: {lm / 'last'}: damaged or incomplete ("
    assert line.startswith(expected) and "cannot resume from it; start over without --resume" in line, line
    print(line)
    shutil.copy(runs / "lm" / "r" / "last" / "state" / ".metadata", lm / "last" / "state" / ".metadata")
    cut(lm / "last" / "state" / "__0_0.distcp", 5000)
    before = files(tmp_path)
    cfg = train.resume_settings(lm, train.CONFIG, {"out_dir": str(tmp_path / "lm"), "run_name": "r"},
                                train.ARCH_KEYS)
    with pytest.raises(ValueError, match=r"/lm/r/last: damaged or incomplete \(.*\); cannot resume") as e:
        train.train({**cfg, "resume": True}, progress=False)
    print(e.value)
    assert files(tmp_path) == before


def test_tokenizer_resume_from_a_damaged_train_state(codes_dir, tmp_path, run_script):
    tok = copy(codes_dir / "tok" / "t", tmp_path / "tok" / "t")
    cut(tok / "train_state.pt", 5000)
    line = one_line(run_script, tmp_path, "tokenizer.py", "--resume", f"--out_dir={tmp_path / 'tok'}",
                    "--run_name=t")
    assert line.startswith(f"tokenizer.py: {tok / 'train_state.pt'}: damaged or incomplete (") and \
        line.endswith("cannot resume from it; start over without --resume"), line
    print(line)


@pytest.mark.parametrize("name", ["motion_vocab.json", "text_tokenizer/merges.txt", "model/config.json"])
def test_every_file_of_an_lm_run(runs, tmp_path, name):
    lm = copy(runs / "lm" / "r", tmp_path / "r")
    cut(lm / name, 20)
    named = lm / name.replace("/merges.txt", "")  # (a text tokenizer fails as its folder)
    with pytest.raises(ValueError, match=f"^{re.escape(str(named))}: damaged or incomplete \\(.*\\); rerun"):
        sample.load_run(lm)


def test_codes_and_dataset(codes_dir, tmp_path):
    ds = copy(codes_dir / "ds", tmp_path / "ds")
    cut(ds / "tokens" / "t" / "codes.npy", 100)
    with pytest.raises(ValueError, match=r"tokens/t/codes\.npy: damaged or incomplete \(.*\); remake them"):
        Codes(ds, "t", data.MotionData(ds))
    (ds / "tokens" / "t" / "meta.json").write_text("{")
    with pytest.raises(ValueError, match=r"tokens/t/meta\.json: damaged or incomplete \(Expecting"):
        Codes(ds, "t", data.MotionData(ds))
    cut(ds / "mean.npy", 100)
    with pytest.raises(ValueError, match=r"ds/mean\.npy: truncated or not an \.npy array"):
        data.MotionData(ds)
