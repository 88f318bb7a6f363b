"""The codebook-size sweep of paper §5.3: Figures 4/5 (reconstruction MPJPE and codebook utilisation of
VQ, RVQ and 2D-LFQ against the codebook size K) and Table 11 (2D- against 1D-LFQ), rerun on the embedded
data. Every tokenizer at every K = 2^b is trained by tokenizer.train under one identical budget (`iters`
steps of `batch_size` windows, the same width, window, learning rate, ...) and measured on the test split.

    python experiments/sweep.py --batch_size=16  # out/tokenizer/sweep/: sweep.json, sweep.png, <kind>_K<K>/
    python experiments/sweep.py --kinds=vq,lfq2d --log2k=8,10,12 --iters=1000 --run_name=sweep_long

Every tokenizer.py setting (--width, --window, --data_dir, ...) applies to all runs. A rerun skips the runs
it has already finished with the same settings and code (experiments.code_hash).
"""

import sys
from pathlib import Path

import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python experiments/sweep.py`
import tokenizer  # noqa: E402
from common import atomic_write, cli, parse_args, write_json  # noqa: E402
from experiments import code_hash, finished_run  # noqa: E402

CONFIG = dict(tokenizer.CONFIG, run_name="sweep",  # runs -> out_dir/run_name/<kind>_K<K>/
              kinds="vq,rvq,lfq2d,lfq1d", log2k="8,9,10,11,12,13,14",  # tokenizers x K = 2^b
              iters=400)  # the one identical budget of every run (with batch_size, window, ...)

NAMES = {"vq": "VQ", "rvq": "RVQ", "lfq2d": "2D-LFQ", "lfq1d": "1D-LFQ"}


def sweep(cfg):
    """Train every kind at every K under cfg's one budget; -> the list of their test metrics."""
    root = Path(cfg["out_dir"]) / cfg["run_name"]
    kinds, results, code = cfg["kinds"].split(","), [], code_hash()
    for kind in kinds:
        for K in [2 ** int(b) for b in cfg["log2k"].split(",")]:
            sub = {k: cfg[k] for k in tokenizer.CONFIG} | dict(
                kind=kind, codebook_size=K, max_iters=cfg["iters"], ckpt_every=cfg["iters"],
                run_name=f"{root.name}/{kind}_K{K}", resume=False, code=code)
            run_dir = root / f"{kind}_K{K}"
            if (done := finished_run(run_dir, sub)) is not None:  # finished, with these settings and code
                results.append(done)
                continue
            results.append(tokenizer.train(sub, progress=False)["metrics"])
            print(f"sweep {kind} K={K}: MPJPE {results[-1]['mpjpe_mm']:.1f} mm, utilisation "
                  f"{results[-1]['utilisation']:.3f} ({results[-1]['seconds']:.0f} s)", flush=True)
    write_json(root / "sweep.json", {"iters": cfg["iters"], "batch_size": cfg["batch_size"],
                                               "data_dir": cfg["data_dir"], "results": results})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in zip(axes, ("mpjpe_mm", "utilisation"), ("reconstruction MPJPE, mm (Fig. 4)",
                              "codebook utilisation on the test split (Fig. 5)"), strict=True):
        for kind in kinds:
            rows = [r for r in results if r["kind"] == kind]
            ax.plot([r["K"] for r in rows], [r[key] for r in rows], "o-", label=NAMES[kind])
        ax.set_xscale("log", base=2)
        ax.set(xlabel="codebook size K", title=title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{cfg['data_dir']}: {cfg['iters']} steps x batch {cfg['batch_size']} per run")
    fig.tight_layout()
    atomic_write(root / "sweep.png", lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
    print("| tokenizer | K | params | MPJPE (mm) | feature MAE | utilisation | perplexity |\n|" + "---|" * 7)
    for r in results:
        print(f"| {NAMES[r['kind']]} | {r['K']} | {r['params'] / 1e6:.2f}M | {r['mpjpe_mm']:.1f} | "
              f"{r['feature_mae']:.3f} | {r['utilisation']:.3f} | {r['perplexity']:.1f} |")
    return results


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "experiments/sweep.py")}
    try:
        sweep(cfg)
    except KeyboardInterrupt as e:
        root = Path(cfg["out_dir"]) / cfg["run_name"]
        raise KeyboardInterrupt(f"the runs finished in {root} are kept, and a rerun skips them") from e


if __name__ == "__main__":
    cli(main, "experiments/sweep.py")
