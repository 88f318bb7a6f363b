"""The language model's training data (train.py): the instruction/motion pairs of a split, built from its
captions and the codes `python tokenizer.py --encode` wrote (support/codes.py), and the global batches."""

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

    def __len__(self):
        return len(self.clips)

    def fits(self, prompt, steps):
        """Do an instruction of `prompt` tokens and a motion of `steps` steps fit (model.motion_room)?"""
        return self.lm.motion_room(prompt) >= steps

    def sample(self, i, rng, parts_prob, uncond_prob=0.0):
        """A training instance of pair i: a random caption and template, part texts with parts_prob, no
        instruction at all with uncond_prob."""
        parts = self.parts[i] if self.parts[i] and rng.random() < parts_prob else None
        caption, codes = self.captions[i][rng.integers(len(self.captions[i]))], self.codes.clip(self.clips[i])
        if rng.random() < uncond_prob:
            caption, parts = None, None
        return self.lm.sample_ids(caption, codes, parts, int(rng.integers(len(lm_model.TEMPLATES))))

    def fixed(self, i, text_of=None):
        """Pair i's evaluation instance: first caption, template 0, no parts; text_of=j: pair j's text."""
        return self.lm.sample_ids(self.captions[i if text_of is None else text_of][0],
                                  self.codes.clip(self.clips[i]))


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


def global_batch(pairs, step, cfg):
    """Step's global batch as (ids, kinds) instances sorted by length, and their clip ids: every rank builds
    all of it (cheap) so that each knows the global count of counted tokens, then takes its own slice."""
    batches = epoch_batches(pairs.lengths.astype(np.int64).tobytes(), cfg["batch_size"], cfg["seed"],
                            step // (len(pairs) // cfg["batch_size"]))
    picked = batches[step % len(batches)]
    samples = [pairs.sample(i, np.random.default_rng([cfg["seed"], step, k]), cfg["parts_prob"],
                            cfg["uncond_prob"]) for k, i in enumerate(picked)]
    order = sorted(range(len(samples)), key=lambda k: len(samples[k][0]))
    return [samples[k] for k in order], [pairs.data.ids[pairs.clips[picked[k]]] for k in order]
