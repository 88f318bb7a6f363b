"""Every way a run stops is clean: a strict error with worker processes exits (10 runs, each under a timeout)
with one line naming the file; Ctrl-C (SIGINT to the process group) mid-conversion leaves the previous
dataset and no temp folder; the temp folder of a killed run is removed by the next run; a damaged dataset
folder gives one line naming the file; a NaN clip stops tokenizer training before any weights are written."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import common
import data
import tokenizer as tk

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k != "NANOMOTION_DEBUG"}
D = 263


def clips(n=4, T=50, seed=0):
    g = np.random.default_rng(seed)
    return [{"id": f"c{i:03d}", "feats": g.normal(size=(T + 7 * i, D)).astype(np.float32),
             "captions": [f"a person does thing {i}"]} for i in range(n)]


def write_small(out, **kw):
    c = clips(**kw)
    data.write_dataset(out, c, name=out.name, joints_num=22, splits={"train": [x["id"] for x in c]})


def tree_bytes(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def start(*args):
    """A script in its own process group, as an interactive shell starts a job: with SIGINT at its default
    disposition. A non-interactive shell starts a background command (`pytest &`) with SIGINT ignored, an
    ignored SIGINT survives fork and exec, and so a suite started that way (CI once did) handed its children
    a Ctrl-C they never saw."""
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finish(proc, timeout):
    """-> (exit status, stderr); fails the test (and kills the job) if it runs past `timeout` seconds."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{proc.args}: still running after {timeout} s")
    return proc.returncode, err


def messages(err):  # stderr without its progress bars
    return [line for line in err.splitlines() if line.strip() and not re.match(r"(convert|synth):", line)]


