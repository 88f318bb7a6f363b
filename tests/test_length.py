"""support/length.py, the length estimator sampling holds the LM to: it learns a length rule that the
captions state, its median and draws follow its own softmax (float64), it survives save/load, a damaged file
is one clear error, train.py fits it, and sample.py's motions have the lengths it gives."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import sample
from support import length
from support.text_tokenizer import train_bpe

WORDS = {1: "once", 2: "twice", 3: "three times", 4: "four times"}
FRAMES = {"jumps": (20, 20), "squats": (12, 36), "hops": (22, 14)}  # synth.py's counted actions: a + b·count


def pairs_of(captions_steps):
    """A support/train_data.Pairs stand-in: one clip per (caption, steps), codes.offsets from the steps."""
    steps = [s for _, s in captions_steps]
    return SimpleNamespace(clips=list(range(len(steps))), captions=[[c] for c, _ in captions_steps],
                           codes=SimpleNamespace(offsets=np.r_[0, np.cumsum(steps)]))


def rule(kind, count):  # the length the caption states, in 4-frame steps
    a, b = FRAMES[kind]
    return (a + b * count) // 4


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    train = []
    for _ in range(600):
        kind, count = str(rng.choice(list(FRAMES))), int(rng.integers(1, 5))
        subject = str(rng.choice(["a person", "someone", "a man", "the woman"]))
        train.append((f"{subject} {kind} {WORDS[count]}.", rule(kind, count)))
    text = train_bpe([c for c, _ in train], 300)
    val = [(f"somebody {kind} {WORDS[n]}.", rule(kind, n)) for kind in FRAMES for n in WORDS]
    est, figures = length.fit(text, pairs_of(train), pairs_of(val), iters=300, batch_size=64)
    return est, figures, text, val


def test_it_learns_the_length_the_caption_states(fitted):
    """Lengths that are a function of the caption (kind and count, as synth's counted actions): the median
    is that length for every kind and count, with a subject no train caption had."""
    est, figures, text, val = fitted
    medians = est.draw(text.encode_batch([c for c, _ in val]))
    assert medians == [s for _, s in val]
    assert figures["val_median_within_25"] == 1.0 and figures["val_captions"] == len(val)


def test_median_and_draws_follow_its_softmax(fitted):
    """The median: the first length whose cumulative probability reaches 1/2 (float64 numpy); draws with one
    generator per caption: a function of that generator alone, distributed as the softmax."""
    est, _, text, _ = fitted
    ids = text.encode_batch(["a person jumps twice and squats.", "hops."])
    with torch.no_grad():
        probs = torch.softmax(est(est.padded(ids)).double(), -1).numpy()
    assert est.draw(ids) == [int(np.searchsorted(np.cumsum(p), 0.5)) + 1 for p in probs]
    draws = np.array([est.draw(ids[:1], [torch.Generator().manual_seed(s)])[0] for s in range(3000)])
    freq = np.bincount(draws - 1, minlength=probs.shape[1]) / len(draws)
    assert np.abs(freq - probs[0]).max() < 4 * np.sqrt(probs[0].max() / len(draws))
    g = [torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)]
    first = est.draw(ids, g)
    again = est.draw(ids[::-1], [torch.Generator().manual_seed(8), torch.Generator().manual_seed(7)])
    assert first == again[::-1]


def test_save_load_and_a_damaged_file(fitted, tmp_path):
    est, figures, text, val = fitted
    assert length.load(tmp_path) is None  # a run from before the estimator: none, sample.py says so
    length.save(tmp_path, est, figures)
    ids = est.padded(text.encode_batch([c for c, _ in val]))
    with torch.no_grad():
        assert torch.equal(length.load(tmp_path)(ids), est(ids))
    path = tmp_path / "length_estimator.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"length_estimator.safetensors: damaged or incomplete.*train.py"):
        length.load(tmp_path)


def test_train_writes_it_and_sample_holds_the_lm_to_it(codes_dir, tmp_path):
    """train.py fits the estimator into the run; sample.generate makes each motion exactly the estimator's
    median (lengths=median), a draw from it with the take's generator (draw: a take still independent of its
    batch), or leaves the length to the LM (model); a run without one (--length_iters=0) is a clear error."""
    import train

    train.train(dict(train.CONFIG, data_dir=str(codes_dir / "ds"), tokenizer_run="t", out_dir=str(tmp_path),
                     run_name="r", batch_size=8, max_iters=3, warmup_iters=1, eval_interval=3, eval_iters=1,
                     length_iters=20, device="cpu"), progress=False)
    run = tmp_path / "r"
    assert (run / "length_estimator.json").is_file() and (run / "length_estimator.safetensors").is_file()
    lm, _, est = sample.cached_run(run, "cpu")
    texts = ["a person jumps twice.", "someone walks forward slowly.", "a man squats."]
    medians = est.draw(lm.text.encode_batch(texts))
    joints = sample.generate(texts, run, num_samples=2, lengths="median")
    assert [len(j) for j in joints] == [4 * m for m in medians for _ in range(2)]
    drawn = sample.generate(texts, run, num_samples=2, lengths="draw", temperature=1.0, seed=1)
    alone = sample.generate(texts[1:2], run, num_samples=2, lengths="draw", temperature=1.0, seed=1)
    for a, b in zip(alone, drawn[2:4], strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="lengths='longest': expected one of median, draw, model"):
        sample.generate(texts, run, lengths="longest")
    cfg = dict(train.CONFIG, data_dir=str(codes_dir / "ds"), tokenizer_run="t", out_dir=str(tmp_path),
               run_name="none", batch_size=8, max_iters=1, warmup_iters=1, eval_iters=1, device="cpu")
    with pytest.raises(ValueError, match="--length_iters=-1: expected 0"):
        train.train(dict(cfg, length_iters=-1), progress=False)
    train.train(dict(cfg, length_iters=0), progress=False)  # a run without an estimator
    run = tmp_path / "none"
    assert not list(run.glob("length_estimator*"))
    with pytest.raises(FileNotFoundError, match=r"no length estimator .*\(lengths=model\)"):
        sample.generate(texts, run)
    assert len(sample.generate(texts[:1], run, lengths="model")) == 1
