"""One way to drive every script: --key=value settings through common.parse_args, --help listing each
setting with its default and its comment from the script's settings block, and one-line errors that say what
to type."""

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import parse_args

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["data.py", "synth.py", "tokenizer.py", "train.py", "sample.py", "eval.py", "demo.py",
           "experiments/sweep.py", "experiments/claims.py", "experiments/edits.py", "experiments/checks.py",
           "experiments/language.py", "experiments/multimodality.py", "experiments/phrasing.py",
           "bench/bench_lm.py", "bench/bench_demo.py",
           "bench/bench_lfq.py", "bench/compile_lfq.py"]


def settings_block(script):
    """{key: (default's source text, comment on its line or None)} read straight from the file's CONFIG."""
    source = (ROOT / script).read_text()
    tree = ast.parse(source)
    block = next(n.value for n in tree.body
                 if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "CONFIG")
    lines = source.splitlines()
    return {kw.arg: lines[kw.value.end_lineno - 1].partition("  # ")[2] or None for kw in block.keywords}


def run(script, *args):
    proc = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_every_setting_with_its_default_and_comment(script, capsys):
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(script.removesuffix(".py").replace("/", ".")).main(["--help"])
    out, err = capsys.readouterr()
    usage, _, settings = out.partition("\nsettings (--key=value")
    assert stop.value.code == 0 and err == "" and usage.strip()  # the docstring's usage, then the settings
    listed = {line.split()[0] for line in settings.splitlines() if line.startswith("  --")}
    for key, comment in settings_block(script).items():
        line = next((line for line in settings.splitlines() if f"--{key}=" in line), None)
        assert line is not None, f"{script} --help does not list --{key}"
        if comment:
            assert comment in line, f"{script} --help: --{key}'s comment {comment!r} missing from {line!r}"
    assert listed, out


def test_a_space_instead_of_equals_says_so(tmp_path):
    status, _, err = run("tokenizer.py", "--data_dir", str(tmp_path))
    assert status == 1
    assert err.strip() == "tokenizer.py: --data_dir needs a value, written --data_dir=VALUE (with '=')"
    status, _, err = run("data.py", "--size=5", str(tmp_path))
    assert status == 1 and "unknown argument" in err and "written --key=value, with '='" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_values_are_one_line_naming_the_setting():
    status, _, err = run("data.py", "--size=-3")
    assert status == 1 and err.strip().startswith("data.py: --size and --workers must be at least 1, got "
                                                  "--size=-3 --workers=")
    status, _, err = run("data.py", "--data_dir=data/nonexistent", "--show=0")
    assert status == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "data/nonexistent: not a dataset folder" in err
    assert "python data.py --data_dir=data/nonexistent" in err


def test_parse_args_types_lists_and_flags():
    config = dict(n=1, x=0.5, name="a", flag=False, texts=[])
    got = parse_args(["--n=3", "--x=2", "--flag", "--texts=a b", "--texts=c"], config, "t.py")
    assert got == {"n": 3, "x": 2.0, "flag": True, "texts": ["a b", "c"]}
    with pytest.raises(SystemExit, match=r"t\.py: --n must be int, got 'x'"):
        parse_args(["--n=x"], config, "t.py")


def test_sigusr1_doubles_a_scripts_threads():
    """demo.py's hand-over of a core: a script run through common.cli and sent SIGUSR1 computes on twice the
    threads it started with (torch's intra-op pool, as OMP_NUM_THREADS had set it)."""
    code = ("import os, signal, torch; from common import cli; "
            "cli(lambda argv: (os.kill(os.getpid(), signal.SIGUSR1), print(torch.get_num_threads())), 'x')")
    for threads in (1, 2):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        assert out.stdout.split() == [str(2 * threads)]
