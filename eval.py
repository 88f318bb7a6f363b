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
MultiModality over mm_texts texts x mm_samples generations. Each figure is the mean ± 1.96·std/√replications.
Results: a markdown table per split, and JSON (out/eval/<dataset>/<what>.json) with each figure under its
name and its 95% interval under <name>_ci.
"""

import math
import re
from pathlib import Path

import numpy as np
import torch

import data as motion_data
import model as lm_model
import motion
from common import cli, parse_args, pick_device, progress_bar, write_json
from motion import MAX_FRAMES
from support.evaluator import UNIT, load_evaluator, train_evaluator
from support.physical import action_accuracy, clip_plans, physical_check, plan_action

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
    eval_clips=0,  # clips per split (0: all): fewer for a quick CPU run; the table says how many
    splits="test,ood",  # which splits (val: for choosing sampling settings, never test)
    lm_dir="out/lm/default",  # the LM run whose generations (sample.generate) are evaluated; "": none
    sample_temperature=-1.0, sample_top_k=-1, sample_top_p=-1.0, sample_guidance=-1.0,  # < 0: sample.py's
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


def r_precision(text_emb, motion_emb, top_k=3):
    """One batch, row i of each a matching pair: the share of texts whose own motion is among the k nearest
    motions (euclidean), for k = 1..top_k. Ties go to the lower index (argsort, as the protocol)."""
    order = np.argsort(euclidean_distances(text_emb, motion_emb), axis=1, kind="stable")
    hit = order[:, :top_k] == np.arange(len(order))[:, None]
    return np.cumsum(hit, axis=1).clip(max=1).mean(0)


def batched_r_precision(text_emb, motion_emb, batch=32):
    """R@1..3 averaged over the whole batches of `batch` consecutive pairs (the protocol drops the last,
    partial one) -> (R@1..3, the number of pairs they cover)."""
    n = len(text_emb) // batch * batch
    if n == 0:
        raise ValueError(f"{len(text_emb)} clips, fewer than one R-Precision batch of {batch}")
    return np.mean([r_precision(text_emb[s:s + batch], motion_emb[s:s + batch]) for s in range(0, n, batch)],
                   0), n


def matching_score(text_emb, motion_emb):
    """MMDist: the mean distance between matching text and motion embeddings."""
    return float(np.linalg.norm(np.asarray(text_emb, np.float64) - motion_emb, axis=1).mean())


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


def gallery_retrieval(text_emb, motion_emb, duplicates=None):
    """Text -> motion retrieval against the whole gallery (TMR's protocol; unlike 32-way R-Precision it does
    not saturate). Rank of text i = 1 + the motions closer than its nearest positive; positives are motion i
    and, with `duplicates` [N, N] (bool), the motions whose captions are near-duplicates of caption i (TMR's
    thresholded protocol, with our near-duplicate rule in place of its sentence-embedding threshold).
    -> {R@1, R@5, R@10 (shares), median_rank}."""
    dist = euclidean_distances(text_emb, motion_emb)
    positive = np.eye(len(dist), dtype=bool) | (False if duplicates is None else duplicates)
    nearest = np.where(positive, dist, np.inf).min(1)
    rank = 1 + ((dist < nearest[:, None]) & ~positive).sum(1)
    return {"R@1": float((rank <= 1).mean()), "R@5": float((rank <= 5).mean()),
            "R@10": float((rank <= 10).mean()), "median_rank": float(np.median(rank))}


def mean_ci(values):
    """(mean, 95% half-width 1.96·std/√n) over replications, std with n as Guo et al.'s statistics."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(1.96 * values.std() / math.sqrt(len(values)))


def near_duplicates(captions, jaccard=0.8):
    """[N, N] bool: captions equal after normalisation, or whose word sets overlap by Jaccard >= `jaccard`
    (TMR filters such negatives with a sentence encoder, which is not available offline)."""
    texts = [lm_model.normalise_caption(c) for c in captions]
    words = [set(re.findall(r"[a-z0-9']+", t)) for t in texts]
    vocab = {w: i for i, w in enumerate(sorted(set().union(*words)))}
    hot = np.zeros((len(words), len(vocab)), np.float32)
    for i, ws in enumerate(words):
        hot[i, [vocab[w] for w in ws]] = 1
    inter = hot @ hot.T
    union = hot.sum(1)[:, None] + hot.sum(1)[None] - inter
    same = np.unique(texts, return_inverse=True)[1].reshape(-1)
    return (same[:, None] == same[None]) | (inter >= jaccard * np.maximum(union, 1))


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
def _figures(ev, draw, motion_emb, reference_emb, cfg, seed):
    """One replication's figures for a draw (its captions) and the motion embeddings that answer it."""
    text_emb = ev.embed_texts(draw["caption"], draw["tokens"])
    r, n = batched_r_precision(text_emb, motion_emb, cfg["rprecision_batch"])
    times = cfg["diversity_times"] if len(motion_emb) > cfg["diversity_times"] else 100  # T2M-GPT's fallback
    duplicates = near_duplicates(draw["caption"], cfg["duplicate_jaccard"])
    gallery = gallery_retrieval(text_emb, motion_emb, duplicates)
    return {"R@1": r[0], "R@2": r[1], "R@3": r[2], "FID": frechet_distance(reference_emb, motion_emb),
            "MMDist": matching_score(text_emb[:n], motion_emb[:n]),
            "Diversity": diversity(motion_emb, min(times, len(motion_emb) - 1), seed),
            **{f"gallery_{k}": v for k, v in gallery.items()}}


