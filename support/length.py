"""The length estimator (not in the paper; the idea of T2M's and MoMask's): a small network reads the caption
and gives a distribution over the motion's length in steps, to which sampling holds the language model, so
that the text decides how long the motion lasts (why: docs/sampling.md, "Lengths"). The caption's tokens
(the LM run's text tokenizer) as a bag of learned embeddings, *summed* (a caption of two actions is longer
than one of either: a mean would lose that; word order hardly matters to a length), an MLP, a softmax over
1..MAX_STEPS steps, trained by cross-entropy on every train caption (train.py fits it after the LM)."""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from common import load_weights, read_run_file, save_weights, write_json
from motion import FRAMES_PER_CODE, MAX_FRAMES

MAX_STEPS = MAX_FRAMES // FRAMES_PER_CODE  # the longest motion of any dataset, in steps


class LengthEstimator(torch.nn.Module):
    def __init__(self, n_vocab, max_steps=MAX_STEPS, width=64, hidden=256):
        super().__init__()
        self.sizes = dict(n_vocab=n_vocab, max_steps=max_steps, width=width, hidden=hidden)
        self.bag = torch.nn.EmbeddingBag(n_vocab + 1, width, mode="sum", padding_idx=n_vocab)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.GELU(),
                                       torch.nn.Linear(hidden, max_steps))

    def forward(self, ids):
        """Token ids [N, L] (padded with n_vocab: padded(), which the bag leaves out) -> logits [N, max_steps]
        over lengths 1..max_steps steps."""
        return self.mlp(self.bag(ids.to(self.bag.weight.device)))

    def padded(self, token_lists):
        """Token id lists -> [N, L] padded with the bag's padding row."""
        return pad_sequence([torch.tensor(ids, dtype=torch.long) for ids in token_lists], True,
                            self.sizes["n_vocab"])

    @torch.no_grad()
    def draw(self, token_lists, generators=None):
        """A length in steps per caption (token id lists): a draw with its generator (one per caption, as
        model.generate takes them: a take's length does not depend on its batch), or with none the median."""
        probs = self(self.padded(token_lists)).float().softmax(-1).cpu()
        if generators is None:
            return [int(torch.searchsorted(p.cumsum(0), torch.tensor([0.5]))[0]) + 1 for p in probs]
        # the generators live on the LM's device; a draw from a CPU copy of one would not advance it
        return [int(torch.multinomial(p.to(g.device), 1, generator=g)[0]) + 1
                for p, g in zip(probs, generators, strict=True)]


def caption_steps(pairs):
    """Every (caption, steps) of a split's pairs (support/train_data.Pairs), steps capped at MAX_STEPS."""
    steps = np.minimum(np.diff(pairs.codes.offsets), MAX_STEPS)
    clips = zip(pairs.clips, pairs.captions, strict=True)
    return [(c, int(steps[clip])) for clip, captions in clips for c in captions]


def fit(text, train_pairs, val_pairs, iters=1000, batch_size=256, lr=3e-3, seed=0):
    """Train an estimator on train_pairs' captions (tokenised by `text`, the LM's TextTokenizer) -> (the
    estimator, its val figures: cross-entropy, and the share of val captions whose median length lies
    within ±25% of the real one)."""
    train, val = caption_steps(train_pairs), caption_steps(val_pairs)
    torch.manual_seed(seed)
    est = LengthEstimator(text.n_vocab)
    ids, steps = est.padded(text.encode_batch([c for c, _ in train])), torch.tensor([s for _, s in train]) - 1
    opt = torch.optim.AdamW(est.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    for it in range(iters):
        pick = rng.integers(len(ids), size=batch_size)
        opt.param_groups[0]["lr"] = lr * (1 - it / iters)  # linear decay to 0: the last steps settle it
        loss = F.cross_entropy(est(ids[pick]), steps[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    est.eval()
    val_ids, val_steps = text.encode_batch([c for c, _ in val]), np.array([s for _, s in val])
    with torch.no_grad():
        val_ce = F.cross_entropy(est(est.padded(val_ids)), torch.tensor(val_steps) - 1).item()
    median = np.array(est.draw(val_ids))
    return est, {"val_cross_entropy": val_ce, "val_median_within_25": float(np.mean(
        np.abs(median / val_steps - 1) <= 0.25)), "val_captions": len(val), "train_captions": len(train)}


def save(run_dir, est, figures):
    save_weights(run_dir / "length_estimator.safetensors", est.state_dict())
    write_json(run_dir / "length_estimator.json", {**est.sizes, **figures})


def load(run_dir, device="cpu"):
    """The run's estimator, or None where the run has none (trained before it existed, or a text-only run)."""
    run_dir = Path(run_dir)
    meta, remake = run_dir / "length_estimator.json", f"rerun python train.py --run_name={run_dir.name}"
    if not meta.is_file():
        return None
    sizes = read_run_file(meta, remake)
    est = LengthEstimator(**{k: sizes[k] for k in ("n_vocab", "max_steps", "width", "hidden")})
    est.load_state_dict(read_run_file(run_dir / "length_estimator.safetensors", remake,
                                      lambda p: load_weights(p, device)))
    return est.to(device).eval()
