"""Evaluation (paper §5.1, Tables 2, 3, 5, 6): every metric of the standard text-to-motion protocol (Guo
et al. 2022, with T2M-GPT's numerics: support/eval_metrics.py), measured with our text/motion evaluator
(support/eval_evaluator.py; Guo et al.'s own in support/eval_t2m.py), and what §5.4 says is missing:
retrieval against the whole test set, physical checks on the joints that need no evaluator
(support/eval_physical.py), also on real clips through the tokenizer, and captions seen in train against new
phrasings. Editing and MultiModality have their own commands: experiments/edits.py, multimodality.py.

    python eval.py --train_evaluator        # the dual encoder on data/synth -> out/evaluator/synth/
    python eval.py --lm_dir=                # ground-truth rows only (test and OOD splits)
    python eval.py                          # generated motions of out/lm/default against ground truth
    python eval.py --tokenizer=default      # reconstruction only (Table 6): MPJPE, FID, utilisation
    python eval.py --data_dir=data/humanml3d --t2m_checkpoint=.../finest.tar --glove_dir=... --t2m_meta=...

The protocol (replications, the bootstrap's intervals) and the results' layout (a markdown table per split,
JSON in out/eval/<dataset>/<what>.json): docs/evaluation.md.
"""

from dataclasses import dataclass, field
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
from support.eval_physical import (
    COUNTED,
    action_figures,
    checked_actions,
    clip_plans,
    physical_check,
    reconstruction_passes,
)
from support.eval_report import markdown_table
from support.text_tokenizer import normalise_caption

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
    # evaluation (MultiModality: experiments/multimodality.py)
    replications=20, rprecision_batch=32, diversity_times=300,
    eval_clips=0,  # clips per split (0: all; else drawn at random, seeded): fewer for a quick CPU run
    seen_new=True,  # a clip with captions of seen and of new phrasing: one kind a replication, the other the
    # next (rows *_seen, *_new); False: any caption, as Guo et al.'s draw (for published comparisons)
    bootstrap=1000,  # draws of the intervals' bootstrap (over clips and replications)
    splits="test,ood",  # which splits (val: for choosing sampling settings, never test)
    lm_dir="out/lm/default",  # the LM run whose generations (sample.generate) are evaluated; "": none
    sample_temperature=-1.0, sample_top_k=-1, sample_top_p=-1.0, sample_guidance=-1.0,  # < 0: sample.py's
    sample_lengths="",  # "" (sample.py's), median | draw | model, or real: each take as long as its clip
    tokenizer="",  # a tokenizer run (name under out/tokenizer/, or a folder): reconstruction only
    t2m_checkpoint="", glove_dir="", t2m_meta="",  # Guo et al.'s standard HumanML3D evaluator instead of ours
    out="",  # JSON path ("" -> out/eval/<dataset>/<what>.json)
    seed=0, device="auto",
)
DIFFERENCES = ("R@1", "R@3", "action_accuracy", "count_accuracy")  # the paired rows <row>_new_minus_seen


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
    phrase: np.ndarray = None  # [N] each clip's phrasing in both draws: 0 seen, 1 new, -1 any (not both)
    checked_phrase: np.ndarray = None  # [n_checked] the same for the checked clips' captions
    cache: dict = field(default_factory=dict)  # per row: R-Precision hits, gallery ranks

    def pair(self, row):  # a row's (text embeddings, motion embeddings, captions), row i of each a pair
        if row == "ground_truth":
            return self.gt_text, self.ground_truth, self.gt_caption
        return self.text, self.generated, self.caption

    def hits(self, row, batch):  # [N, 3] R@1-3 hits within the draw's batches (NaN: the partial one)
        if ("hits", row, batch) not in self.cache:
            self.cache["hits", row, batch] = eval_metrics.batch_hits(*self.pair(row)[:2], batch)
        return self.cache["hits", row, batch]

    def ranks(self, row, jaccard):  # each text's rank among all the draw's motions, near-duplicates positive
        if ("ranks", row) not in self.cache:
            text, motions, captions = self.pair(row)
            dup = near_duplicates(captions, jaccard)
            self.cache["ranks", row] = eval_metrics.gallery_ranks(text, motions, dup)
        return self.cache["ranks", row]


def draw_clips(data, split, n, seed=0):
    """The clips a split is evaluated on: all of them (n = 0), or n drawn at random, seeded, in split order
    (the split files list clips in the order they were made, so the first n would not be a fair sample)."""
    clips = np.asarray(data.split(split))
    if not n or n >= len(clips):
        return clips
    return np.sort(clips[np.random.default_rng([seed, 1]).choice(len(clips), n, replace=False)])


