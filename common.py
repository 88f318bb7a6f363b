"""Small helpers the stage scripts share (DESIGN.md allows one such module): --key=value config parsing,
atomic file writes, and picking the device for this process."""

import json
import os
from pathlib import Path

import torch


def parse_args(argv, config, prog):
    """--config=file.json, then --key=value overrides of `config`'s plain values (`prog` names the script in
    errors). A bare --flag turns a boolean on."""
    overrides = {}
    for arg in argv:
        key, eq, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or (key not in config and key != "config"):
            raise SystemExit(f"{prog}: unknown argument {arg!r}; settings: config, {', '.join(config)}")
        if key == "config":  # earlier in the precedence than any --key=value, wherever it stands
            overrides = {**json.loads(Path(value).read_text()), **overrides}
            if set(overrides) - set(config):
                raise SystemExit(f"{value}: unknown settings {sorted(set(overrides) - set(config))}")
        elif isinstance(config[key], bool):
            overrides[key] = value.lower() in ("1", "true", "yes") if eq else True
        else:
            try:
                overrides[key] = type(config[key])(value)
            except ValueError:
                wanted = type(config[key]).__name__
                raise SystemExit(f"{prog}: --{key} must be {wanted}, got {value!r}") from None
    return overrides


def atomic_write(path, write):  # write(tmp) then os.replace: an interrupted run never leaves half a file
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_json(path, obj):
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2) + "\n"))


def pick_device(device):  # "auto": this rank's GPU when there is one, else the CPU
    auto = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu"
    return torch.device(auto if device == "auto" else device)