def group_gone(pgid, wait=5.0):  # no process (a pool worker) is left in the job's process group
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def wait_for_temp(out, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        temps = list(out.parent.glob(f".{out.name}.tmp-*"))
        if temps:
            return temps[0]
        time.sleep(0.05)
    pytest.fail(f"{proc.args}: no temp folder beside {out} (exit status {proc.poll()})")


# ---------------------------------------------------------------------------------------------- stops
def test_strict_error_with_workers_exits_with_one_line_naming_the_file(tmp_path):
    """data.py --strict --workers 2 used to hang after a bad file: its pool was never closed while results
    were still in flight. 10 runs, each under a timeout; 200 files keep the workers busy when it stops."""
    src = tmp_path / "h3d"
    (src / "new_joint_vecs").mkdir(parents=True)
    (src / "texts").mkdir()
    g = np.random.default_rng(0)
    for i in range(200):
        np.save(src / "new_joint_vecs" / f"{i:06d}.npy", g.normal(size=(60, D)).astype(np.float32))
        (src / "texts" / f"{i:06d}.txt").write_text(f"a person walks {i}#a/DET#0.0#0.0\n")
    bad = src / "new_joint_vecs" / "000012.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    out = tmp_path / "out"
    for _ in range(10):
        proc = start("data.py", "--source=humanml3d", f"--src={src}", f"--data_dir={out}", "--strict",
                     "--workers=2")
        status, err = finish(proc, timeout=60)
        assert status == 1 and "Traceback" not in err
        [line] = messages(err)
        assert re.fullmatch(rf"data\.py: {re.escape(str(bad))}: cannot load \(ValueError: .+\)", line)
        assert group_gone(proc.pid), "a worker process outlived the run"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["h3d"]  # no dataset, no temp folder


def test_ctrl_c_mid_conversion_leaves_the_previous_dataset_and_no_temp_folder(tmp_path):
    out = tmp_path / "synth"
    write_small(out)
    before = tree_bytes(out)
    proc = start("data.py", f"--data_dir={out}", "--size=5000", "--workers=2")
    wait_for_temp(out, proc)
    time.sleep(1.0)  # well into the conversion (5000 clips take several seconds)
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    t0 = time.time()
    status, err = finish(proc, timeout=60)
    # what this guards is a hang (the pool's old deadlock), not a speed: ~1 s alone, 8 s on a loaded box
    assert time.time() - t0 < 30 and status == 130 and "Traceback" not in err
    assert messages(err) == [f"data.py: interrupted; {out} left as it was"]
    assert group_gone(proc.pid), "a worker process outlived the run"
    assert tree_bytes(out) == before and [p.name for p in tmp_path.iterdir()] == ["synth"]


def test_a_killed_runs_temp_folder_is_removed_by_the_next_run_and_a_live_ones_kept(tmp_path):
    out = tmp_path / "synth"
    proc = start("data.py", f"--data_dir={out}", "--size=5000", "--workers=2")
    dead = wait_for_temp(out, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9: nothing of the run can clean up
    proc.wait()
    assert dead.is_dir() and group_gone(proc.pid)
    live = tmp_path / f"{common._temp_prefix(out)}live"  # this test's own pid: a run still going
    live.mkdir()
    other = tmp_path / f".{out.name}.tmp-by-hand"  # not the project's naming: never touched
    other.mkdir()
    write_small(out)
    assert not dead.exists() and live.is_dir() and other.is_dir() and len(data.MotionData(out)) == 4


def test_atomic_write_leaves_no_temp_and_removes_a_dead_writers(tmp_path):
    path = tmp_path / "model.safetensors"
    common.atomic_write(path, lambda p: p.write_text("old"))

    def fails(p):
        p.write_text("half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        common.atomic_write(path, fails)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [path.name]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    stale = tmp_path / f".{path.name}.tmp-{socket.gethostname()}-{int(gone.stdout)}-1a2b3c4d"
    stale.write_text("what a killed run left")
    common.atomic_write(path, lambda p: p.write_text("new"))
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == [path.name]


# ---------------------------------------------------------------------------------------------- damage
def cut(path, n):  # the file without its last n bytes
    path.write_bytes(path.read_bytes()[:-n])


def break_last_line(root):  # a raw control character inside a JSON string
    lines = (root / "texts.jsonl").read_bytes().splitlines(keepends=True)
    (root / "texts.jsonl").write_bytes(b"".join(lines[:-1]) + b'{"id": "c003", "captions": ["a\x01"]}\n')


def put_nan(root):  # clip c002, its frame 5
    offsets = np.load(root / "offsets.npy")
    motions = np.load(root / "motions.npy", mmap_mode="r+")
    motions[offsets[2] + 5, 17] = np.nan
    motions.flush()


DAMAGE = {  # 4 clips of 50, 57, 64, 71 frames: 242 frames
    "motions.npy cut short": (lambda r: cut(r / "motions.npy", 1000),
                              r"motions\.npy: truncated or not an \.npy array \(mmap length is greater"),
    "offsets.npy cut short": (lambda r: cut(r / "offsets.npy", 8),
                              r"offsets\.npy: truncated or not an \.npy array \(Failed to read all data"),
    "motions.npy too narrow": (lambda r: np.save(r / "motions.npy", np.zeros((242, 251), np.float32)),
                               r"inconsistent dataset: motions\.npy has shape \(242, 251\), meta says"),
    "std.npy mis-shaped": (lambda r: np.save(r / "std.npy", np.ones(251, np.float32)),
                           r"inconsistent dataset: mean\.npy/std\.npy have shapes \(263,\)/\(251,\)"),
    "texts.jsonl line broken": (break_last_line,
                                r"texts\.jsonl: line 4, column 31: not valid JSON \(Invalid control"),
    "texts.jsonl cut short": (lambda r: cut(r / "texts.jsonl", 9),
                              r"texts\.jsonl: line 4, column \d+: not valid JSON \(Unterminated string"),
    "NaN in motions.npy": (put_nan, r"motions\.npy: NaN or inf in clip 'c002' \(index 2, frame 5\)"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_dataset_folder_names_the_file_and_the_problem(tmp_path, case):
    damage, message = DAMAGE[case]
    root = tmp_path / "ds"
    write_small(root)  # 4 clips of 50, 57, 64, 71 frames: 242 frames
    damage(root)
    with pytest.raises(ValueError, match=f"^{re.escape(str(root))}.*{message}"):
        data.MotionData(root)


def test_tokenizer_py_says_it_in_one_line(tmp_path):
    root = tmp_path / "ds"
    write_small(root)
    put_nan(root)
    status, err = finish(start("tokenizer.py", f"--data_dir={root}", f"--out_dir={tmp_path / 'out'}"), 120)
    assert status == 1 and err.splitlines() == [
        f"tokenizer.py: {root / 'motions.npy'}: NaN or inf in clip 'c002' (index 2, frame 5); write the "
        "dataset again"]
    assert not (tmp_path / "out").exists()


def test_a_nan_clip_stops_training_before_any_weights_are_written(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    write_small(root)  # only c002 and c003 (64, 71 frames) hold a 64-frame window
    put_nan(root)
    cfg = dict(tk.CONFIG, data_dir=str(root), out_dir=str(tmp_path / "out"), width=16, depth=1,
               codebook_size=64, window=64, batch_size=4, max_iters=3, ckpt_every=1, device="cpu")
    with pytest.raises(ValueError, match=r"motions\.npy: NaN or inf in clip 'c002'"):
        tk.train(cfg, progress=False)  # found when the folder is opened
    # NaN that gets past the open check (written while a run goes on) stops the first step that draws it
    monkeypatch.setattr(data, "_first_non_finite_row", lambda motions: None)
    with pytest.raises(ValueError, match=r"ds: step 0: loss nan on clips \['c002'\] \(NaN or inf in their "):
        tk.train(cfg, progress=False)
    run = tmp_path / "out" / "default"
    assert [p.name for p in run.iterdir()] == ["config.json"]  # no model.safetensors, no train_state.pt
    assert json.loads((run / "config.json").read_text())["window"] == 64