def phrasings(data, groups, seed=0):
    """{clip: ((indices of its seen captions, of its new ones), a bit)} for the clips of `groups` (lists of
    clips) that have captions of both kinds: seen when a train clip has the same caption after
    normalise_caption (the one normalisation the LM and the evaluator read), new otherwise. Replication r
    draws the clip with phrasing (bit + r) % 2 (0 seen, 1 new); the bits split each group in halves, so
    every replication mixes both kinds alike on the evaluated clips and on the other checked ones."""
    train = {normalise_caption(c) for i in data.split("train") for c in data.texts[i]["captions"]}
    out = {}
    for g, clips in enumerate(groups):
        kinds = {}
        for i in sorted(set(np.asarray(clips, np.int64).tolist()) - set(out)):
            seen = np.array([normalise_caption(c) in train for c in data.texts[i]["captions"]])
            if seen.any() and not seen.all():
                kinds[i] = (np.flatnonzero(seen), np.flatnonzero(~seen))
        bits = np.random.default_rng([seed, 4, g]).permutation(len(kinds)) % 2
        out |= {i: (k, int(b)) for (i, k), b in zip(kinds.items(), bits, strict=True)}
    return out


def generated_feats(joints):
    """A generated clip's joints [T, J, 3] -> the evaluator's features, all T frames: the last joint frame is
    repeated (features_from_joints gives T - 1 frames, one per joint-frame pair), then unit_crop."""
    joints = np.asarray(joints)
    return eval_metrics.unit_crop(motion.features_from_joints(np.concatenate([joints, joints[-1:]])))


def replicate(ev, data, clips, checked, cfg, rep, generate, phr=None):
    """Replication `rep` (its own seed): two protocol draws of the clips, the second put in the first's
    order, a clip of `phr` (phrasings()) drawn with its phrasing of this replication in both; with `generate`,
    the model's take for each reference caption, and one for every checked clip (for one of its captions at
    random, of that phrasing: the physical checks)."""
    rng = np.random.default_rng([cfg["seed"], rep])
    phrase = {i: (bit + rep) % 2 for i, (_, bit) in (phr or {}).items()}
    allowed = {i: phr[i][0][k] for i, k in phrase.items()}
    reference, gt = (eval_metrics.protocol_draw(data, clips, rng, allowed) for _ in range(2))
    at = {c: k for k, c in enumerate(gt["clip"])}
    order = [at[c] for c in reference["clip"]]
    out = Replication(clip=np.array(reference["clip"]), caption=reference["caption"],
                      text=ev.embed_texts(reference["caption"], reference["tokens"]),
                      reference=ev.embed_motions(reference["feats"]),
                      gt_caption=[gt["caption"][k] for k in order],
                      gt_text=ev.embed_texts(gt["caption"], gt["tokens"])[order],
                      ground_truth=ev.embed_motions(gt["feats"])[order],
                      phrase=np.array([phrase.get(c, -1) for c in reference["clip"]]),
                      checked_phrase=np.array([phrase.get(i, -1) for i in checked], np.int64))
    if not generate:
        return out
    # each take keyed by its draw position: equal captions get independent takes
    joints = generate(reference["caption"], 1, rep, range(len(clips)), **real_steps(data, out.clip, cfg))
    out.generated = ev.embed_motions([generated_feats(j) for j in joints])
    out.length_ratio = np.array([len(j) / len(data.motion(i)) for j, i in zip(joints, out.clip, strict=True)])
    if checked:
        texts = [(c := data.texts[i]["captions"])[eval_metrics.pick(len(c), allowed.get(i), rng)]
                 for i in checked]
        joints = generate(texts, 1, 20_000 + rep, range(len(texts)), **real_steps(data, checked, cfg))
        out.passed = np.array([physical_check(j, *a) for j, a in zip(joints, checked.values(), strict=True)])
    return out


