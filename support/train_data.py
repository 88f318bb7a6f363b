"""The language model's training data (train.py): the instruction/motion pairs of a split, built from its
captions and the codes `python tokenizer.py --encode` wrote (support/codes.py), and the global batches."""

from collections import Counter
from functools import lru_cache

import numpy as np

import model as lm_model


class Pairs:
    """The clips of one split (or the given `clips`) that can be trained on: their usable captions, part texts
    and codes. Clips whose longest instance would not fit in the model's context (fits()), or with no
    non-empty caption, are skipped and counted (.skipped)."""

    def __init__(self, lm, data, codes, split, clips=None):
        self.lm, self.data, self.codes = lm, data, codes
        self.clips, self.captions, self.parts, self.lengths = [], [], [], []
        self.skipped = {"too_long": 0, "empty_caption": 0}
        self.prompt_lengths = {}  # size(): (pair, caption, parts, template) -> the instruction's tokens
        for clip in data.split(split) if clips is None else clips:
            text = data.texts[clip]
            captions = [c for c in text["captions"] if c.strip()]
            if not captions:
                self.skipped["empty_caption"] += 1
                continue
            steps = codes.offsets[clip + 1] - codes.offsets[clip]  # prompt (to <mot>), codes, </mot> <eos>
            prompt = max(len(lm.prompt_ids(c, text.get("parts") or None, t)) for c in captions
                         for t in range(len(lm_model.TEMPLATES)))
            if not self.fits(prompt, steps):
                self.skipped["too_long"] += 1
                continue
            self.clips.append(int(clip))
            self.captions.append(captions)
            self.parts.append(text.get("parts") or None)
            self.lengths.append(prompt + steps * codes.P + 2)
        self.lengths = np.array(self.lengths)
        counts = Counter(c for captions in self.captions for c in captions)  # how often each caption occurs
        self.caption_counts = [np.array([counts[c] for c in cs], dtype=float) for cs in self.captions]

    def __len__(self):
        return len(self.clips)

    def fits(self, prompt, steps):
        """Do an instruction of `prompt` tokens and a motion of `steps` steps fit (model.motion_room)?"""
        return self.lm.motion_room(prompt) >= steps

    def draw(self, i, rng, parts_prob, uncond_prob=0.0, rarity=0.0):
        """A training instance of pair i, as its random choices (caption, parts or not, template): a random
        caption and template, part texts with parts_prob, no instruction at all (caption None) with
        uncond_prob. rarity > 0 draws a caption with odds count^-rarity, count its occurrences among the
        split's captions: a phrasing many clips share (a dataset's plainest) is drawn less than its own."""
        parts = bool(self.parts[i]) and rng.random() < parts_prob
        if rarity:
            odds = self.caption_counts[i] ** -rarity
            caption = int(rng.choice(len(odds), p=odds / odds.sum()))
        else:
            caption = int(rng.integers(len(self.captions[i])))
        if rng.random() < uncond_prob:
            caption, parts = None, False
        return caption, parts, int(rng.integers(len(lm_model.TEMPLATES)))

    def build(self, i, choice):
        """The drawn instance `choice` of pair i -> (ids, kinds) (MotionLM.sample_ids)."""
        caption, parts, template = choice
        return self.lm.sample_ids(None if caption is None else self.captions[i][caption],
                                  self.codes.clip(self.clips[i]), self.parts[i] if parts else None, template)

    def size(self, i, choice):
        """The drawn instance's length and its tokens each loss counts (MotionLM.sample_size), without
        building it: an instruction is tokenised once per (caption, parts, template) and its length kept."""
        caption, parts, template = choice
        key = (i, caption, parts, template) if caption is not None else None
        if key not in self.prompt_lengths:
            if len(self.prompt_lengths) >= 1 << 20:  # bounded: a million instructions, some 100 MB
                self.prompt_lengths.clear()
            text = None if caption is None else self.captions[i][caption]
            self.prompt_lengths[key] = len(self.lm.prompt_ids(text, self.parts[i] if parts else None,
                                                              template))
        steps = self.codes.offsets[self.clips[i] + 1] - self.codes.offsets[self.clips[i]]
        return self.lm.sample_size(self.prompt_lengths[key], int(steps))

    def sample(self, i, rng, parts_prob, uncond_prob=0.0, rarity=0.0):
        """A random training instance of pair i (draw, then build)."""
        return self.build(i, self.draw(i, rng, parts_prob, uncond_prob, rarity))

    def fixed(self, i, text_of=None):
        """Pair i's evaluation instance: first caption, template 0, no parts; text_of=j: pair j's text."""
        return self.lm.sample_ids(self.captions[i if text_of is None else text_of][0],
                                  self.codes.clip(self.clips[i]))


@lru_cache(maxsize=2)
def epoch_draws(pairs, seed, epoch, parts_prob, uncond_prob, rarity):
    """Every pair's training instance of this epoch (Pairs.draw, its own rng (seed, epoch, pair)), its
    (length, counted tokens) (Pairs.size) and the lengths as epoch_batches takes them, made once an epoch:
    drawn before batching, so that batches group instances by their drawn length. Grouped by the longest
    caption instead, a batch that drew the part texts for one of its pairs was padded to them in all: 15% of
    the demo's tokens were padding, now 1%."""
    choices = [pairs.draw(i, np.random.default_rng([seed, epoch, i]), parts_prob, uncond_prob, rarity)
               for i in range(len(pairs))]
    sizes = [pairs.size(i, choice) for i, choice in enumerate(choices)]
    return choices, sizes, np.array([n for n, _ in sizes], dtype=np.int64).tobytes()  # (epoch_batches' key)


@lru_cache(maxsize=2)
def epoch_batches(lengths, batch_size, seed, epoch):
    """The global batches of one epoch, [n_batches, batch_size] pair indices: a shuffle, then runs of 64
    batches sorted by length (so a batch pads little), and the batches shuffled again. A function of (seed,
    epoch) only: the same batches after --resume, on any number of ranks."""
    lengths = np.frombuffer(lengths, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))[: len(lengths) // batch_size * batch_size]
    run = batch_size * 64
    runs = np.split(order, range(run, len(order), run))
    order = np.concatenate([r[np.argsort(lengths[r], kind="stable")] for r in runs])
    return order.reshape(-1, batch_size)[rng.permutation(len(order) // batch_size)]


def global_batch(pairs, step, cfg, rank=0, world=1):
    """Step's global batch, this rank's share of it: every rank draws every instance of the epoch (cheap: no
    tokens are built) and sorts the batch by length, then builds only its own, every world-th from its rank
    on (so each rank's micro-batches pad alike) -> (its (ids, kinds) instances sorted by length, their clip
    ids, the global batch's count of tokens that cfg["loss"] counts, and of all its tokens)."""
    epoch = step // (len(pairs) // cfg["batch_size"])
    choices, sizes, lengths = epoch_draws(pairs, cfg["seed"], epoch, cfg["parts_prob"], cfg["uncond_prob"],
                                          cfg["caption_rarity"])
    batches = epoch_batches(lengths, cfg["batch_size"], cfg["seed"], epoch)
    picked = batches[step % len(batches)]
    order = sorted(picked, key=lambda i: sizes[i][0])
    mine = order[rank::world]
    return ([pairs.build(i, choices[i]) for i in mine], [pairs.data.ids[pairs.clips[i]] for i in mine],
            sum(sizes[i][1][cfg["loss"]] for i in picked), sum(sizes[i][0] for i in picked))
