"""How much a trained LM's caption is worth on phrasings it has seen and on new ones (issue 30, step 1), on
val: on the clips with captions of both phrasings (eval.phrasings), the LM's cross-entropy per motion-code
token given a seen caption, a new caption and another clip's caption (a derangement). The caption's worth
is swapped - right, in nats per motion token, for each phrasing; the paired difference seen - new says how
much of it a new phrasing loses. Intervals: the bootstrap over clips (eval_metrics.interval). With --eval,
eval.py's rows on the same split (generated seen / new / new - seen: R@3, action and count accuracy) join
them, so that one file holds the gap this issue closes.

    python eval.py --splits=val --replications=2 --out=out/eval/synth/val.json    # the generated rows
    python experiments/phrasing.py --eval=out/eval/synth/val.json    # -> docs/results/phrasing_val.json
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python experiments/phrasing.py`
import data as motion_data  # noqa: E402
import eval as evaluation  # noqa: E402
import model as lm_model  # noqa: E402
import tokenizer  # noqa: E402
import train  # noqa: E402
from common import cli, parse_args, pick_device, read_run_file, write_json  # noqa: E402
from support import eval_metrics  # noqa: E402

CONFIG = dict(
    data_dir="data/synth", lm_dir="out/lm/default", split="val",
    eval="",  # eval.py's results on the same split (JSON), whose phrasing rows join these; "": none
    batch_size=32, bootstrap=1000, seed=0, device="auto",
    out="docs/results/phrasing_val.json",
)
ROWS = ("generated_seen", "generated_new", "generated_new_minus_seen",
        "ground_truth_seen", "ground_truth_new", "ground_truth_new_minus_seen")
FIGURES = ("R@3", "action_accuracy", "count_accuracy")


@torch.no_grad()
def motion_losses(lm, instances, device, batch_size):
    """(cross-entropy summed over each instance's motion-code tokens, their number) as two arrays."""
    sums, counts = [], []
    for b in range(0, len(instances), batch_size):
        batch = {k: v.to(device) for k, v in lm.collate(instances[b:b + batch_size]).items()}
        logits = lm.lm(**{k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}).logits
        ce = lm_model.token_losses(logits.float(), batch["input_ids"]).double()
        codes = batch["kinds"] == lm_model.Kind.CODE
        sums += (ce * codes).sum(1).tolist()
        counts += codes.sum(1).tolist()
    return np.array(sums), np.array(counts)


def caption_worth(cfg):
    """{"clips", "nats": {seen, new, swapped: nats per motion token}, "worth_seen", "worth_new",
    "worth_seen_minus_new"}, each figure with its bootstrap interval (<name>_ci)."""
    device = pick_device(cfg["device"])
    run = read_run_file(Path(cfg["lm_dir"]) / "config.json", "train the LM first (python train.py)")
    data = motion_data.MotionData(cfg["data_dir"])
    codes = tokenizer.load_codes(cfg["data_dir"], Path(run["tokenizer"]).name, data)
    lm = lm_model.load(cfg["lm_dir"], device)
    lm.lm.eval()
    phr = evaluation.phrasings(data, [data.split(cfg["split"])], cfg["seed"])
    clips = [i for i in sorted(phr) if lm.motion_room(max(
        len(lm.prompt_ids(c)) for c in data.texts[i]["captions"])) >= len(codes.clip(i))]
    if len(clips) < 2:
        raise ValueError(f"{cfg['data_dir']}: {len(clips)} {cfg['split']} clips with captions of both "
                         "phrasings")
    caption = {kind: [data.texts[i]["captions"][phr[i][0][k][0]] for i in clips]
               for k, kind in enumerate(("seen", "new"))}
    caption["swapped"] = [caption["seen"][j] for j in train.derangement(len(clips), cfg["seed"])]
    losses = {kind: motion_losses(lm, [lm.sample_ids(c, codes.clip(i)) for c, i in zip(texts, clips,
                                                                                       strict=True)],
                                  device, cfg["batch_size"]) for kind, texts in caption.items()}

    def figures(rows):  # per-clip rows -> the nats of each kind and the caption's worth
        nats = {kind: losses[kind][0][rows].sum() / losses[kind][1][rows].sum() for kind in losses}
        worth = {p: nats["swapped"] - nats[p] for p in ("seen", "new")}
        return {**{f"nats_{k}": v for k, v in nats.items()}, "worth_seen": worth["seen"],
                "worth_new": worth["new"], "worth_seen_minus_new": worth["seen"] - worth["new"]}

    estimate = figures(np.arange(len(clips)))
    rng = np.random.default_rng(cfg["seed"])
    draws = [figures(rng.integers(len(clips), size=len(clips))) for _ in range(cfg["bootstrap"])]
    return {"clips": len(clips), **{k: float(v) for k, v in estimate.items()},
            **{f"{k}_ci": eval_metrics.interval([d[k] for d in draws], v, low=-np.inf)
               for k, v in estimate.items()}}


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "experiments/phrasing.py")}
    out = {"settings": cfg, "caption_worth": caption_worth(cfg),
           "note": "nats per motion-code token on the split's clips with captions of both phrasings; "
                   "worth = with another clip's caption - with its own; seen: a caption some train clip has"}
    if cfg["eval"]:
        results = read_run_file(Path(cfg["eval"]), "run eval.py on the split first")
        split = results["splits"][cfg["split"]] if "splits" in results else results[cfg["split"]]
        out["eval_settings"] = results.get("settings")
        out["rows"] = {row: {k: v for k, v in split[row].items() if k.split("_ci")[0] in FIGURES
                             or k.startswith("n_") or k == "replications"} for row in ROWS if row in split}
    write_json(Path(cfg["out"]), out)
    worth = out["caption_worth"]
    low, high = worth["worth_seen_minus_new_ci"]
    print(f"{cfg['split']}: {worth['clips']} clips; the caption is worth {worth['worth_seen']:.3f} nats per "
          f"motion token in a seen phrasing, {worth['worth_new']:.3f} in a new one (seen - new "
          f"{worth['worth_seen_minus_new']:+.4f} [{low:+.4f}, {high:+.4f}]); wrote {cfg['out']}")
    for row, figures in out.get("rows", {}).items():
        print(f"{row}: " + ", ".join(f"{k} {figures[k]:+.3f}" for k in FIGURES if k in figures))


if __name__ == "__main__":
    cli(main, "experiments/phrasing.py")
