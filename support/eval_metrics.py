"""The text-to-motion protocol's numerics (Guo et al. 2022, as T2M-GPT's utils/eval_trans.py computes them, in
float64) on numpy embeddings, the protocol's draw of a split, and the bootstrap's interval. eval.py measures
with them; the evaluator (support/eval_evaluator.py) trains on the same draws."""

import numpy as np

from motion import MAX_FRAMES

UNIT = 4  # frames per evaluator motion token (two stride-2 convolutions), and so the protocol's crop unit


# ----------------------------------------------------------------------------------------------
# Metrics on embeddings [N, F]
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


def retrieval_hits(text_emb, motion_emb):
    """One batch, row i of each a matching pair -> [N, 3] 0/1: is text i's own motion among its k nearest
    motions (euclidean), k = 1, 2, 3? Ties go to the lower index (argsort, as the protocol)."""
    order = np.argsort(euclidean_distances(text_emb, motion_emb), axis=1, kind="stable")
    hit = order[:, :3] == np.arange(len(order))[:, None]
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
    return multimodality(np.asarray(emb)[None], times, seed)


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


def interval(draws, estimate, low=0.0, high=np.inf):
    """The bootstrap's 95% interval: the percentiles of the draws, shifted by the bootstrap's bias (a resample
    repeats clips, which raises FID, the more so the fewer distinct clips, by more than the interval is
    wide), clipped to [low, high] (a share: [0, 1]; a difference of shares: [-1, 1])."""
    bias = np.mean(draws) - estimate
    return [float(np.clip(v - bias, low, high)) for v in np.percentile(draws, [2.5, 97.5])]


def length_figures(ratio):  # generated over real length, per clip -> its median, the share within 25%
    return {"length_ratio": float(np.median(ratio)),
            "length_within_25": float(np.mean(np.abs(ratio - 1) <= 0.25))}


def wilson(share, n, z=1.959963984540054):
    """The Wilson score interval (95%) of a share of n trials, in closed form. Unlike a bootstrap's
    percentiles it does not collapse to [1, 1] when every clip passes: 10 of 10 give [0.722, 1]."""
    if n <= 0:
        return [0.0, 1.0]
    p, n, zz = float(share), float(n), z * z
    centre, half = p + zz / (2 * n), z * np.sqrt(p * (1 - p) / n + zz / (4 * n * n))
    low, high = (centre - half) / (1 + zz / n), (centre + half) / (1 + zz / n)
    return [float(min(p, max(0.0, low))), float(max(p, min(1.0, high)))]  # holds p (0 of n gave 5e-17)


# ----------------------------------------------------------------------------------------------
# The protocol's draws of a split, shared by the evaluator's training (random pairs) and evaluation.
def protocol_draw(data, clips, rng, allowed=None):
    """Each clip (in a random order) with one of its captions at random (and that caption's POS tokens when
    the dataset keeps them) and a crop: its length floored to 4-frame units, one unit less one time in three
    (dataset_TM_eval.py), at most 196 frames, at a random offset. `allowed` ({clip: caption indices}) limits
    a clip's captions to those (eval.py: its seen or its new phrasings). -> dict of lists."""
    draw = {"clip": [], "caption": [], "tokens": [], "feats": []}
    for i in rng.permutation(np.asarray(clips)):
        record = data.texts[i]
        k = pick(len(record["captions"]), (allowed or {}).get(int(i)), rng)
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


def pick(n, allowed, rng):  # a caption index at random, among `allowed` (indices) if given; one draw of rng
    return int(rng.integers(n)) if allowed is None else int(allowed[int(rng.integers(len(allowed)))])


def unit_crop(feats):
    """A generated clip's features to the evaluator's frames: floored to 4-frame units, at most 196 (a clip
    shorter than one unit repeats its last frame)."""
    feats = np.asarray(feats, np.float32)
    if len(feats) < UNIT:
        feats = np.concatenate([feats, np.repeat(feats[-1:], UNIT - len(feats), 0)])
    return feats[:min(len(feats), MAX_FRAMES) // UNIT * UNIT]
