"""Evaluation (paper §5.1, Tables 2, 3, 5, 6): every metric of the standard text-to-motion protocol (Guo
et al. 2022, with T2M-GPT's numerics), measured with our text/motion evaluator (support/evaluator.py; Guo et
al.'s own in support/t2m.py), and what §5.4 says is missing: retrieval against the whole test set, and
physical checks on the joints that need no evaluator (support/physical.py).

    python eval.py --train_evaluator        # the dual encoder on data/synth -> out/evaluator/synth/
    python eval.py --lm_dir=                # ground-truth rows only (test and OOD splits)
    python eval.py                          # generated motions of out/lm/default against ground truth
    python eval.py --tokenizer=default      # reconstruction only (Table 6): MPJPE, FID, utilisation
    python eval.py --data_dir=data/humanml3d --t2m_checkpoint=.../finest.tar --glove_dir=... --t2m_meta=...

The protocol, per replication (20 by default; each regenerates the test set): every test clip with one of
its captions at random and a crop of its length floored to 4-frame units (one unit shorter one time in
three) at a random offset; shuffled; R-Precision and MMDist within batches of 32 (the last partial batch
dropped); FID against a second such draw of the real motions; Diversity over 300 random pairs;
MultiModality over mm_texts texts x mm_samples generations. The physical checks run on every checkable clip
of the split, one take each. Each figure is the mean over the replications with a 95% interval from a
bootstrap over the clips and the replications. Results: a markdown table per split, and JSON
(out/eval/<dataset>/<what>.json) with each figure under its name, its interval under <name>_ci ([low, high])
and n (n_clips, n_checked, replications) per row.
"""

from pathlib import Path

import numpy as np
import torch

import data as motion_data
import motion
from common import cli, parse_args, pick_device, progress_bar, write_json
from motion import MAX_FRAMES
from support.editing import evaluate_edits
from support.evaluator import UNIT, load_evaluator, near_duplicates, train_evaluator
from support.physical import clip_plans, physical_check, plan_action
from support.report import edit_table, markdown_table

CONFIG = dict(
    data_dir="data/synth",
    evaluator_dir="",  # our evaluator's folder ("" -> out/evaluator/<dataset name>)
    # --train_evaluator: the dual encoder, support/evaluator.py (its time on data/synth: docs/results.md)
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
    sample_lengths="", sample_length_slack=-1.0,
    edits=False,  # also the edit protocol (support/editing.py): by body part and by time, on the splits
    tokenizer="",  # a tokenizer run (name under out/tokenizer/, or a folder): reconstruction only
    t2m_checkpoint="", glove_dir="", t2m_meta="",  # Guo et al.'s standard HumanML3D evaluator instead of ours
    out="",  # JSON path ("" -> out/eval/<dataset>/<what>.json)
    seed=0, device="auto",
)


