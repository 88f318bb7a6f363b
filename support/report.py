"""How eval.py's results print: each figure with its 95% interval, a split's table with n, the edit table.
docs/results.py and demo.py print with cell() too, so that every table shows a figure the same way. Also
train.py's loss curves."""

import numpy as np

from common import atomic_write

COLUMNS = ["R@1", "R@2", "R@3", "FID", "MMDist", "Diversity", "MultiModality", "action_accuracy",
           "count_accuracy", "length_ratio", "length_within_25", "gallery_R@1", "gallery_R@10",
           "gallery_median_rank"]


def cell(fig, name):
    """A figure with its 95% interval as every table prints it, 0.857 [0.830, 0.884]; "–" when absent; no
    interval when it is one point; a count as it is. 3 decimals, 4 below 0.01 (a real FID of 0.0004 is
    not 0)."""
    if name not in fig:
        return "–"
    if isinstance(fig[name], int):  # a count (n)
        return str(fig[name])
    d = 4 if 0 < abs(fig[name]) < 0.01 else 3
    lo, hi = fig.get(f"{name}_ci", (0, 0))
    return f"{fig[name]:.{d}f}" + (f" [{lo:.{d}f}, {hi:.{d}f}]" if hi > lo else "")


def markdown_table(result):
    """A split's result -> a markdown table of the COLUMNS per row with n, then each kind's action pass rate
    per row with its number of clips."""
    rows = {name: fig for name, fig in result.items() if isinstance(fig, dict) and "n_clips" in fig}
    lines = ["| | clips | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name, fig in rows.items():
        cells = [cell(fig, c) for c in COLUMNS]
        lines.append(f"| {name} | {fig['n_clips']} | " + " | ".join(cells) + " |")
    few = " (fewer than the protocol's 20)" if result["replications"] < 20 else ""
    lines += ["", f"{result['replications']} replications{few}; intervals: 95%, a bootstrap over the clips "
              "and the replications"]
    if result["kinds"]:
        lines += ["", f"| action: {result['n_checked']} clips checked | clips | " + " | ".join(rows) + " |",
                  "|---" * (len(rows) + 2) + "|"]
        for kind, n in [("accuracy_macro", ""), *result["kinds"].items()]:
            rates = [f"{fig.get(f'action_{kind}', np.nan):.2f}" for fig in rows.values()]
            lines.append(f"| {kind} | {n} | " + " | ".join(rates) + " |")
    return "\n".join(lines)


def edit_table(edits):
    """eval.py --edits' figures per split and kind of edit, with n and the intervals."""
    lines = ["\n| split | edit | n | edits that pass | the same texts from scratch | kept parts' MPJPE (mm) "
             "| tokenizer MPJPE (mm) |", "|---|---|---|---|---|---|---|"]
    for split, kinds in edits.items():
        lines += [f"| {split} | {kind} | {r['n']} | {cell(r, 'edit')} | {cell(r, 'scratch')} | "
                  f"{r['kept_mpjpe_mm']:.1f} | {r['tokenizer_mpjpe_mm']:.1f} |" for kind, r in kinds.items()]
    return "\n".join(lines)


def plot_curves(path, history, evals):
    """train.py's loss_curve.png: train (a 20-step mean) and val loss, motion and instruction tokens."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = np.arange(1, len(history) + 1)
    for ax, key, title in ((axes[0], "motion", "motion tokens"), (axes[1], "text", "instruction tokens")):
        train = np.array([h[key] for h in history], dtype=float)
        smooth = np.convolve(train, np.ones(20) / 20, mode="valid") if len(train) >= 20 else train
        ax.plot(steps[len(steps) - len(smooth):], smooth, label="train (20-step mean)")
        ax.plot([e["step"] for e in evals], [e[f"val_{key}_loss"] for e in evals], "o-", label="val")
        ax.set(title=f"loss per {title}", xlabel="step", ylabel="nats")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
