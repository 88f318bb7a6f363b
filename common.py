"""Process plumbing the scripts share: --key=value settings, the scripts' entry point (one-line errors),
progress bars, atomic writes of files, folders and weights, resuming, the learning-rate schedule, worker
processes, the device and the process group. (The motion representation and its measures are motion.py's.)"""

import ast
import io
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import tokenize
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from tqdm import tqdm


def parse_args(argv, config, prog):
    """--config=file.json, then --key=value overrides of `config`'s plain values (`prog` names the script in
    errors). A bare --flag turns a boolean on; a list setting takes one item per --key=value. --help prints
    the script's usage and every setting with its default and comment, and exits."""
    overrides = {}
    for arg in argv:
        key, eq, value = arg.removeprefix("--").partition("=")
        if arg in ("--help", "-h"):
            print(settings_help(prog, config))
            raise SystemExit(0)
        if not arg.startswith("--") or (key not in config and key != "config"):
            hint = " (settings are written --key=value, with '=')" if not arg.startswith("-") else ""
            raise SystemExit(f"{prog}: unknown argument {arg!r}{hint}; settings: config, {', '.join(config)}"
                             f" (--help says what each does)")
        if not eq and not isinstance(config.get(key), bool):
            raise SystemExit(f"{prog}: --{key} needs a value, written --{key}=VALUE (with '=')")
        if key == "config":  # earlier in the precedence than any --key=value, wherever it stands
            overrides = {**json.loads(Path(value).read_text()), **overrides}
            if set(overrides) - set(config):
                raise SystemExit(f"{value}: unknown settings {sorted(set(overrides) - set(config))}")
        elif isinstance(config[key], bool):
            overrides[key] = value.lower() in ("1", "true", "yes") if eq else True
        elif isinstance(config[key], list):  # a list setting: each --key=value adds one item
            overrides[key] = [*overrides.get(key, []), value]
        else:
            try:
                overrides[key] = type(config[key])(value)
            except ValueError:
                wanted = type(config[key]).__name__
                raise SystemExit(f"{prog}: --{key} must be {wanted}, got {value!r}") from None
    return overrides


def settings_help(prog, config):
    """The --help text: the script's docstring, then its `CONFIG = dict(...)` block line by line, each setting
    with its default and the comment beside it (or, on a line without one, the comment lines just above)."""
    source = (Path(__file__).parent / prog).read_text()
    comments, whole_line = {}, set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("# ")
            if tok.line.lstrip().startswith("#"):
                whole_line.add(tok.start[0])
    tree = ast.parse(source)
    block = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                 and getattr(node.targets[0], "id", "") == "CONFIG")
    by_line = {}
    for kw in block.keywords:
        by_line.setdefault(kw.value.end_lineno, []).append(f"--{kw.arg}={config[kw.arg]!r}")
    lines = [ast.get_docstring(tree) or prog, "", "settings (--key=value; --config=file.json sets several):"]
    for line, keys in by_line.items():
        above = line - 1
        while above in whole_line:
            above -= 1
        comment = comments.get(line) or " ".join(comments[n] for n in range(above + 1, line))
        lines.append((f"  {' '.join(keys)}".ljust(40) + f"  {comment}").rstrip())
    inherited = [k for k in config if k not in {kw.arg for kw in block.keywords}]
    if inherited:  # CONFIG = dict(other.CONFIG, ...): the other script's settings, described in its --help
        source = ast.unparse(block.args[0]).removesuffix(".CONFIG")
        lines.append(f"  and every {source}.py setting ({source}.py --help): " + ", ".join(inherited))
    return "\n".join(lines)


class _Lines:
    """tqdm's output for a log file: each refresh on a line of its own instead of after a carriage return, a
    line identical to the one before (the final refresh at close) left out."""

    last = None

    def write(self, s):
        line = s.strip("\r\n")
        if line.strip() and line != self.last:
            sys.stderr.write(line + "\n")
            self.last = line

    def flush(self):
        sys.stderr.flush()


LOG_BAR = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def progress_bar(iterable=None, **kwargs):
    """A tqdm bar: live in a terminal; in a log (stderr not a terminal) one line every 30 s and the last."""
    if sys.stderr.isatty():
        return tqdm(iterable, dynamic_ncols=True, **kwargs)
    tqdm.monitor_interval = 0  # its thread redraws stale counts between the 30 s lines
    return tqdm(iterable, file=_Lines(), mininterval=30, **kwargs, bar_format=LOG_BAR)


