"""What the embedded dataset's text says and leaves open (issue 28): how many captions the grammar of
support/synth_captions.py can say per kind, how new the held-out phrasings of the test clips are to train, and
how much the lengths of clips sharing a caption vary. Text and plans only (no motion): about a minute.

    python experiments/language.py                  # synth's 20,000 clips -> docs/results/language.json
    python experiments/language.py --size=3000 --out=/tmp/language.json

A caption is *seen* when some train clip has it, *new* otherwise (eval.py's definition). Word trigrams are
over lowercase words, punctuation dropped.
"""

import itertools
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python experiments/language.py`
import synth  # noqa: E402
from common import cli, parse_args, write_json  # noqa: E402
from support import synth_captions as captions  # noqa: E402

CONFIG = dict(
    size=20000, seed=0,  # synth's clips (the demo's dataset: data.py's defaults)
    min_shared=5,  # length spread over the train captions at least this many clips share
    out="docs/results/language.json",  # the figures (JSON)
)


def words(text):
    return re.findall(r"[a-z0-9'-]+", text.lower())


def trigrams(text):
    w = words(text)
    return list(zip(w, w[1:], w[2:], strict=False))


class Script:
    """A stand-in rng that replays a list of choices (0 past its end) and records how many options each
    choice had: every() walks all the lists, so every caption the grammar can say comes out once or more."""

    def __init__(self, prefix):
        self.prefix, self.sizes = prefix, []

    def integers(self, n):
        self.sizes.append(n)
        return self.prefix[len(self.sizes) - 1] if len(self.sizes) <= len(self.prefix) else 0

    def permutation(self, n):  # which frame is tried first: one choice of n
        return np.roll(np.arange(n), -self.integers(n))


def every(say):
    """{say(rng)} over every sequence of choices say can make (None dropped)."""
    out, todo = set(), [[]]
    while todo:
        prefix = todo.pop()
        rng = Script(prefix)
        out.add(say(rng))
        todo += [prefix + [0] * (j - len(prefix)) + [v]
                 for j in range(len(prefix), len(rng.sizes)) for v in range(1, rng.sizes[j])]
    return out - {None}


def grammar_size():
    """kind -> distinct one-action captions (over all its parameters) in train's phrasings and in held-out
    ones."""
    sizes = {}
    for kind, params in synth.PARAMS.items():
        said = {"train": set(), "new": set()}
        for values in itertools.product(*params.values()):
            unit = [((kind, dict(zip(params, values, strict=True))), None)]
            for mode in said:
                said[mode] |= every(lambda rng, unit=unit, mode=mode: captions.caption(unit, rng, mode))
        sizes[kind] = {mode: len(s) for mode, s in said.items()}
    return sizes


def measure(size, seed, min_shared):
    """The held-out phrasings of each evaluated split against train, and the length spread per caption."""
    clips = []
    for index in range(size):
        plan = synth.plan_clip(index, seed)
        clips.append((plan, captions.describe(plan, np.random.default_rng([seed, index, 2]))[0]))
    train = [c for plan, caps in clips if plan["split"] == "train" for c in caps]
    seen, vocab = set(train), {w for c in train for w in words(c)}
    known = {t for c in train for t in trigrams(c)}
    out = {"train_captions": len(train), "distinct_train_captions": len(seen)}
    for split in ("val", "test", "ood"):
        caps = [c for plan, c in clips if plan["split"] == split]
        new = [c[1] for c in caps if c[1] not in seen and set(words(c[1])) <= vocab]
        tri = [t not in known for c in new for t in trigrams(c)]
        out[split] = {"clips": len(caps), "with_new_caption_of_train_words": len(new) / len(caps),
                      "new_trigram_share": float(np.mean(tri)) if tri else None,
                      "with_seen_caption": float(np.mean([any(x in seen for x in c) for c in caps]))}
    lengths = {}
    for plan, caps in clips:
        if plan["split"] == "train":
            for c in set(caps):
                lengths.setdefault(c, ([], len(plan["segments"]) if plan["subset"] != "static" else 0))
                lengths[c][0].append(plan["frames"])
    cv = [(np.std(v) / np.mean(v), n) for v, n in lengths.values() if len(v) >= min_shared]
    groups = {"all": [x for x, _ in cv], "static": [x for x, n in cv if n == 0],
              "one_action": [x for x, n in cv if n == 1], "several": [x for x, n in cv if n > 1]}
    out["length_cv"] = {name: {"captions": len(x), "median": float(np.median(x))}
                        for name, x in groups.items()}
    return out


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "experiments/language.py")}
    res = {"settings": cfg, **measure(cfg["size"], cfg["seed"], cfg["min_shared"]), "grammar": grammar_size()}
    for split in ("val", "test", "ood"):
        r = res[split]
        print(f"{split}: {r['clips']} clips, {r['with_new_caption_of_train_words']:.3f} with a new caption "
              f"of train words ({r['new_trigram_share'] or 0:.3f} of its trigrams new), "
              f"{r['with_seen_caption']:.3f} with a seen one")
    print("length CV over train captions shared by >= "
          f"{cfg['min_shared']} clips: " + ", ".join(f"{k} {v['median']:.3f} ({v['captions']} captions)"
                                                     for k, v in res["length_cv"].items()))
    print("| kind | train phrasings | held-out phrasings |\n|---|---|---|")
    for kind, n in res["grammar"].items():
        print(f"| {kind} | {n['train']} | {n['new']} |")
    write_json(res["settings"]["out"], res)
    print(f"wrote {cfg['out']}")


if __name__ == "__main__":
    cli(main, "experiments/language.py")
