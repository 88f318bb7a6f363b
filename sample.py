"""Text -> motion: the language model writes motion codes, the tokenizer decodes them to features, the
features become joints (recover_from_ric), and each take is saved as joints .npy [T, J, 3] (metres) and a
stick-figure GIF (paper §4.1: generation is next-token prediction after the instruction; docs/sampling.md).

    python sample.py --text="a person jumps twice, then waves the left hand"
    python sample.py --text="a man walks forward." --text="someone squats." --num_samples=3 --seconds=4
    python sample.py --file=prompts.txt --lm_dir=out/lm/default        # one text a line
    python sample.py --text="a person walks forward and waves" --bvh   # + a .bvh to open in Blender

Writes out/samples/<run>/<text>_<take>.npy and .gif (and .bvh: support/bvh.py). A take is a function of
(--seed, the text, the take number) only: the same command gives the same motions, and a text's motion
does not depend on what else is in the batch. For scripts and eval.py:

    import sample
    joints = sample.generate(["a man waves."], num_samples=2)   # list of float32 [T, J, 3], text-major
"""

import re
import zlib
from pathlib import Path

import numpy as np
import torch

import model as lm_model
from common import cli, parse_args, pick_device, read_run_file
from motion import FPS, MAX_FRAMES, recover_from_ric, render_gif
from support.bvh import to_bvh

# settings: plain values, overridden by --config=file.json, then by --key=value
CONFIG = dict(
    text=[],  # one --text=... per text
    file="",  # a text file of prompts, one a line (added to --text)
    lm_dir="out/lm/default",  # the train.py run to sample from
    out_dir="out/samples",  # takes go to out_dir/<run>/
    num_samples=1,  # takes per text
    seconds=0.0,  # the motion's length (0: the model ends it with </mot>)
    temperature=-1.0, top_k=-1, top_p=-1.0,  # < 0: DEFAULTS below
    guidance=-1.0,  # classifier-free guidance scale (1: off; < 0: DEFAULTS below)
    seed=0, batch_size=32, device="auto", gif=True,
    bvh=False,  # also write each take as <text>_<take>.bvh (a skeleton with joint rotations: Blender, Maya)
)
# Sampling defaults, chosen on the validation split (never test): `python eval.py --splits=val
# --eval_clips=192 --replications=2 --mm_texts=0 --sample_temperature=T --sample_top_p=P
# --sample_guidance=G`, on the default run (1,000 steps, held clip edges, the motion clock of model.py):
#   T, P, G          R@1    R@3    FID    action accuracy   gallery R@1
#   1.0, 1, 1.25     0.529  0.773  0.053  0.567             0.310       (plain sampling loses the counts)
#   0.7, .95, 1.25   0.586  0.831  0.056  0.682             0.333
#   0.4, .95, 1.25   0.549  0.797  0.067  0.696             0.320       <- the defaults
#   greedy, 1.25     0.539  0.818  0.067  0.750             0.349       (one motion per text)
#   0.4, .95, 1      0.568  0.820  0.076  0.643             0.318       (guidance off)
#   0.4, .95, 1.6    0.562  0.807  0.065  0.732             0.302
# Among these the differences are near the spread of two replications (about ±0.03 on R@3). The defaults were
# chosen on an earlier run (800 steps, zero-padded clip edges, no motion clock), where they were clearly
# better: T = 1 lost a third of R@3 (0.521 against 0.763 at T = 0.4), guidance 1.25 raised R@3 from 0.677 to
# 0.706 (1.7x the sampling time) and 2.5 collapsed the motions (R@3 0.427). (Real val motions: R@1 0.932,
# R@3 1.000, action accuracy 1.000.)
DEFAULTS = dict(temperature=0.4, top_k=0, top_p=0.95, guidance=1.25)
FRAMES_PER_CODE = 4  # the tokenizer's temporal downsampling (α = 4)


def load_run(lm_dir, device="cpu"):
    """(the language model, its tokenizer) of a train.py run, checked to belong together."""
    import tokenizer  # scripts -> tokenizer; imported here so that `import sample` stays light

    lm_dir = Path(lm_dir)
    config = lm_dir / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: missing, so {lm_dir} is not a trained language model run "
                                f"(train one with `python train.py --run_name={lm_dir.name}`)")
    cfg = read_run_file(config, f"rerun python train.py --run_name={lm_dir.name}")
    lm = lm_model.load(lm_dir, device)
    tokenizer.check_codes_match(cfg["tokenizer"], lm.K, lm.P, f"{lm_dir}: its motion vocabulary")
    return lm, tokenizer.load(cfg["tokenizer"], device)