def cli(main, prog):
    """A script's entry point: main(sys.argv[1:]). A ValueError or OSError ends it with one line `<prog>:
    <message>`, status 1; Ctrl-C with `<prog>: interrupted; <what main's KeyboardInterrupt says it left as it
    was>`, status 130 (128 + SIGINT). NANOMOTION_DEBUG=1 lets the exception through, with its traceback."""
    # demo.py runs two stages side by side at one thread each; SIGUSR1 tells the one left that its partner
    # ended and nothing will take that core: it doubles its threads for the rest of its run
    signal.signal(signal.SIGUSR1, lambda *_: torch.set_num_threads(2 * torch.get_num_threads()))
    if os.environ.get("NANOMOTION_DEBUG", "0") != "0":
        return main(sys.argv[1:])
    try:
        return main(sys.argv[1:])
    except KeyboardInterrupt as e:
        print("; ".join([f"{prog}: interrupted", *map(str, e.args)]), file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError) as e:
        sys.exit(f"{prog}: {e}")


# Atomic writes (docs/design.md): a file or folder is built under a temporary name beside its place, then
# renamed into it. A killed write (kill -9, a lost machine) cannot remove its temp, so temp names carry their
# owner, .<name>.tmp-<host>-<pid>-<random>: the next write to that place removes this host's dead ones.
def _temp_prefix(path):
    return f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}-"


def _alive(pid):
    try:
        os.kill(pid, 0)  # signal 0 is not sent: it only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True


def _remove(path):  # a file or a folder, if it is there
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_dead_temps(path):
    """Remove the temp files and folders that writes to `path` left behind when their process died, and,
    while `path` itself is there, replace_dir's old copies that a kill after its second rename left (with
    `path` missing, recover_dir puts the old copy back instead)."""
    path = Path(path)
    owned = re.compile(rf"\.{re.escape(path.name)}\.tmp-{re.escape(socket.gethostname())}-(\d+)-\w+")
    trash = re.compile(rf"\.{re.escape(path.name)}\.old-\w+")
    for p in path.parent.iterdir() if path.parent.is_dir() else ():
        dead = (m := owned.fullmatch(p.name)) and not _alive(int(m[1]))
        if dead or (trash.fullmatch(p.name) and path.exists()):
            _remove(p)


def atomic_write(path, write):  # write(tmp), then os.replace(tmp, path)
    path = Path(path)
    remove_dead_temps(path)
    tmp = path.with_name(_temp_prefix(path) + os.urandom(4).hex())
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:  # a failed write leaves the old file as it was and no temp
        _remove(tmp)


def make_temp_dir(out_dir):
    """A new empty folder beside out_dir in which to build it; replace_dir then puts it in place."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(out_dir), dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    return tmp


def replace_dir(tmp, out_dir):
    """Put the finished folder `tmp` at `out_dir`: old -> trash, new -> out_dir (2 renames), old deleted."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, trash / "old")
        os.replace(tmp, out_dir)
        shutil.rmtree(trash)
    else:
        os.replace(tmp, out_dir)


def write_json(path, obj):
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2) + "\n"))


def save_weights(path, state_dict):  # one safetensors file (CPU, contiguous), written atomically
    weights = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write(path, lambda p: save_file(weights, str(p)))
    return weights


def load_weights(path, device="cpu"):  # what save_weights (or a Hugging Face save) wrote
    return load_file(str(path), device=str(device))


READERS = {".json": lambda p: json.loads(p.read_text()), ".safetensors": load_weights,
           ".npy": lambda p: np.load(p, allow_pickle=False),
           ".pt": lambda p: torch.load(p, map_location="cpu", weights_only=True)}


