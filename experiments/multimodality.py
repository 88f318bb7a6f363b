"""MultiModality (Guo et al. 2022; paper §5.1, Table 2): how far apart an LM run's takes of one text lie in
the evaluator's embedding space. Its own command, not a row of eval.py's protocol: it costs mm_samples takes
per text, which the demo's evaluation cannot spend.

    python experiments/multimodality.py                          # out/lm/default: 100 test texts x 30 takes
    python experiments/multimodality.py --split=val --mm_samples=11

mm_texts clips of the split drawn at random (seeded, as eval.py draws clips), each with one of its captions at
random (the protocol's draw); mm_samples takes of each text (sample.generate, each take seeded by its text's
position and number), embedded as eval.py embeds generated motion; per text, the mean distance over mm_times
pairs of its takes, averaged over the texts (T2M-GPT's numerics: support/eval_metrics.multimodality), with a
95% interval from a bootstrap over the texts. Writes out/eval/<dataset>/multimodality_<run>.json.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python experiments/multimodality.py`
import data as motion_data  # noqa: E402
import eval as evaluation  # noqa: E402
from common import cli, parse_args, pick_device, write_json  # noqa: E402
from support import eval_metrics  # noqa: E402
from support.eval_report import cell  # noqa: E402

# settings: plain values, overridden by --key=value
CONFIG = dict(
    data_dir="data/synth",
    lm_dir="out/lm/default",  # the LM run whose takes are measured
    evaluator_dir="",  # our evaluator's folder ("" -> out/evaluator/<dataset name>)
    split="test",  # val: for choosing settings, never test
    mm_texts=100,  # texts (the paper's 100)
    mm_samples=30,  # takes per text (the paper's 30; 9.5 CPU minutes on one core for the demo's LM)
    mm_times=10,  # pairs of takes per text (fewer than mm_samples)
    bootstrap=1000,  # draws of the interval's bootstrap over the texts
    sample_temperature=-1.0, sample_top_k=-1, sample_top_p=-1.0, sample_guidance=-1.0,  # < 0: sample.py's
    sample_lengths="",
    out="",  # JSON path ("" -> out/eval/<dataset>/multimodality_<run>.json)
    seed=0, device="auto",
)


def measure(ev, data, clips, generate, cfg):
    """MultiModality of generate's takes of one caption of each clip, with its bootstrap interval over the
    texts. generate(texts, num_samples, seed, keys) -> joints per text and take, text-major (eval.py's)."""
    draw = eval_metrics.protocol_draw(data, clips, np.random.default_rng([cfg["seed"], 6]))
    texts, takes = draw["caption"], cfg["mm_samples"]
    joints = generate(texts, takes, 10_000 + cfg["seed"], range(len(texts)))
    emb = ev.embed_motions([evaluation.generated_feats(j) for j in joints]).reshape(len(texts), takes, -1)
    value = eval_metrics.multimodality(emb, cfg["mm_times"], cfg["seed"])
    rng = np.random.default_rng([cfg["seed"], 7])
    draws = [eval_metrics.multimodality(emb[rng.integers(len(texts), size=len(texts))], cfg["mm_times"], b)
             for b in range(cfg["bootstrap"])]
    return {"MultiModality": value, "MultiModality_ci": eval_metrics.interval(draws, value),
            "n_texts": len(texts), "n_samples": takes, "texts": texts}


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "experiments/multimodality.py")}
    if cfg["mm_samples"] <= cfg["mm_times"]:  # checked before any generation
        raise ValueError(f"--mm_samples={cfg['mm_samples']}: MultiModality draws {cfg['mm_times']} pairs of "
                         f"distinct takes per text, so it needs more than --mm_times={cfg['mm_times']}")
    data = motion_data.MotionData(cfg["data_dir"])
    device = pick_device(cfg["device"])
    settings = dict(evaluation.CONFIG, evaluator_dir=cfg["evaluator_dir"])  # our evaluator, as eval.py's
    ev, evaluator = evaluation.pick_evaluator(settings, data, device)
    clips = evaluation.draw_clips(data, cfg["split"], cfg["mm_texts"], cfg["seed"])
    result = measure(ev, data, clips, evaluation._generator(cfg), cfg)
    print(f"\n{data.root} {cfg['split']}, {cfg['lm_dir']}: MultiModality {cell(result, 'MultiModality')} "
          f"({result['n_texts']} texts x {result['n_samples']} takes, {cfg['mm_times']} pairs each; 95% "
          "interval: a bootstrap over the texts)")
    run = Path(cfg["lm_dir"]).name
    out = Path(cfg["out"] or Path("out/eval") / data.meta["name"] / f"multimodality_{run}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, {"dataset": str(data.root), "evaluator": evaluator, "settings": cfg,
                     cfg["split"]: result})
    print(f"wrote {out}")


if __name__ == "__main__":
    cli(main, "experiments/multimodality.py")