def real_steps(data, clips, cfg):
    """--sample_lengths=real: {"steps": each clip's length in codes} for generate, else {} (sample.py's)."""
    real = cfg["sample_lengths"] == "real"  # does the LM fit "three squats" into the clip's real length?
    return {"steps": [len(data.motion(i)) // motion.FRAMES_PER_CODE for i in clips]} if real else {}


def protocol_figures(rep, row, slots, cfg, seed):
    """The protocol's figures for one row ("ground_truth" or "generated") of one replication, over `slots`
    (positions in its draw, in draw order; a bootstrap draw repeats some)."""
    text, motions, _ = rep.pair(row)
    # R-Precision: within batches of 32 consecutive draws (the last, partial one dropped: NaN), is a text's
    # own motion among its 1, 2, 3 nearest? Per clip, and averaged over the slots: a bootstrap resamples the
    # clips, not the batches (a clip twice in one batch would have fewer rivals, raising R-Precision)
    hits = rep.hits(row, cfg["rprecision_batch"])[slots]
    fig = {f"R@{k}": np.nanmean(hits[:, k - 1]) for k in (1, 2, 3)}
    # FID: the row's motions against the reference draw's real ones (for the ground truth: two draws); none
    # over fewer motions than dimensions, whose covariance is singular (summarise says so)
    if len(slots) >= motions.shape[1]:
        fig["FID"] = eval_metrics.frechet_distance(rep.reference[slots], motions[slots])
    # MMDist: the distance from a text to its own motion, over the clips R-Precision counts
    dist = np.linalg.norm(text - motions, axis=1)[slots]
    fig["MMDist"] = np.nanmean(np.where(np.isnan(hits[:, 0]), np.nan, dist))
    # Diversity: the mean distance between random pairs of the motions (T2M-GPT's 100 pairs on a small set)
    times = cfg["diversity_times"] if len(slots) > cfg["diversity_times"] else 100
    fig["Diversity"] = eval_metrics.diversity(motions[slots], min(times, len(slots) - 1), seed)
    return {k: float(v) for k, v in fig.items()}


def row_figures(rep, row, slots, kinds, checked_at, real, cfg, seed):
    """Every figure of a row of one replication over `slots` and the checked clips `checked_at` (positions;
    a bootstrap draw repeats some): the protocol's, the gallery's, the lengths', the physical checks' (the
    real clips' outcomes `real` for the ground truth)."""
    fig = protocol_figures(rep, row, slots, cfg, seed)
    ranks = rep.ranks(row, cfg["duplicate_jaccard"])[slots]
    fig |= {f"gallery_{k}": v for k, v in eval_metrics.gallery_figures(ranks).items()}
    fig |= eval_metrics.length_figures(rep.length_ratio[slots]) if row == "generated" else {}
    passed = real if row == "ground_truth" else rep.passed
    return fig | (action_figures(passed, kinds, checked_at) if len(checked_at) else {})


def slots_of(rep, clips):  # positions of clip ids (repeats allowed) in a replication's draw
    order = np.argsort(rep.clip)
    return order[np.searchsorted(rep.clip, clips, sorter=order)]


def share_intervals(fig, kinds, n_clips):
    """Wilson intervals for a row's shares of clips (`fig`: its means over the replications, which judge the
    same clips: pooled shares). n is the clips, not clips x replications: one clip's takes share its text and
    motion, so they are not independent trials."""
    n = {"action_accuracy": len(kinds), "count_accuracy": int(np.isin(kinds, COUNTED).sum()),
         "length_within_25": n_clips} | {f"action_{k}": int((kinds == k).sum()) for k in np.unique(kinds)}
    return {f"{k}_ci": eval_metrics.wilson(fig[k], m) for k, m in n.items() if k in fig}


def summarise(reps, row, clips, kinds, real, cfg, checked_at=None):
    """A row's figures over `clips` (ids) and the checked clips `checked_at` (positions; default all), each
    the mean over the replications, with a 95% interval: Wilson's for a share of clips (share_intervals),
    else a bootstrap that draws a replication and resamples the clips and the checked clips (cfg["bootstrap"]
    draws, fixed seed)."""
    at = np.arange(len(kinds)) if checked_at is None else np.asarray(checked_at)
    every = [row_figures(rep, row, np.flatnonzero(np.isin(rep.clip, clips)), kinds, at, real, cfg, r)
             for r, rep in enumerate(reps)]
    rng, draws = np.random.default_rng([cfg["seed"], 2]), []
    for b in range(cfg["bootstrap"]):
        r = int(rng.integers(len(reps)))
        slots = slots_of(reps[r], rng.choice(clips, len(clips)))
        draws.append(row_figures(reps[r], row, slots, kinds, rng.choice(at, len(at)), real, cfg, b))
    out = {"n_clips": len(clips), "n_checked": len(at), "replications": len(reps)}
    out |= {key: float(np.mean([f[key] for f in every])) for key in every[0]}
    shares = share_intervals(out, kinds[at], len(clips))
    for key in every[0]:
        values = [d[key] for d in draws if key in d]  # a kind absent from a draw has no rate there
        share = key.startswith(("R@", "gallery_R@", "action_"))  # <= 1
        out[f"{key}_ci"] = shares.get(f"{key}_ci") or (eval_metrics.interval(values, out[key], 0, 1 if share
                                                        else np.inf) if values else [out[key]] * 2)
    if "FID" not in out:
        out["note"] = f"no FID: {len(clips)} clips, fewer than the {reps[0].reference.shape[1]} dimensions"
    return out


def join(group, which, batch):
    """The takes of phrasing `which` (0 seen, 1 new) of the clips that have both, in a group of replications,
    as one replication: replications 2k and 2k + 1 drew each such clip once each way, so their takes joined
    hold each clip once (one replication alone: its half of the clips). A take keeps its R-Precision hits
    within its own draw's batches; its gallery is the joined clips."""
    sel = [np.flatnonzero(r.phrase == which) for r in group]

    def cat(name):  # a field over the selected clips of each replication, one after the other
        parts = [getattr(r, name) for r in group]
        return None if parts[0] is None else np.concatenate([np.asarray(v)[s] for v, s in zip(
            parts, sel, strict=True)])
    rep = Replication(**{k: cat(k) for k in ("clip", "text", "reference", "gt_text", "ground_truth",
                                             "generated", "length_ratio", "phrase")},
                      caption=cat("caption").tolist(), gt_caption=cat("gt_caption").tolist())
    rows = ("ground_truth", "generated") if rep.generated is not None else ("ground_truth",)
    rep.cache = {("hits", row, batch): np.concatenate([r.hits(row, batch)[s] for r, s in zip(
        group, sel, strict=True)]) for row in rows}
    mine = [r.checked_phrase == which for r in group]  # each checked clip's take of this phrasing
    rep.checked_phrase = np.where(np.any(mine, 0), which, -1)
    if group[0].passed is not None:
        rep.passed = np.zeros(len(mine[0]), bool)
        for r, m in zip(group, mine, strict=True):
            rep.passed[m] = r.passed[m]
    return rep


def paired_difference(seen, new, row, clips, kinds, checked_at, real, cfg):
    """new - seen of DIFFERENCES (the action ones for generated takes) on the same clips, the mean over the
    pairs of replications, with a 95% interval from a paired bootstrap: one resample of the clips and of the
    checked clips for both phrasings, drawn from the same pair of replications."""
    batch = cfg["rprecision_batch"]

    def figures(rep, clip_ids, at):
        hits = rep.hits(row, batch)[slots_of(rep, clip_ids)]
        fig = {"R@1": np.nanmean(hits[:, 0]), "R@3": np.nanmean(hits[:, 2])}
        return fig | (action_figures(rep.passed, kinds, at) if row == "generated" and len(at) else {})

    def diff(p, clip_ids, at):
        a, b = figures(seen[p], clip_ids, at), figures(new[p], clip_ids, at)
        return {k: float(b[k] - a[k]) for k in DIFFERENCES if k in a and k in b}

    every = [diff(p, clips, checked_at) for p in range(len(seen))]
    rng = np.random.default_rng([cfg["seed"], 5])
    draws = [diff(int(rng.integers(len(seen))), rng.choice(clips, len(clips)),
                  rng.choice(checked_at, len(checked_at))) for _ in range(cfg["bootstrap"])]
    out = {"n_clips": len(clips), "n_checked": len(checked_at), "replications": len(seen)}
    for key in every[0]:
        out[key] = float(np.mean([f[key] for f in every]))
        out[f"{key}_ci"] = eval_metrics.interval([d[key] for d in draws if key in d], out[key], -1, 1)
    return out


def phrasing_rows(reps, rows, kinds, real, cfg):
    """The rows <row>_seen and <row>_new over the evaluated clips that have captions of both phrasings, and,
    with two replications or more (each clip drawn both ways), <row>_new_minus_seen."""
    groups = [reps[k:k + 2] for k in range(0, len(reps) - 1, 2)] or [reps[:1]]  # pairs (join)
    joined = [[join(g, which, cfg["rprecision_batch"]) for g in groups] for which in (0, 1)]
    out = {}
    for which, name in enumerate(("seen", "new")):
        clips = np.sort(joined[which][0].clip)
        at = np.flatnonzero(joined[which][0].checked_phrase == which)
        if len(clips) < 3:
            print(f"{len(clips)} evaluated clips with captions of both phrasings: too few for *_{name} rows")
            return {}
        out |= {f"{row}_{name}": summarise(joined[which], row, clips, kinds, real, cfg, at) for row in rows}
    if len(reps) >= 2:
        out |= {f"{row}_new_minus_seen": paired_difference(*joined, row, clips, kinds, at, real, cfg)
                for row in rows}
    return out


def evaluate_split(ev, data, clips, cfg, generate=None, checked_clips=None, subset=None, progress=True,
                   tok=None):
    """A split's result (docs/evaluation.md#output): n, the kinds checked and the rows "ground_truth" and
    (with `generate`) "generated", their *_seen, *_new and *_new_minus_seen rows (cfg["seen_new"]), and with
    `tok` (the LM run's tokenizer) "tokenizer": the checks on reconstructed real clips. The checks run on
    every clip of `checked_clips` (default: `clips`) that has one; `subset` (clip indices) adds the rows
    "<row>_subset" over those of the evaluated clips only.
    generate(texts, num_samples, seed, keys) -> joints [T, J, 3] per text and sample, text-major."""
    pool = clips if checked_clips is None else checked_clips
    checked = checked_actions(data, pool)
    kinds = np.array([a[0] for a in checked.values()])
    real = np.array([physical_check(motion.recover_from_ric(np.array(data.motion(i)), data.joints_num), *a)
                     for i, a in checked.items()])
    phr = phrasings(data, [clips, list(checked)], cfg["seed"]) if cfg["seen_new"] else {}
    reps = [replicate(ev, data, clips, checked, cfg, rep, generate, phr)
            for rep in progress_bar(range(cfg["replications"]), desc="replications", disable=not progress)]
    out = {"n_clips": len(clips), "n_checked": len(checked), "replications": len(reps),
           "kinds": {str(k): int(n) for k, n in zip(*np.unique(kinds, return_counts=True), strict=True)}}
    rows = ("ground_truth", "generated") if generate else ("ground_truth",)
    groups = {"": np.asarray(clips)} | ({} if subset is None else {"_subset": np.intersect1d(clips, subset)})
    for suffix, ids in groups.items():
        if len(ids) < 3:
            print(f"{len(ids)} clips in the subset: too few for its rows")
            continue
        out |= {row + suffix: summarise(reps, row, ids, kinds, real, cfg) for row in rows}
    if np.isin(reps[0].phrase, (0, 1)).any():
        out |= phrasing_rows(reps, rows, kinds, real, cfg)
    if tok is not None and checked:
        passed = reconstruction_passes(tok, data, checked)
        fig = action_figures(passed, kinds, np.arange(len(kinds)))
        out["tokenizer"] = {"n_clips": len(kinds), "n_checked": len(kinds), "replications": 1, **fig,
                            **share_intervals(fig, kinds, len(kinds))}
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
    """The --sample_* settings as sample.generate takes them (None: sample.DEFAULTS; --sample_lengths=real is
    eval.py's own: the steps real_steps gives generate, which then needs no length setting)."""
    return {k.removeprefix("sample_"): None if sample.unset(v) or v == "real" else v for k, v in cfg.items()
            if k.startswith("sample_")}


def _generator(cfg):
    """sample.generate with this run's settings, as generate(texts, num_samples, seed, keys) -> joints."""
    if not (Path(cfg["lm_dir"]) / "config.json").is_file():
        raise FileNotFoundError(f"{cfg['lm_dir']}: no trained LM run (train one with `python train.py "
                                f"--run_name={Path(cfg['lm_dir']).name}`, or pass --lm_dir= for the "
                                f"ground-truth rows only)")
    device, settings = pick_device(cfg["device"]), sampling(cfg)

    def generate(texts, num_samples, seed, keys=None, steps=None):
        return sample.generate(list(texts), lm_dir=cfg["lm_dir"], num_samples=num_samples, seed=seed,
                               keys=keys, device=device, steps=steps, **settings)
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
        tok = sample.cached_run(cfg["lm_dir"], device)[1] if generate else None  # the run's own tokenizer
        for s in splits:  # OOD: also the rows over its single-segment clips (*_subset)
            split, plans = data.split(s), clip_plans(data, data.split(s))
            single = None if s != "ood" or None in plans else split[[len(p["segments"]) == 1 for p in plans]]
            results[s] = evaluate_split(ev, data, clips[s], cfg, generate, split, single, tok=tok)
            subset = "; *_subset: the single-segment clips among them" if single is not None else ""
            print(f"\n{data.root} {s}: {len(clips[s])} clips{subset}; action checks on every checkable clip "
                  f"of the split\n")
            print(markdown_table(results[s]))
    out = Path(cfg["out"] or Path("out/eval") / data.meta["name"] / f"{what}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli(main, "eval.py")
