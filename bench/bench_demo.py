"""make demo's wall time against a base commit's, measured one after the other in one run (issue 28: the demo
within 20 minutes on a quiet machine, its critical path at most 1.05x the base's in the same hour).

    python bench/bench_demo.py                     # the base's demo, then HEAD's: about 50 min on 2 cores
    python bench/bench_demo.py --base=265ad15 --out=docs/results/demo_time.json

Each commit is checked out in a worktree of its own under work_dir and runs `python demo.py` there from
scratch (this interpreter: its packages must serve both commits), nothing else running beside it. A demo
writes each stage's wall time (out/demo/results.json); the critical path is the longest chain of stages
through that commit's demo.NEEDS by those times: what no second core could shorten. Prints one table and
writes `out`; run it on a quiet machine, since two stages share the 2 cores and anything else slows both.
"""

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import cli, parse_args, write_json  # noqa: E402

CONFIG = dict(
    base="265ad15",  # the commit before issue 28, whose demo the target compares with
    head="HEAD",  # what is measured against it (committed: a worktree checks it out)
    work_dir="out/bench_demo",  # the worktrees (left there: each holds its demo's outputs)
    out="out/bench_demo/demo_time.json",  # the results (docs/results/demo_time.json: the committed one)
)


def critical_path(needs, wall):
    """(seconds, stages) of the longest chain through `needs` ({stage: stages it waits for}) by `wall`."""
    def longest(stage):
        before = max((longest(d) for d in needs[stage]), default=(0.0, []))
        return before[0] + wall.get(stage, 0.0), [*before[1], stage]
    seconds, stages = max(longest(stage) for stage in needs)
    return round(seconds, 1), stages


def demo_needs(worktree):
    """That commit's demo.NEEDS, read from its source (importing a second demo.py here would shadow ours)."""
    tree = ast.parse((worktree / "demo.py").read_text())
    node = next(n.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "")
                == "NEEDS")
    return ast.literal_eval(node)


def run_demo(commit, work_dir):
    """Check `commit` out under work_dir and run its demo there -> its figures for the results file."""
    sha = subprocess.run(["git", "rev-parse", "--short", commit], capture_output=True, text=True,
                         check=True).stdout.strip()
    tree = Path(work_dir).resolve() / sha
    if not tree.is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), sha], check=True)
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    print(f"=== {sha}: python demo.py in {tree} (started {started} UTC)", flush=True)
    subprocess.run([sys.executable, "demo.py"], cwd=tree, check=True, stdout=subprocess.DEVNULL)
    res = json.loads((tree / "out" / "demo" / "results.json").read_text())
    seconds, path = critical_path(demo_needs(tree), res["wall_s"])
    return {"commit": sha, "started_utc": started, "wall_s": res["wall_s"], "total_s": res["total_s"],
            "critical_path_s": seconds, "critical_path": path}


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "bench/bench_demo.py")}
    base, new = (run_demo(cfg[k], cfg["work_dir"]) for k in ("base", "head"))
    out = {"what": "make demo's wall time, the base commit's demo and then this one's, one after the other "
                   "on the same machine (bench/bench_demo.py); critical_path_s: the longest chain of stages "
                   "through demo.NEEDS by their wall times",
           "machine": f"{os.cpu_count()} cores", "base": base, "new": new,
           "ratio_total": round(new["total_s"] / base["total_s"], 3),
           "ratio_critical_path": round(new["critical_path_s"] / base["critical_path_s"], 3),
           "target": "ratio_critical_path <= 1.05 (issue 28); the demo within 20 min (1,200 s) on a quiet "
                     "machine"}
    write_json(Path(cfg["out"]), out)
    rows = [f"| {r['commit']} | {r['total_s']:.0f} | {r['critical_path_s']:.0f} | "
            f"{' > '.join(r['critical_path'])} |" for r in (base, new)]
    print("\n| demo | total (s) | critical path (s) | its stages |\n|---|---|---|---|\n" + "\n".join(rows)
          + f"\n\nratio (new / base): total {out['ratio_total']}, critical path {out['ratio_critical_path']}"
          f" -> {cfg['out']}")


if __name__ == "__main__":
    cli(main, "bench/bench_demo.py")