_runs = {}


def generate(texts, lm_dir=None, num_samples=1, temperature=None, top_k=None, top_p=None, guidance=None,
             seed=0, seconds=None, device="cpu", batch_size=32, keys=None):
    """Joints float32 [T, J, 3] in metres for each text and take, text-major (len(texts) * num_samples).
    Settings left None take DEFAULTS. Runs are cached per (lm_dir, device). A take is seeded by (seed, its
    text, take); `keys` (one int per text) joins the seed, so that equal texts at different keys (eval.py:
    draw positions) get independent takes."""
    lm_dir = str(lm_dir or "out/lm/default")
    if (lm_dir, str(device)) not in _runs:
        _runs[lm_dir, str(device)] = load_run(lm_dir, device)
    lm, tok = _runs[lm_dir, str(device)]
    for text in texts:
        if not text.strip():
            raise ValueError("empty text: nothing to generate a motion for")
    settings = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "guidance": guidance}
    settings = {k: DEFAULTS[k] if v is None else v for k, v in settings.items()}
    steps = max(1, round(seconds * FPS / FRAMES_PER_CODE)) if seconds else None
    if keys is not None and len(keys) != len(texts):
        raise ValueError(f"{len(keys)} keys for {len(texts)} texts: give one per text")
    keys = [] if keys is None else list(keys)
    jobs = [(text, [*keys[i:i + 1], take]) for i, text in enumerate(texts) for take in range(num_samples)]
    joints = []
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start:start + batch_size]
        # one generator per take, seeded by (seed, text, [key,] take): a take does not depend on its batch
        gens = [torch.Generator(lm.lm.device).manual_seed(int(np.random.SeedSequence(
            [seed, zlib.crc32(text.encode()), *take]).generate_state(1)[0])) for text, take in batch]
        # at most the longest clip of any dataset (MAX_FRAMES): no motion the model was trained on is longer,
        # and one runaway take would keep its whole batch generating to the end of the context
        codes = lm.generate([text for text, _ in batch], steps=steps, max_steps=MAX_FRAMES // FRAMES_PER_CODE,
                            generator=gens, **settings)
        for c in codes:
            with torch.no_grad():
                feats = tok.decode(torch.as_tensor(c, device=tok.mean.device)[None])[0]
            joints.append(recover_from_ric(feats.float().cpu().numpy(), tok.joints_num).astype(np.float32))
    return joints


def slug(text, limit=60):
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "text"


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "sample.py")}
    texts = list(cfg["text"])
    if cfg["file"]:
        path = Path(cfg["file"])
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such prompt file")
        texts += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ValueError("no text: give --text=\"a person waves\" (repeatable) or --file=prompts.txt")
    settings = {k: None if cfg[k] < 0 else cfg[k] for k in DEFAULTS}
    joints = generate(texts, cfg["lm_dir"], cfg["num_samples"], seed=cfg["seed"], seconds=cfg["seconds"],
                      device=pick_device(cfg["device"]), batch_size=cfg["batch_size"], **settings)
    out = Path(cfg["out_dir"]) / Path(cfg["lm_dir"]).name
    out.mkdir(parents=True, exist_ok=True)
    takes = [(text, take) for text in texts for take in range(cfg["num_samples"])]
    for (text, take), j in zip(takes, joints, strict=True):
        path = out / f"{slug(text)}_{take}"
        np.save(path.with_suffix(".npy"), j)
        if cfg["gif"]:
            render_gif(j, path.with_suffix(".gif"), title=text, fps=FPS)
        if cfg["bvh"]:
            to_bvh(j, path.with_suffix(".bvh"), fps=FPS)
        written = " + ".join([".npy"] + [f".{kind}" for kind in ("gif", "bvh") if cfg[kind]])
        print(f"{path}{written}: {len(j)} frames ({len(j) / FPS:.1f} s) {text!r}")


if __name__ == "__main__":
    cli(main, "sample.py")