def evaluate_split(ev, data, clips, cfg, generate=None, progress=True):
    """{"clips", "action_clips", "ground_truth": figures, "generated": figures (with `generate`)}: each
    figure's mean over cfg["replications"] and its 95% interval (<name>_ci). Where clips have plans, the
    physical checks give action_accuracy and each kind's pass rate (action_<kind>); on the real clips they
    are the ceiling. generate(texts, num_samples, seed) -> joints [T, J, 3] per text and sample,
    text-major."""
    checked = {i: a for i, plan in zip(clips.tolist(), clip_plans(data, clips), strict=True)
               if (a := plan_action(plan))}

    def actions(joints_of):  # clip index -> joints  =>  action_accuracy and each kind's pass rate
        if not checked:
            return {}
        acc, rates = action_accuracy([(a[0], physical_check(joints_of(i), *a)) for i, a in checked.items()])
        return {"action_accuracy": acc} | {f"action_{k}": v for k, v in rates.items()}

    real = actions(lambda i: motion.recover_from_ric(np.array(data.motion(i)), data.joints_num))
    rows = {"ground_truth": []} | ({"generated": []} if generate else {})
    for rep in progress_bar(range(cfg["replications"]), desc="replications", disable=not progress):
        rng = np.random.default_rng([cfg["seed"], rep])
        reference = protocol_draw(data, clips, rng)
        reference_emb = ev.embed_motions(reference["feats"])
        gt = protocol_draw(data, clips, rng)  # the ground-truth row: real motions drawn again, as a model's
        gt_emb = ev.embed_motions(gt["feats"])
        rows["ground_truth"].append(_figures(ev, gt, gt_emb, reference_emb, cfg, rep) | real)
        if generate:
            joints = generate(reference["caption"], 1, rep)
            feats = [unit_crop(motion.features_from_joints(j)) for j in joints]
            fig = _figures(ev, reference, ev.embed_motions(feats), reference_emb, cfg, rep)
            fig |= actions(dict(zip(reference["clip"], joints, strict=True)).__getitem__)
            if cfg["mm_samples"] > 0 and cfg["mm_texts"] > 0:
                texts = reference["caption"][:cfg["mm_texts"]]
                mm = generate(texts, cfg["mm_samples"], 10_000 + rep)
                mm_emb = ev.embed_motions([unit_crop(motion.features_from_joints(j)) for j in mm])
                fig["MultiModality"] = multimodality(mm_emb.reshape(len(texts), cfg["mm_samples"], -1),
                                                     cfg["mm_times"], rep)
            rows["generated"].append(fig)
    out = {"clips": len(clips), "action_clips": len(checked)}
    for name, reps in rows.items():
        out[name] = {}
        for key in reps[0]:
            out[name][key], out[name][f"{key}_ci"] = mean_ci([r[key] for r in reps])
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
COLUMNS = ["R@1", "R@2", "R@3", "FID", "MMDist", "Diversity", "MultiModality", "action_accuracy",
           "gallery_R@1", "gallery_R@10", "gallery_median_rank"]


def _cell(mean, ci):  # 3 decimals; a figure below 0.01 (a ground-truth FID) in scientific notation
    return f"{mean:.3f} ± {ci:.3f}" if mean == 0 or abs(mean) >= 0.01 else f"{mean:.1e} ± {ci:.1e}"


def markdown_table(result):
    """A split's result -> a markdown table of the COLUMNS per row, "mean ± ci" ("-" where a row has none),
    then each kind's action pass rate per row."""
    rows = {name: fig for name, fig in result.items() if isinstance(fig, dict)}
    lines = ["| | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, fig in rows.items():
        cells = [_cell(fig[c], fig[c + "_ci"]) if c in fig else "-" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    kinds = sorted({k for fig in rows.values() for k in fig if k.startswith("action_") and k[-3:] != "_ci"}
                   - {"action_accuracy"})
    if kinds:
        lines += ["", f"| action ({result['action_clips']} clips) | " + " | ".join(rows) + " |",
                  "|---" * (len(rows) + 1) + "|"]
        lines += [f"| {k[7:]} | " + " | ".join(f"{fig.get(k, np.nan):.2f}" for fig in rows.values()) + " |"
                  for k in kinds]
    return "\n".join(lines)


def _generator(cfg):
    """sample.generate with this run's settings, as generate(texts, num_samples, seed) -> joints."""
    if not (Path(cfg["lm_dir"]) / "config.json").is_file():
        raise FileNotFoundError(f"{cfg['lm_dir']}: no trained LM run (train one with `python train.py "
                                f"--run_name={Path(cfg['lm_dir']).name}`, or pass --lm_dir= for the "
                                f"ground-truth rows only)")
    import sample
    settings = {k: (None if cfg[f"sample_{k}"] < 0 else cfg[f"sample_{k}"])
                for k in ("temperature", "top_k", "top_p", "guidance")}
    return lambda texts, num_samples, seed: sample.generate(list(texts), lm_dir=cfg["lm_dir"],
                                                            num_samples=num_samples, seed=seed, **settings)


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
    clips = {s: data.split(s)[:cfg["eval_clips"] or None] for s in splits}
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
            results[s] = evaluate_split(ev, data, clips[s], cfg, generate)
            mm = f", MultiModality {cfg['mm_texts']} texts x {cfg['mm_samples']}" if generate else ""
            print(f"\n{data.root} {s}: {len(clips[s])} clips, {cfg['replications']} replications{mm}\n")
            print(markdown_table(results[s]))
    out = Path(cfg["out"] or Path("out/eval") / data.meta["name"] / f"{what}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli(main, "eval.py")
