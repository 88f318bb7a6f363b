"""Evaluation (paper §5.1, Tables 2, 3, 5, 6): every metric of the standard text-to-motion protocol (Guo
et al. 2022, with T2M-GPT's numerics: support/eval_metrics.py), measured with our text/motion evaluator
(support/eval_evaluator.py; Guo et al.'s own in support/eval_t2m.py), and what §5.4 says is missing:
retrieval against the whole test set, and physical checks on the joints that need no evaluator
(support/eval_physical.py). Editing has its own protocol: experiments/edits.py.

    python eval.py --train_evaluator        # the dual encoder on data/synth -> out/evaluator/synth/
    python eval.py --lm_dir=                # ground-truth rows only (test and OOD splits)
    python eval.py                          # generated motions of out/lm/default against ground truth
    python eval.py --tokenizer=default      # reconstruction only (Table 6): MPJPE, FID, utilisation
    python eval.py --data_dir=data/humanml3d --t2m_checkpoint=.../finest.tar --glove_dir=... --t2m_meta=...

The protocol (replications, the bootstrap's intervals) and the results' layout (a markdown table per split,
JSON in out/eval/<dataset>/<what>.json): docs/evaluation.md.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import data as motion_data
import motion
import sample
import tokenizer
from common import cli, parse_args, pick_device, progress_bar, write_json
from support import eval_metrics, eval_t2m
from support.eval_evaluator import load_evaluator, near_duplicates, train_evaluator
from support.eval_physical import action_figures, clip_plans, physical_check, plan_action
from support.eval_report import markdown_table

CONFIG = dict(
    data_dir="data/synth",
    evaluator_dir="",  # our evaluator's folder ("" -> out/evaluator/<dataset name>)
    # --train_evaluator: the dual encoder, support/eval_evaluator.py (its time on data/synth: docs/results.md)
    train_evaluator=False,
    width=96, heads=4, text_layers=2, motion_layers=2, dropout=0.0,
    emb_dim=64,  # fewer dimensions than test clips: the FID covariance stays well-conditioned
    bpe_vocab_size=1000, max_text_tokens=64,
    batch_size=128, max_iters=1000, lr=1e-3, warmup_iters=100, weight_decay=0.01,
    temperature=0.1,  # InfoNCE, as TMR
    duplicate_jaccard=0.8,  # captions with word sets this similar are no negatives of each other
    # evaluation
    replications=20, rprecision_batch=32, diversity_times=300, mm_texts=100, mm_samples=30, mm_times=10,
    eval_clips=0,  # clips per split (0: all; else drawn at random, seeded): fewer for a quick CPU run
    bootstrap=1000,  # draws of the intervals' bootstrap (over clips and replications)
    splits="test,ood",  # which splits (val: for choosing sampling settings, never test)
    lm_dir="out/lm/default",  # the LM run whose generations (sample.generate) are evaluated; "": none
    sample_temperature=-1.0, sample_top_k=-1, sample_top_p=-1.0, sample_guidance=-1.0,  # < 0: sample.py's
    sample_lengths="",
    tokenizer="",  # a tokenizer run (name under out/tokenizer/, or a folder): reconstruction only
    t2m_checkpoint="", glove_dir="", t2m_meta="",  # Guo et al.'s standard HumanML3D evaluator instead of ours
    out="",  # JSON path ("" -> out/eval/<dataset>/<what>.json)
    seed=0, device="auto",
)


@dataclass
class Replication:
    """One replication's draws, embedded ([N, F] each), in the reference draw's (shuffled) order."""
    clip: np.ndarray  # [N] clip indices
    caption: list  # the reference draw: its captions, their embeddings, its motions'
    text: np.ndarray
    reference: np.ndarray
    gt_caption: list  # a second draw of the real motions, the ground-truth row: captions, texts, motions
    gt_text: np.ndarray
    ground_truth: np.ndarray
    generated: np.ndarray = None  # the model's motions for the reference captions
    length_ratio: np.ndarray = None  # [N] their lengths over their clips'
    passed: np.ndarray = None  # [n_checked] does its take for each checked clip pass the check?
    mm: np.ndarray = None  # [mm_texts, mm_samples, F] generations of the first reference captions

    def pair(self, row):  # a row's (text embeddings, motion embeddings, captions), row i of each a pair
        if row == "ground_truth":
            return self.gt_text, self.ground_truth, self.gt_caption
        return self.text, self.generated, self.caption


def draw_clips(data, split, n, seed=0):
    """The clips a split is evaluated on: all of them (n = 0), or n drawn at random, seeded, in split order
    (the split files list clips in the order they were made, so the first n would not be a fair sample)."""
    clips = np.asarray(data.split(split))
    if not n or n >= len(clips):
        return clips
    return np.sort(clips[np.random.default_rng([seed, 1]).choice(len(clips), n, replace=False)])


def generated_feats(joints):
    """A generated clip's joints [T, J, 3] -> the evaluator's features, all T frames: the last joint frame is
    repeated (features_from_joints gives T - 1 frames, one per joint-frame pair), then unit_crop."""
    joints = np.asarray(joints)
    return eval_metrics.unit_crop(motion.features_from_joints(np.concatenate([joints, joints[-1:]])))


def replicate(ev, data, clips, checked, cfg, rep, generate):
    """Replication `rep` (its own seed): two protocol draws of the clips, the second put in the first's
    order; with `generate`, the model's take for each reference caption, one for every checked clip (for one
    of its captions at random: the physical checks), and mm_samples for each of the first mm_texts."""
    rng = np.random.default_rng([cfg["seed"], rep])
    reference, gt = (eval_metrics.protocol_draw(data, clips, rng) for _ in range(2))
    at = {c: k for k, c in enumerate(gt["clip"])}
    order = [at[c] for c in reference["clip"]]
    out = Replication(clip=np.array(reference["clip"]), caption=reference["caption"],
                      text=ev.embed_texts(reference["caption"], reference["tokens"]),
                      reference=ev.embed_motions(reference["feats"]),
                      gt_caption=[gt["caption"][k] for k in order],
                      gt_text=ev.embed_texts(gt["caption"], gt["tokens"])[order],
                      ground_truth=ev.embed_motions(gt["feats"])[order])
    if not generate:
        return out
    # each take keyed by its draw position: equal captions get independent takes
    joints = generate(reference["caption"], 1, rep, range(len(clips)))
    out.generated = ev.embed_motions([generated_feats(j) for j in joints])
    out.length_ratio = np.array([len(j) / len(data.motion(i)) for j, i in zip(joints, out.clip, strict=True)])
    if checked:
        texts = [(c := data.texts[i]["captions"])[int(rng.integers(len(c)))] for i in checked]
        joints = generate(texts, 1, 20_000 + rep, range(len(texts)))
        out.passed = np.array([physical_check(j, *a) for j, a in zip(joints, checked.values(), strict=True)])
    if cfg["mm_samples"] > 0 and cfg["mm_texts"] > 0:
        texts = reference["caption"][:cfg["mm_texts"]]
        mm = ev.embed_motions([generated_feats(j) for j in generate(texts, cfg["mm_samples"], 10_000 + rep,
                                                                     range(len(texts)))])
        out.mm = mm.reshape(len(texts), cfg["mm_samples"], -1)
    return out


def protocol_figures(rep, row, slots, cfg, seed, mm_texts=None):
    """The protocol's five figures for one row ("ground_truth" or "generated") of one replication, over
    `slots` (positions in its draw, in draw order; a bootstrap draw repeats some) and MultiModality's
    `mm_texts` (indices; None: all)."""
    text, motions, _ = rep.pair(row)
    # R-Precision: within batches of 32 consecutive draws (the last, partial one dropped: NaN), is a text's
    # own motion among its 1, 2, 3 nearest? Per clip, and averaged over the slots: a bootstrap resamples the
    # clips, not the batches (a clip twice in one batch would have fewer rivals, raising R-Precision)
    hits = eval_metrics.batch_hits(text, motions, cfg["rprecision_batch"])[slots]
    fig = {f"R@{k}": np.nanmean(hits[:, k - 1]) for k in (1, 2, 3)}
    # FID: the row's motions against the reference draw's real ones (for the ground truth: two draws)
    fig["FID"] = eval_metrics.frechet_distance(rep.reference[slots], motions[slots])
    # MMDist: the distance from a text to its own motion, over the clips R-Precision counts
    dist = np.linalg.norm(text - motions, axis=1)[slots]
    fig["MMDist"] = np.nanmean(np.where(np.isnan(hits[:, 0]), np.nan, dist))
    # Diversity: the mean distance between random pairs of the motions (T2M-GPT's 100 pairs on a small set)
    times = cfg["diversity_times"] if len(slots) > cfg["diversity_times"] else 100
    fig["Diversity"] = eval_metrics.diversity(motions[slots], min(times, len(slots) - 1), seed)
    # MultiModality: the mean distance between random pairs of generations of the same text
    if row == "generated" and rep.mm is not None:
        mm = rep.mm if mm_texts is None else rep.mm[mm_texts]
        fig["MultiModality"] = eval_metrics.multimodality(mm, cfg["mm_times"], seed)
    return {k: float(v) for k, v in fig.items()}


def length_figures(ratio):  # generated over real length, per clip -> its median, the share within 25%
    return {"length_ratio": float(np.median(ratio)),
            "length_within_25": float(np.mean(np.abs(ratio - 1) <= 0.25))}


def summarise(reps, row, clips, kinds, real, cfg):
    """A row's figures over `clips` (ids): the protocol's, then the gallery retrieval's, the lengths',
    the physical checks' (`kinds` of the checked clips; `real`: the real clips' outcomes), each the mean over
    the replications, with a 95% interval from a bootstrap that draws a replication and resamples the clips,
    the checked clips and the MultiModality texts (cfg["bootstrap"] draws, fixed seed)."""
    # the gallery: each text's rank among all the row's motions, near-duplicate captions positive
    ranks = [eval_metrics.gallery_ranks(text, motions, near_duplicates(captions, cfg["duplicate_jaccard"]))
             for text, motions, captions in (rep.pair(row) for rep in reps)]

    def figures(r, slots, checked_at, mm_texts, seed):  # every figure of replication r over these draws
        rep = reps[r]
        fig = protocol_figures(rep, row, slots, cfg, seed, mm_texts)
        fig |= {f"gallery_{k}": v for k, v in eval_metrics.gallery_figures(ranks[r][slots]).items()}
        fig |= length_figures(rep.length_ratio[slots]) if row == "generated" else {}
        passed = real if row == "ground_truth" else rep.passed
        return fig | (action_figures(passed, kinds, checked_at) if len(kinds) else {})

    every = [figures(r, np.flatnonzero(np.isin(rep.clip, clips)), np.arange(len(kinds)), None, r)
             for r, rep in enumerate(reps)]
    rng, n_mm = np.random.default_rng([cfg["seed"], 2]), 0 if reps[0].mm is None else len(reps[0].mm)
    draws = []
    for b in range(cfg["bootstrap"]):
        r = int(rng.integers(len(reps)))
        order = np.argsort(reps[r].clip)  # resampled clip ids -> their positions in the replication's draw
        slots = order[np.searchsorted(reps[r].clip, rng.choice(clips, len(clips)), sorter=order)]
        checked_at = rng.integers(len(kinds), size=len(kinds))
        draws.append(figures(r, slots, checked_at, rng.integers(n_mm, size=n_mm) if n_mm else None, b))
    out = {"n_clips": len(clips), "n_checked": len(kinds), "replications": len(reps)}
    for key in every[0]:
        values = [d[key] for d in draws if key in d]  # a kind absent from a draw has no rate there
        out[key] = float(np.mean([f[key] for f in every]))
        share = key.startswith(("R@", "gallery_R@", "action_", "count_", "length_within"))  # shares: <= 1
        out[f"{key}_ci"] = eval_metrics.interval(values, out[key], share) if values else [out[key]] * 2
    return out


def evaluate_split(ev, data, clips, cfg, generate=None, checked_clips=None, subset=None, progress=True):
    """A split's result (docs/evaluation.md#output): n, the kinds checked and the rows "ground_truth" and
    (with `generate`) "generated". The physical checks run on every clip of `checked_clips` (default: `clips`)
    that has one; `subset` (clip indices) adds the rows "<row>_subset" over those of the evaluated clips only.
    generate(texts, num_samples, seed, keys) -> joints [T, J, 3] per text and sample, text-major."""
    pool = clips if checked_clips is None else checked_clips
    checked = {i: a for i, plan in zip(pool.tolist(), clip_plans(data, pool), strict=True)
               if (a := plan_action(plan))}
    kinds = np.array([a[0] for a in checked.values()])
    real = np.array([physical_check(motion.recover_from_ric(np.array(data.motion(i)), data.joints_num), *a)
                     for i, a in checked.items()])
    reps = [replicate(ev, data, clips, checked, cfg, rep, generate)
            for rep in progress_bar(range(cfg["replications"]), desc="replications", disable=not progress)]
    out = {"n_clips": len(clips), "n_checked": len(checked), "replications": len(reps),
           "kinds": {str(k): int(n) for k, n in zip(*np.unique(kinds, return_counts=True), strict=True)}}
    groups = {"": np.asarray(clips)} | ({} if subset is None else {"_subset": np.intersect1d(clips, subset)})
    for suffix, ids in groups.items():
        if len(ids) < 3:
            print(f"{len(ids)} clips in the subset: too few for its rows")
            continue
        for row in ("ground_truth", "generated") if generate else ("ground_truth",):
            out[row + suffix] = summarise(reps, row, ids, kinds, real, cfg)
    return out


@torch.no_grad()
def evaluate_tokenizer(ev, tok, data, clips):
    """Table 6's setting: whole clips (cropped to 4-frame units) through encode/decode -> MPJPE (mm),
    codebook utilisation (as the tokenizer's own metrics.json) and the FID of the evaluator's embeddings."""
    pairs = []
    metrics = tokenizer.evaluate(tok, data, clips=clips, keep=pairs)
    real = [f for feats, _ in pairs for f in feats[:, :motion.MAX_FRAMES].cpu().numpy()]
    recon = [f for _, out in pairs for f in out[:, :motion.MAX_FRAMES].cpu().numpy()]
    return {"clips": len(clips), "mpjpe_mm": metrics["mpjpe_mm"],
            "FID": eval_metrics.frechet_distance(ev.embed_motions(real), ev.embed_motions(recon)),
            "utilisation": metrics["utilisation"]}


# ----------------------------------------------------------------------------------------------
# command line
def sampling(cfg):
    """The --sample_* settings as sample.generate takes them (None: sample.DEFAULTS)."""
    return {k.removeprefix("sample_"): None if sample.unset(v) else v for k, v in cfg.items()
            if k.startswith("sample_")}


def _generator(cfg):
    """sample.generate with this run's settings, as generate(texts, num_samples, seed, keys) -> joints."""
    if not (Path(cfg["lm_dir"]) / "config.json").is_file():
        raise FileNotFoundError(f"{cfg['lm_dir']}: no trained LM run (train one with `python train.py "
                                f"--run_name={Path(cfg['lm_dir']).name}`, or pass --lm_dir= for the "
                                f"ground-truth rows only)")
    device = pick_device(cfg["device"])

    def generate(texts, num_samples, seed, keys=None):
        return sample.generate(list(texts), lm_dir=cfg["lm_dir"], num_samples=num_samples, seed=seed,
                               keys=keys, device=device, **sampling(cfg))
    return generate


def pick_evaluator(cfg, data, device):
    """(the evaluator, its name in the results): Guo et al.'s with --t2m_checkpoint, else ours."""
    if cfg["t2m_checkpoint"]:  # Table 3's figures: Guo et al.'s evaluator on their test set's composition
        if not (data.meta.get("source") or {}).get("t2m_test"):
            raise ValueError(f"{data.root}: its test split is not the one Guo et al.'s evaluation reads "
                             "(files of 200+ frames dropped, one entry per sub-clip caption line); rebuild "
                             "it with `python data.py --source=humanml3d --src=DIR --t2m_test`")
        return eval_t2m.load(cfg["t2m_checkpoint"], cfg["glove_dir"], cfg["t2m_meta"], device), "t2m"
    folder = Path(cfg["evaluator_dir"] or Path("out/evaluator") / data.meta["name"])
    ev = load_evaluator(folder, device)
    if ev.cfg["feat_dim"] != data.feat_dim:
        raise ValueError(f"{folder}: trained on {ev.cfg['feat_dim']}-wide features, {data.root} has "
                         f"{data.feat_dim}; train an evaluator on this dataset")
    return ev, str(folder)


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "eval.py")}
    if cfg["train_evaluator"]:
        train_evaluator(cfg)
        return
    if cfg["mm_texts"] > 0 and cfg["mm_samples"] <= cfg["mm_times"]:  # checked before any generation
        raise ValueError(f"--mm_samples={cfg['mm_samples']}: MultiModality draws {cfg['mm_times']} pairs of "
                         f"distinct samples per text, so it needs more than --mm_times={cfg['mm_times']}")
    data = motion_data.MotionData(cfg["data_dir"])
    device = pick_device(cfg["device"])
    ev, evaluator = pick_evaluator(cfg, data, device)
    splits = [s for s in cfg["splits"].split(",") if (data.root / f"{s}.txt").is_file()]
    clips = {s: draw_clips(data, s, cfg["eval_clips"], cfg["seed"]) for s in splits}
    results = {"dataset": str(data.root), "evaluator": evaluator, "settings": cfg}
    if cfg["tokenizer"]:
        run = Path(cfg["tokenizer"])
        run = run if run.is_dir() else Path("out/tokenizer") / run
        tok, what = tokenizer.load(run, device), f"tokenizer_{run.name}"
        print(f"| {run.name} | split | clips | MPJPE (mm) | FID | utilisation |\n|---|---|---|---|---|---|")
        for s in splits:
            r = results[s] = evaluate_tokenizer(ev, tok, data, clips[s])
            print(f"| | {s} | {r['clips']} | {r['mpjpe_mm']:.1f} | {r['FID']:.3f} | {r['utilisation']:.3f} |")
    else:
        generate = _generator(cfg) if cfg["lm_dir"] else None
        what = Path(cfg["lm_dir"]).name if generate else "ground_truth"
        for s in splits:  # OOD: also the rows over its single-segment clips (*_subset)
            split, plans = data.split(s), clip_plans(data, data.split(s))
            single = None if s != "ood" or None in plans else split[[len(p["segments"]) == 1 for p in plans]]
            results[s] = evaluate_split(ev, data, clips[s], cfg, generate, split, single)
            mm = f", MultiModality {cfg['mm_texts']} texts x {cfg['mm_samples']}" if generate and cfg[
                "mm_texts"] > 0 else ""
            subset = "; *_subset: the single-segment clips among them" if single is not None else ""
            print(f"\n{data.root} {s}: {len(clips[s])} clips{subset}; action checks on every checkable clip "
                  f"of the split{mm}\n")
            print(markdown_table(results[s]))
    out = Path(cfg["out"] or Path("out/eval") / data.meta["name"] / f"{what}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli(main, "eval.py")