# ----------------------------------------------------------------------------------------------
# Metrics on numpy embeddings, the T2M protocol's numerics (T2M-GPT utils/eval_trans.py), float64.
def euclidean_distances(a, b):
    """[N, F], [M, F] -> [N, M] with ||a_i - b_j|| (the protocol's expansion, clipped at 0 for rounding)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sq = (a ** 2).sum(1)[:, None] - 2 * a @ b.T + (b ** 2).sum(1)[None]
    return np.sqrt(np.maximum(sq, 0))


def frechet_distance(a, b):
    """FID between the Gaussians fitted to a [N, F] and b [M, F] (mean, np.cov with N - 1):
    ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)). S_a S_b is similar to the symmetric PSD
    S_a^(1/2) S_b S_a^(1/2), so tr((S_a S_b)^(1/2)) is the sum of the square roots of that matrix's
    eigenvalues: two symmetric eigendecompositions instead of scipy's general sqrtm, no complex parts."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance needs two sets [N>=2, F] of equal F, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.maximum(w, 0))) @ v.T
    tr_covmean = np.sqrt(np.maximum(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * tr_covmean)


def retrieval_hits(text_emb, motion_emb, top_k=3):
    """One batch, row i of each a matching pair -> [N, top_k] 0/1: is text i's own motion among its k
    nearest motions (euclidean), k = 1..top_k. Ties go to the lower index (argsort, as the protocol)."""
    order = np.argsort(euclidean_distances(text_emb, motion_emb), axis=1, kind="stable")
    hit = order[:, :top_k] == np.arange(len(order))[:, None]
    return np.cumsum(hit, axis=1).clip(max=1)


def batch_hits(text_emb, motion_emb, batch=32):
    """retrieval_hits within batches of `batch` consecutive pairs -> [N, 3]; NaN for the pairs of the last,
    partial batch, which the protocol drops. np.nanmean over them is R@1-3."""
    n = len(text_emb) // batch * batch
    if n == 0:
        raise ValueError(f"{len(text_emb)} clips, fewer than one R-Precision batch of {batch}")
    hits = np.full((len(text_emb), 3), np.nan)
    for s in range(0, n, batch):
        hits[s:s + batch] = retrieval_hits(text_emb[s:s + batch], motion_emb[s:s + batch])
    return hits


def diversity(emb, times=300, seed=0):
    """Mean distance over `times` pairs: two independent draws of `times` distinct rows each."""
    if len(emb) <= times:
        raise ValueError(f"diversity over {times} pairs needs more than {times} motions, got {len(emb)}")
    rng = np.random.default_rng(seed)
    first, second = (rng.choice(len(emb), times, replace=False) for _ in range(2))
    return float(np.linalg.norm(np.asarray(emb, np.float64)[first] - emb[second], axis=1).mean())


def multimodality(emb, times=10, seed=0):
    """emb [n_text, n_rep, F]: per text, the mean distance over `times` pairs of its generations (the same
    two draws of distinct generation indices for every text)."""
    if emb.ndim != 3 or emb.shape[1] <= times:
        raise ValueError(f"multimodality needs [n_text, n_rep > {times}, F], got {emb.shape}")
    rng = np.random.default_rng(seed)
    first, second = (rng.choice(emb.shape[1], times, replace=False) for _ in range(2))
    return float(np.linalg.norm(np.asarray(emb, np.float64)[:, first] - emb[:, second], axis=2).mean())


def gallery_ranks(text_emb, motion_emb, duplicates=None):
    """Text -> motion retrieval against the whole gallery (TMR's protocol; unlike 32-way R-Precision it does
    not saturate): the rank of text i is 1 + the motions closer than its nearest positive. Positives are
    motion i and, with `duplicates` [N, N] (bool), the motions whose captions are near-duplicates of caption
    i (TMR's thresholded protocol, with our near-duplicate rule in place of its sentence-embedding one)."""
    dist = euclidean_distances(text_emb, motion_emb)
    positive = np.eye(len(dist), dtype=bool) | (False if duplicates is None else duplicates)
    nearest = np.where(positive, dist, np.inf).min(1)
    return 1 + ((dist < nearest[:, None]) & ~positive).sum(1)


def gallery_figures(rank):  # gallery ranks -> R@1, R@5, R@10 (shares of texts), median rank
    return {"R@1": float((rank <= 1).mean()), "R@5": float((rank <= 5).mean()),
            "R@10": float((rank <= 10).mean()), "median_rank": float(np.median(rank))}


# ----------------------------------------------------------------------------------------------
# The protocol's draws of a split, shared by the evaluator's training (random pairs) and evaluation.
def protocol_draw(data, clips, rng):
    """Each clip (in a random order) with one of its captions at random (and that caption's POS tokens when
    the dataset keeps them) and a crop: its length floored to 4-frame units, one unit less one time in three
    (dataset_TM_eval.py), at most 196 frames, at a random offset. -> dict of lists."""
    draw = {"clip": [], "caption": [], "tokens": [], "feats": []}
    for i in rng.permutation(np.asarray(clips)):
        record = data.texts[i]
        k = int(rng.integers(len(record["captions"])))
        T = len(data.motion(i))
        units = min(T, MAX_FRAMES) // UNIT
        length = UNIT * (units - int(units > 1 and rng.random() < 1 / 3))
        start = int(rng.integers(T - length + 1))
        draw["clip"].append(int(i))
        draw["caption"].append(record["captions"][k])
        draw["tokens"].append(record["tokens"][k] if "tokens" in record else None)
        draw["feats"].append(np.array(data.motion(i)[start:start + length], dtype=np.float32))
    draw["tokens"] = None if None in draw["tokens"] else draw["tokens"]
    return draw


def unit_crop(feats):
    """A generated clip's features to the evaluator's frames: floored to 4-frame units, at most 196 (a clip
    shorter than one unit repeats its last frame)."""
    feats = np.asarray(feats, np.float32)
    if len(feats) < UNIT:
        feats = np.concatenate([feats, np.repeat(feats[-1:], UNIT - len(feats), 0)])
    return feats[:min(len(feats), MAX_FRAMES) // UNIT * UNIT]


# ----------------------------------------------------------------------------------------------
# The protocol over a split: ground truth always, a model's generations when `generate` is given.
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
    return unit_crop(motion.features_from_joints(np.concatenate([joints, joints[-1:]])))


def _replication(ev, data, clips, checked, cfg, rep, generate):
    """One replication's draws, embedded, in the reference draw's (shuffled) order: "clip", "caption",
    "text"/"reference" (the reference draw), "gt_caption"/"gt_text"/"ground_truth" (a second draw of the
    real motions: the ground-truth row), "generated" (the model's motions for the reference captions),
    "passed" [n_checked] (its takes for every checked clip pass their check?), "mm" [texts, samples, F]."""
    rng = np.random.default_rng([cfg["seed"], rep])
    reference, gt = protocol_draw(data, clips, rng), protocol_draw(data, clips, rng)
    at = {c: k for k, c in enumerate(gt["clip"])}
    order = [at[c] for c in reference["clip"]]
    out = {"clip": np.array(reference["clip"]), "caption": reference["caption"],
           "text": ev.embed_texts(reference["caption"], reference["tokens"]),
           "reference": ev.embed_motions(reference["feats"]),
           "gt_caption": [gt["caption"][k] for k in order],
           "gt_text": ev.embed_texts(gt["caption"], gt["tokens"])[order],
           "ground_truth": ev.embed_motions(gt["feats"])[order]}
    for row in ("caption", "gt_caption"):  # near-duplicate captions: the gallery's extra positives
        out[f"{row}_dup"] = near_duplicates(out[row], cfg["duplicate_jaccard"])
    if not generate:
        return out
    n = len(clips)  # each take keyed by its draw position: equal captions get independent takes
    joints = generate(reference["caption"], 1, rep, range(n))
    out["generated"] = ev.embed_motions([generated_feats(j) for j in joints])
    out["length_ratio"] = np.array([len(j) / len(data.motion(i)) for j, i in zip(joints, reference["clip"],
                                                                                   strict=True)])
    if checked:  # every checked clip of the split, with one of its captions at random
        texts = [(c := data.texts[i]["captions"])[int(rng.integers(len(c)))] for i in checked]
        joints = generate(texts, 1, 20_000 + rep, range(len(texts)))
        out["passed"] = np.array([physical_check(j, *a) for j, a in zip(joints, checked.values(),
                                                                             strict=True)])
    if cfg["mm_samples"] > 0 and cfg["mm_texts"] > 0:
        texts = reference["caption"][:cfg["mm_texts"]]
        mm = generate(texts, cfg["mm_samples"], 10_000 + rep, range(len(texts)))
        mm_emb = ev.embed_motions([generated_feats(j) for j in mm])
        out["mm"] = mm_emb.reshape(len(texts), cfg["mm_samples"], -1)
    return out


def _per_clip(rep, row, cfg):
    """A row's per-clip figures in one replication, in its draw order: R@1-3 hits within the clip's batch of
    32 (NaN in the dropped last batch), the text-motion distance (MMDist; NaN there too), the gallery rank.
    Their means are the protocol's figures; a bootstrap resamples them (resampling clips into new batches
    would put one clip twice into a batch, leaving fewer distinct rivals and raising R-Precision)."""
    gt = row == "ground_truth"
    text, motions = rep["gt_text" if gt else "text"], rep[row]
    hits = batch_hits(text, motions, cfg["rprecision_batch"])
    dist = np.where(np.isnan(hits[:, 0]), np.nan, np.linalg.norm(text - motions, axis=1))
    return {"hits": hits, "dist": dist, "rank": gallery_ranks(text, motions, rep[f"{'gt_' * gt}caption_dup"])}


def _row_figures(rep, row, per_clip, slots, cfg, seed, mm_texts=None):
    """The protocol's figures of one row of one replication over `slots` (positions in its draw; a bootstrap
    draw repeats some): R@1-3, MMDist, the gallery's from the per-clip figures; FID against the reference
    draw, Diversity, over the slots' embeddings; MultiModality over `mm_texts` (indices; None: all)."""
    motions, hits = rep[row][slots], per_clip["hits"][slots]
    times = cfg["diversity_times"] if len(motions) > cfg["diversity_times"] else 100  # T2M-GPT's fallback
    fig = {"R@1": np.nanmean(hits[:, 0]), "R@2": np.nanmean(hits[:, 1]), "R@3": np.nanmean(hits[:, 2]),
           "FID": frechet_distance(rep["reference"][slots], motions),
           "MMDist": np.nanmean(per_clip["dist"][slots]),
           "Diversity": diversity(motions, min(times, len(motions) - 1), seed),
           **{f"gallery_{k}": v for k, v in gallery_figures(per_clip["rank"][slots]).items()}}
    if row == "generated":  # how long the model makes a motion, against its clip: median, share within 25%
        ratio = rep["length_ratio"][slots]
        fig |= {"length_ratio": np.median(ratio), "length_within_25": np.mean(np.abs(ratio - 1) <= 0.25)}
    if row == "generated" and "mm" in rep:
        fig["MultiModality"] = multimodality(rep["mm"] if mm_texts is None else rep["mm"][mm_texts],
                                             cfg["mm_times"], seed)
    return {k: float(v) for k, v in fig.items()}


COUNTED = ("jump", "squat", "hop")  # "jumps twice": their checks count flight phases or dips


def _action_figures(passed, kinds, at):
    """Action accuracy over the checked clips `at` (indices; repeats in a bootstrap draw): micro (clips
    passed / clips checked: the headline), macro (the mean of the kinds' pass rates), and each kind's."""
    rates = {k: float(passed[at][kinds[at] == k].mean()) for k in np.unique(kinds[at])}
    counted = np.isin(kinds[at], COUNTED)  # kinds whose text gives a count, which their check counts
    return {"action_accuracy": float(passed[at].mean()), "action_accuracy_macro": float(np.mean(list(
        rates.values())))} | {f"action_{k}": v for k, v in rates.items()} | (
        {"count_accuracy": float(passed[at][counted].mean())} if counted.any() else {})


def _summarise(reps, row, clips, passes, kinds, cfg):
    """A row's figures over `clips` (ids): each the mean over the replications, with a 95% interval from a
    bootstrap that draws a replication and resamples the clips, the checked clips and the MultiModality texts
    (cfg["bootstrap"] draws, fixed seed), so that it covers which clips were drawn as well as the sampling."""
    per_clip = [_per_clip(rep, row, cfg) for rep in reps]

    def one(r, at, checked_at, mm_at, seed):
        fig = _row_figures(reps[r], row, per_clip[r], at, cfg, seed, mm_at)
        return fig | (_action_figures(passes[r], kinds, checked_at) if len(kinds) else {})

    def slots(rep, ids):  # clip ids -> their positions in the replication's (shuffled) reference draw
        order = np.argsort(rep["clip"])
        return order[np.searchsorted(rep["clip"], ids, sorter=order)]

    n_mm = len(reps[0].get("mm", ()))
    every = [one(r, np.flatnonzero(np.isin(rep["clip"], clips)), np.arange(len(kinds)), None, r)
             for r, rep in enumerate(reps)]
    rng = np.random.default_rng([cfg["seed"], 2])
    draws = []
    for b in range(cfg["bootstrap"]):
        r = int(rng.integers(len(reps)))
        at = slots(reps[r], rng.choice(clips, len(clips)))
        checked_at = rng.integers(len(kinds), size=len(kinds))
        draws.append(one(r, at, checked_at, rng.integers(n_mm, size=n_mm) if n_mm else None, b))
    out = {"n_clips": len(clips), "n_checked": len(kinds), "replications": len(reps)}
    for key in every[0]:
        values = np.array([d[key] for d in draws if key in d])  # a kind absent from a draw has no rate there
        out[key] = float(np.mean([f[key] for f in every]))
        # percentiles, shifted by the bootstrap's bias: a resample repeats clips, which raises FID (it is
        # biased upwards, the more so the fewer distinct clips) by more than the interval is wide
        bias = values.mean() - out[key] if len(values) else 0.0
        share = key.startswith(("R@", "gallery_R@", "action_", "count_", "length_within"))  # shares: <= 1
        out[f"{key}_ci"] = ([float(np.clip(v - bias, 0, 1 if share else np.inf)) for v in
                             np.percentile(values, [2.5, 97.5])] if len(values) else [out[key]] * 2)
    return out


def evaluate_split(ev, data, clips, cfg, generate=None, checked_clips=None, subset=None, progress=True):
    """{"n_clips", "n_checked", "replications", "kinds": {kind: clips checked}, "ground_truth": figures,
    "generated": figures (with `generate`)}, each figure the mean over cfg["replications"] with its 95%
    interval (<name>_ci: [low, high]). The physical checks run on every clip of `checked_clips` (default:
    `clips`) that has one: on the real clips (the ceiling) and on one take per clip and replication.
    `subset` (clip indices) adds the rows "<row>_subset" over those of the evaluated clips only.
    generate(texts, num_samples, seed, keys) -> joints [T, J, 3] per text and sample, text-major."""
    pool = clips if checked_clips is None else checked_clips
    checked = {i: a for i, plan in zip(pool.tolist(), clip_plans(data, pool), strict=True)
               if (a := plan_action(plan))}
    kinds = np.array([a[0] for a in checked.values()])
    real = np.array([physical_check(motion.recover_from_ric(np.array(data.motion(i)), data.joints_num), *a)
                     for i, a in checked.items()])
    reps = [_replication(ev, data, clips, checked, cfg, rep, generate)
            for rep in progress_bar(range(cfg["replications"]), desc="replications", disable=not progress)]
    rows = {"ground_truth": [real] * len(reps)} | ({"generated": [r["passed"] if checked else None
                                                                    for r in reps]} if generate else {})
    out = {"n_clips": len(clips), "n_checked": len(checked), "replications": len(reps),
           "kinds": {str(k): int(n) for k, n in zip(*np.unique(kinds, return_counts=True), strict=True)}}
    groups = {"": np.asarray(clips)} | ({} if subset is None else {"_subset": np.intersect1d(clips, subset)})
    for suffix, ids in groups.items():
        if len(ids) < 3:
            print(f"{len(ids)} clips in the subset: too few for its rows")
            continue
        for row, passes in rows.items():
            out[row + suffix] = _summarise(reps, row, ids, passes, kinds, cfg)
    return out


@torch.no_grad()
def evaluate_tokenizer(ev, tok, data, clips):
    """Table 6's setting: whole clips (cropped to 4-frame units) through encode/decode. MPJPE in mm
    (root-aligned, motion.mpjpe) over all frames, codebook utilisation (per RVQ layer, averaged, as the
    tokenizer's own metrics.json), and the FID between the evaluator's embeddings of the real and the
    reconstructed clips (deterministic: no replications)."""
    import tokenizer
    pairs = []
    metrics = tokenizer.evaluate(tok, data, clips=clips, keep=pairs)
    real = [f for feats, _ in pairs for f in feats[:, :MAX_FRAMES].cpu().numpy()]
    recon = [f for _, out in pairs for f in out[:, :MAX_FRAMES].cpu().numpy()]
    return {"clips": len(clips), "mpjpe_mm": metrics["mpjpe_mm"],
            "FID": frechet_distance(ev.embed_motions(real), ev.embed_motions(recon)),
            "utilisation": metrics["utilisation"]}


# ----------------------------------------------------------------------------------------------
# command line
def _generator(cfg):
    """sample.generate with this run's settings, as generate(texts, num_samples, seed) -> joints."""
    if not (Path(cfg["lm_dir"]) / "config.json").is_file():
        raise FileNotFoundError(f"{cfg['lm_dir']}: no trained LM run (train one with `python train.py "
                                f"--run_name={Path(cfg['lm_dir']).name}`, or pass --lm_dir= for the "
                                f"ground-truth rows only)")
    import sample
    device = pick_device(cfg["device"])

    def generate(texts, num_samples, seed, keys=None):
        return sample.generate(list(texts), lm_dir=cfg["lm_dir"], num_samples=num_samples, seed=seed,
                               keys=keys, device=device, **sampling(cfg))
    return generate


def sampling(cfg):
    """The --sample_* settings as sample.generate takes them (None: sample.DEFAULTS)."""
    import sample
    return {k: None if sample.unset(cfg[f"sample_{k}"]) else cfg[f"sample_{k}"] for k in sample.DEFAULTS}


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
    if cfg["t2m_checkpoint"]:  # Table 3's figures: Guo et al.'s evaluator on their test set's composition
        if not (data.meta.get("source") or {}).get("t2m_test"):
            raise ValueError(f"{data.root}: its test split is not the one Guo et al.'s evaluation reads "
                             "(files of 200+ frames dropped, one entry per sub-clip caption line); rebuild "
                             "it with `python data.py --source=humanml3d --src=DIR --t2m_test`")
        from support import t2m
        ev = t2m.load(cfg["t2m_checkpoint"], cfg["glove_dir"], cfg["t2m_meta"], device)
        evaluator = "t2m"
    else:
        folder = Path(cfg["evaluator_dir"] or Path("out/evaluator") / data.meta["name"])
        ev, evaluator = load_evaluator(folder, device), str(folder)
        if ev.cfg["feat_dim"] != data.feat_dim:
            raise ValueError(f"{folder}: trained on {ev.cfg['feat_dim']}-wide features, {data.root} has "
                             f"{data.feat_dim}; train an evaluator on this dataset")
    splits = [s for s in cfg["splits"].split(",") if (data.root / f"{s}.txt").is_file()]
    clips = {s: draw_clips(data, s, cfg["eval_clips"], cfg["seed"]) for s in splits}
    results = {"dataset": str(data.root), "evaluator": evaluator, "settings": cfg}
    if cfg["tokenizer"]:
        import tokenizer
        run = Path(cfg["tokenizer"])
        run = run if run.is_dir() else Path("out/tokenizer") / run
        tok = tokenizer.load(run, device)
        what = f"tokenizer_{run.name}"
        for s in splits:
            results[s] = evaluate_tokenizer(ev, tok, data, clips[s])
        print(f"| {run.name} | split | clips | MPJPE (mm) | FID | utilisation |\n|---|---|---|---|---|---|")
        for s in splits:
            r = results[s]
            print(f"| | {s} | {r['clips']} | {r['mpjpe_mm']:.1f} | {r['FID']:.3f} | {r['utilisation']:.3f} |")
    else:
        generate = _generator(cfg) if cfg["lm_dir"] else None
        what = Path(cfg["lm_dir"]).name if generate else "ground_truth"
        for s in splits:
            split, plans = data.split(s), clip_plans(data, data.split(s))
            single = None if s != "ood" or None in plans else split[[len(p["segments"]) == 1 for p in plans]]
            results[s] = evaluate_split(ev, data, clips[s], cfg, generate, split, single)
            with_mm = generate and cfg["mm_texts"] > 0
            mm = f", MultiModality {cfg['mm_texts']} texts x {cfg['mm_samples']}" if with_mm else ""
            subset = "; *_subset: the single-segment clips among them" if single is not None else ""
            print(f"\n{data.root} {s}: {len(clips[s])} clips{subset}; action checks on every checkable clip "
                  f"of the split{mm}\n")
            print(markdown_table(results[s]))
        if cfg["edits"] and generate:  # editing by body part and by time (support/editing.py), not on OOD
            results["edit"] = {s: evaluate_edits(data, data.split(s), cfg["lm_dir"], sampling(cfg),
                                                 cfg["seed"], device) for s in splits if s != "ood"}
            print(edit_table(results["edit"]))
    out = Path(cfg["out"] or Path("out/eval") / data.meta["name"] / f"{what}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli(main, "eval.py")
