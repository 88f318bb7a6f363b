"""Experiments around the pipeline: the paper's claims, the codebook sweep, the choices of defaults; and how a
rerun skips the runs it has finished (finished_run, code_hash)."""

import hashlib
import json
from pathlib import Path


def finished_run(run_dir, settings):
    """A rerun's skip test: the metrics of the run in run_dir if it finished (metrics.json there) with these
    settings (its config.json agrees on every one of them it records), else None."""
    config, metrics = Path(run_dir) / "config.json", Path(run_dir) / "metrics.json"
    if not (config.is_file() and metrics.is_file()):
        return None
    saved = json.loads(config.read_text())
    agree = all(saved[k] == v for k, v in settings.items() if k in saved)
    same_code = saved.get("code") == settings.get("code")  # made by other code (code_hash): not reused
    return json.loads(metrics.read_text()) if agree and same_code else None


def code_hash():
    """A short hash of the pipeline's code (the top-level scripts, support/ and kernels/): experiments store
    it in their runs' settings, so that a run made by other code is trained again."""
    root = Path(__file__).resolve().parents[1]
    files = [*root.glob("*.py"), *root.glob("support/*.py"), *root.glob("kernels/*.py")]
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
