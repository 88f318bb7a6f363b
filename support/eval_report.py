"""How eval.py's results print: each figure with its 95% interval, a split's table with n. edits.py,
docs/results.py and demo.py print with cell() too, so that every table shows a figure the same way."""

import numpy as np

COLUMNS = ["R@1", "R@2", "R@3", "FID", "MMDist", "Diversity", "action_accuracy", "count_accuracy",
           "length_ratio", "length_within_25", "gallery_R@1", "gallery_R@10", "gallery_median_rank"]


def cell(fig, name):
    """A figure with its 95% interval, 0.857 [0.830, 0.884]; "–" when absent; no interval for one point; a
    count as it is. 3 decimals, 4 below 0.01 (a real FID of 0.0004 is not 0)."""
    if name not in fig:
        return "–"
    if isinstance(fig[name], int):  # a count (n)
        return str(fig[name])
    d = 4 if 0 < abs(fig[name]) < 0.01 else 3
    lo, hi = fig.get(f"{name}_ci", (0, 0))
    return f"{fig[name]:.{d}f}" + (f" [{lo:.{d}f}, {hi:.{d}f}]" if hi > lo else "")


def markdown_table(result):
    """A split's result -> a markdown table of the COLUMNS per row with n, then each kind's action pass rate
    per row with its number of clips, and the rows' notes (no FID on few clips)."""
    rows = {name: fig for name, fig in result.items() if isinstance(fig, dict) and "n_clips" in fig}
    lines = ["| | clips | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name, fig in rows.items():
        lines.append(f"| {name} | {fig['n_clips']} | " + " | ".join(cell(fig, c) for c in COLUMNS) + " |")
    few = " (fewer than the protocol's 20)" if result["replications"] < 20 else ""
    lines += ["", f"{result['replications']} replications{few}; intervals: 95%, Wilson's for the shares of "
              "clips (action and count accuracy, length within 25%), else a bootstrap over the clips and the "
              "replications (*_new_minus_seen: paired, the same clips both ways)"]
    lines += [f"{name}: {fig['note']}" for name, fig in rows.items() if "note" in fig]
    checked = {name: fig for name, fig in rows.items() if "action_accuracy_macro" in fig}
    if result["kinds"]:
        lines += ["", f"| action: {result['n_checked']} clips checked | clips | " + " | ".join(checked)
                  + " |", "|---" * (len(checked) + 2) + "|"]
        for kind, n in [("accuracy_macro", ""), *result["kinds"].items()]:
            rates = [f"{fig.get(f'action_{kind}', np.nan):.2f}" for fig in checked.values()]
            lines.append(f"| {kind} | {n} | " + " | ".join(rates) + " |")
    return "\n".join(lines)