def read_run_file(path, remake, read=None):
    """read(path) (default: READERS, by its suffix) of a run's, a dataset's or its codes' file or folder. A
    missing one raises FileNotFoundError, one that its reader fails on (cut short by a full disk or an
    interrupted copy, edited by hand) ValueError("<path>: damaged or incomplete (<why>); <remake>")."""
    path, read = Path(path), read or READERS[Path(path).suffix]
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; {remake}")
    try:
        return read(path)
    except BaseException as e:  # (dcp's CheckpointException is a BaseException, holding each rank's error)
        if not isinstance(e, Exception) and not hasattr(e, "failures"):
            raise  # Ctrl-C
        first = next(iter(e.failures.values()))[0] if hasattr(e, "failures") else e  # (the first rank's)
        line = (str(first).strip().splitlines() or [type(first).__name__])[0]
        why = line.split(". ")[0].removeprefix("Error while deserializing header: ")  # (safetensors' prefix)
        raise ValueError(f"{path}: damaged or incomplete ({why}); {remake}") from e


def resume_settings(run_dir, config, overrides, arch_keys, since=None):
    """--resume: the defaults, then `since` ({setting added after the run may have been made: the value such
    a run used}) where the run saved no value, then the run's saved settings (run_dir/config.json), then this
    command's overrides; one clear error when there is no run, or when an override would change the model
    that the checkpoint holds (arch_keys)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no run to resume")
    saved = read_run_file(path, "--resume cannot continue this run; start it over without --resume")
    differ = {k: (saved.get(k), overrides[k]) for k in arch_keys
              if k in overrides and overrides[k] != saved.get(k)}
    if differ:
        raise ValueError(f"{run_dir}: cannot resume with a different model (setting: (saved, now)) {differ}")
    return {**config, **(since or {}), **{k: v for k, v in saved.items() if k in config}, **overrides}


def cosine_lr(step, lr, min_lr, warmup_iters, decay_iters):
    """The learning rate of every training loop here: linear warm-up over warmup_iters steps, then half a
    cosine from lr down to min_lr at decay_iters, flat after it (nanoGPT's schedule)."""
    if step < warmup_iters:
        return lr * (step + 1) / warmup_iters
    frac = min(1.0, (step - warmup_iters) / max(1, decay_iters - warmup_iters))
    return min_lr + 0.5 * (1 + math.cos(math.pi * frac)) * (lr - min_lr)


def _worker_init():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group; the parent stops us
    torch.set_num_threads(1)


def parallel_map(fn, items, workers=1, chunksize=8):
    """fn over items, results in order, in `workers` forked processes (1: in this one). A generator: a
    consumer that may stop early closes it (contextlib.closing); then the chunks not yet started are cancelled
    and the running ones finish, and the workers are joined. (multiprocessing.Pool.terminate killed workers
    halfway through sending a result, and its result thread then waited for the rest forever: 1 run in 40.)"""
    if workers <= 1:
        yield from map(fn, items)
        return
    pool = ProcessPoolExecutor(workers, multiprocessing.get_context("fork"), initializer=_worker_init)
    try:
        yield from pool.map(fn, items, chunksize=chunksize)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def pick_device(device):  # "auto": this rank's GPU when there is one, else the CPU
    auto = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu"
    return torch.device(auto if device == "auto" else device)


def bf16_on(device):
    """Is bf16 the dtype to compute in on this device: a GPU that has it (training's autocast, inference's
    weights); fp32 elsewhere."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


PROCESS_GROUP_TIMEOUT = timedelta(minutes=60)  # a collective waits this long: at 13B, rank 0 reads 26 GB of
# weights while the other ranks wait for it (torch's default, 10 minutes, can pass)


def distributed_setup(device="auto"):
    """-> (rank, world, device). Under torchrun (WORLD_SIZE > 1) this joins the process group: nccl on CUDA,
    gloo on the CPU (multi-node too: torchrun's rendezvous sets the variables)."""
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    device = pick_device(device)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
    return rank, world, device


def distributed_teardown():
    """Leave the process group. Call it after dropping every DDP/FSDP-wrapped model: they hold the group, and
    destroying it under them hangs or warns at exit."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def recover_dir(path):
    """A folder that replace_dir was swapping when the process died between its two renames is missing, and
    the previous version sits aside in `.<name>.old-*/old`: put it back. -> path, or None if there is none."""
    path = Path(path)
    aside = None if path.exists() else min(path.parent.glob(f".{path.name}.old-*/old"), default=None)
    if aside:
        os.replace(aside, path)
        shutil.rmtree(aside.parent, ignore_errors=True)
    return path if path.exists() else None
