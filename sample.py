"""Text -> motion: the language model writes motion codes, the tokenizer decodes them to features, the
features become joints (recover_from_ric), and each take is saved as joints .npy [T, J, 3] (metres) and a
stick-figure GIF (paper §4.1: generation is next-token prediction after the instruction; docs/sampling.md).

    python sample.py --text="a person jumps twice, then waves the left hand"
    python sample.py --text="a man walks forward." --text="someone squats." --num_samples=3 --seconds=4
    python sample.py --file=prompts.txt --lm_dir=out/lm/default        # one text a line
    python sample.py --text="a person walks forward and waves" --bvh   # + a .bvh to open in Blender

Writes out/samples/<run>/<text>_<take>.npy and .gif (and .bvh: support/bvh.py). A take is a function of
(--seed, the text, the take number) only: the same command gives the same motions, and a text's motion
does not depend on what else is in the batch. From Python: sample.generate (docs/sampling.md).
"""

import re
import zlib
from pathlib import Path

import numpy as np
import torch

import model as lm_model
import motion
import tokenizer
from common import cli, parse_args, pick_device, read_run_file
from data import MotionData
from motion import FPS, FRAMES_PER_CODE, GROUPS, recover_from_ric, render_gif
from support import length
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
    lengths="",  # who decides a motion's length: median | draw (the run's length estimator,
    # support/length.py: its median, or a draw from it) | model (the LM ends it: </mot>, or its <len T>)
    seed=0, batch_size=32, device="auto", gif=True,
    bvh=False,  # also write each take as <text>_<take>.bvh (a skeleton with joint rotations: Blender, Maya)
    # editing (edit(), docs/sampling.md): a source motion, what of it to keep, the text for the rest
    edit="",  # a clip id of --data_dir, or a joints .npy that sample.py wrote
    data_dir="data/synth",
    keep="",  # upper | lower | part names of the run's tokenizer, comma-separated (e.g. left_arm,right_arm)
    keep_seconds=0.0,  # or keep the source's first seconds and continue from there
    upper="", lower="",  # the instruction's part texts, as training gives them (both or neither)
)
# Sampling defaults, chosen on the validation split (never test) by eval.py's protocol with each candidate:
# `python experiments/choices.py --choice=sampling` reruns the comparison (plain sampling, greedy, guidance
# off against these) on val, `--choice=lengths` the one of who decides the length, `--choice=phrasing` the
# guidance (2.0 over 1.25: new phrasing's action accuracy 0.456 -> 0.564; docs/results.md).
DEFAULTS = dict(temperature=0.4, top_k=0, top_p=0.95, guidance=2.0, lengths="median")
LENGTHS = ("median", "draw", "model")
_runs = {}  # cached_run's: (LM, tokenizer, length estimator) per (lm_dir, device)


def unset(value):  # a setting left to DEFAULTS: < 0, or "" for a word
    return value == "" if isinstance(value, str) else value < 0


def load_run(lm_dir, device="cpu"):
    """(the language model, its tokenizer) of a train.py run, checked to belong together."""
    lm_dir = Path(lm_dir)
    config = lm_dir / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: missing, so {lm_dir} is not a trained language model run "
                                f"(train one with `python train.py --run_name={lm_dir.name}`)")
    cfg = read_run_file(config, f"rerun python train.py --run_name={lm_dir.name}")
    lm = lm_model.load(lm_dir, device)
    tokenizer.check_codes_match(cfg["tokenizer"], lm.K, lm.P, f"{lm_dir}: its motion vocabulary")
    return lm, tokenizer.load(cfg["tokenizer"], device)


def generate(texts, lm_dir=None, num_samples=1, temperature=None, top_k=None, top_p=None, guidance=None,
             lengths=None, seed=0, seconds=None, device="cpu", batch_size=32, keys=None, keep=None,
             parts=None, steps=None):
    """Joints float32 [T, J, 3] in metres for each text and take, text-major (len(texts) * num_samples); the
    settings: docs/sampling.md. A take is seeded by (seed, its text, take); `keys` (one int per text) joins
    the seed, so that equal texts at different keys (eval.py: draw positions) get independent takes. `keep`
    (one (codes, mask) or None per text: keep_mask) forces the kept codes; `parts` ({"upper": ..., "lower":
    ...}, or one such or None per text) gives the texts their part texts. `seconds` fixes every motion's
    length, `steps` (motion codes, one count per text: eval.py's real lengths) each text's; else `lengths`
    says who decides it (a text with kept codes: the edit, support/model_generate.forced_codes)."""
    lm, tok, estimator = cached_run(lm_dir, device)
    if not all(text.strip() for text in texts):
        raise ValueError("empty text: nothing to generate a motion for")
    given = dict(temperature=temperature, top_k=top_k, top_p=top_p, guidance=guidance, lengths=lengths)
    settings = {k: DEFAULTS[k] if v is None else v for k, v in given.items()}
    lengths = settings.pop("lengths")
    if lengths not in LENGTHS:
        raise ValueError(f"lengths={lengths!r}: expected one of {', '.join(LENGTHS)}")
    if steps is None:
        steps = [max(1, round(seconds * FPS / FRAMES_PER_CODE)) if seconds else None] * len(texts)
    if estimator is None and lengths != "model" and not all(steps):
        raise FileNotFoundError(f"{lm_dir or 'out/lm/default'}: no length estimator (trained with "
                                f"--length_iters=0, or before train.py fitted one): rerun train.py, or let "
                                f"the LM decide (lengths=model)")
    for name, given in (("keys", keys), ("steps", steps)):
        if given is not None and len(given) != len(texts):
            raise ValueError(f"{len(given)} {name} for {len(texts)} texts: give one per text")
    keys = [] if keys is None else list(keys)
    parts = parts if isinstance(parts, (list, tuple)) else [parts] * len(texts)
    jobs = [(i, text, [*keys[i:i + 1], take]) for i, text in enumerate(texts) for take in range(num_samples)]
    # one generator per take, seeded by (seed, text, [key,] take): a take does not depend on its batch
    gens = [torch.Generator(lm.lm.device).manual_seed(int(np.random.SeedSequence(
        [seed, zlib.crc32(text.encode()), *take]).generate_state(1)[0])) for _, text, take in jobs]
    kept = [None if keep is None else keep[i] for i, _, _ in jobs]
    low, high = [], []  # each take's length range first (a draw takes the take's generator before its codes)
    for start in range(0, len(jobs), batch_size):
        at = range(start, min(start + batch_size, len(jobs)))
        lo, hi = step_range(lm, estimator, lengths, [jobs[k][1] for k in at], [kept[k] for k in at],
                            [gens[k] for k in at], [steps[jobs[k][0]] for k in at])
        low, high = low + lo, high + hi
    # then batches of takes of similar length: a batch runs until its longest row ends (by the longest a take
    # may run, then by its text's length where that is open: longer texts mostly ask for longer motions)
    order = sorted(range(len(jobs)), key=lambda k: (high[k], low[k], len(jobs[k][1])))
    joints = [None] * len(jobs)
    for start in range(0, len(jobs), batch_size):
        batch = order[start:start + batch_size]
        prompts = [(text, parts[i]) if parts[i] else text for i, text, _ in (jobs[k] for k in batch)]
        codes = lm.generate(prompts, min_steps=[low[k] for k in batch], max_steps=[high[k] for k in batch],
                            generator=[gens[k] for k in batch], **settings,
                            keep=None if keep is None else [kept[k] for k in batch])
        for k, c in zip(batch, codes, strict=True):
            joints[k] = decoded_joints(tok, c).astype(np.float32)
    return joints


def step_range(lm, estimator, lengths, texts, kept, generators, fixed):
    """Each text's (min_steps, max_steps) for MotionLM.generate: its `fixed` steps where given (--seconds,
    eval.py's real lengths); else the length estimator's median or draw (with the take's generator) where
    nothing is kept; else from 1 to length.MAX_STEPS, the longest clip of any dataset (why:
    docs/sampling.md, "Constrained decoding")."""
    longest = length.MAX_STEPS
    if all(fixed) or lengths == "model":
        return [f or 1 for f in fixed], [f or longest for f in fixed]
    estimate = estimator.draw(lm.text.encode_batch(texts), generators if lengths == "draw" else None)
    steps = [f or min(s, longest, lm.motion_room(len(lm.prompt_ids(t))))
             for f, s, t in zip(fixed, estimate, texts, strict=True)]
    return ([1 if k is not None else s for s, k in zip(steps, kept, strict=True)],
            [longest if k is not None else s for s, k in zip(steps, kept, strict=True)])


def cached_run(lm_dir, device):
    """(the LM, its tokenizer, its length estimator or None) of a run, loaded once per (lm_dir, device)."""
    lm_dir = str(lm_dir or "out/lm/default")
    if (lm_dir, str(device)) not in _runs:
        _runs[lm_dir, str(device)] = (*load_run(lm_dir, device), length.load(lm_dir, device))
    return _runs[lm_dir, str(device)]


def edit(source_joints, text, keep="", keep_seconds=0.0, lm_dir=None, num_samples=1, seed=0, device="cpu",
         parts=None, **settings):
    """Edit a motion (docs/sampling.md): its codes (source_codes) are kept where `keep` says ("upper",
    "lower" or the tokenizer's part names, comma-separated: 2D-LFQ has a code per body part and step, §4.2;
    the source's length) or for its first keep_seconds (the model continues and ends it), and the model writes
    the rest from `text`, reading all that is kept so far (support/model_generate.forced_codes). -> joints
    per take."""
    tok = cached_run(lm_dir, device)[1]
    if not text.strip():
        raise ValueError("empty text: nothing to edit the motion towards")
    codes = source_codes(tok, source_joints)
    mask = keep_mask(tok, len(codes), keep, keep_seconds)
    return generate([text], lm_dir, num_samples, seed=seed, device=device, keep=[(codes, mask)], parts=parts,
                    **settings)


def keep_mask(tok, steps, keep="", keep_seconds=0.0):
    """[steps, P] bool: the columns of the kept parts (`keep`: "upper", "lower" or the tokenizer's part
    names, comma-separated), or the rows of the first keep_seconds."""
    if bool(keep) == bool(keep_seconds):
        raise ValueError("give what to keep: --keep=upper|lower|<parts> or --keep_seconds=S (one of them)")
    mask = np.zeros((steps, tok.P), bool)
    if keep:
        part_names = getattr(tok, "part_names", None)
        if part_names is None:
            raise ValueError("the run's tokenizer has one code per step (1D): it has no body parts to keep; "
                             "edit with a 2D-LFQ run, or keep time (--keep_seconds)")
        names = [n.strip() for n in keep.split(",") if n.strip()]
        wanted = {p for n in names for p in GROUPS.get(n, (n,))}
        if any(n not in GROUPS and n not in part_names for n in names) or not wanted & set(part_names):
            raise ValueError(f"--keep={keep!r} names no part of this run: give upper, lower or some of "
                             f"{', '.join(part_names)}")
        mask[:, [i for i, p in enumerate(part_names) if p in wanted]] = True
        return mask
    rows, seconds = round(keep_seconds * FPS / FRAMES_PER_CODE), steps * FRAMES_PER_CODE / FPS
    if not 1 <= rows < steps:  # all of it kept would leave nothing to continue: the mask's end fixes length
        raise ValueError(f"--keep_seconds={keep_seconds}: the source lasts {seconds:.1f} s ({steps} steps of "
                         f"{FRAMES_PER_CODE} frames); keep at least one step and less than all of it")
    mask[:rows] = True
    return mask


@torch.no_grad()
def source_codes(tok, joints):
    """A source motion's joints [T, J, 3] -> its codes [T', P]: features as data.py makes them (the last
    frame repeated, so that every frame counts), cropped to 4-frame units, encoded with held edges."""
    joints = np.asarray(joints, np.float32)
    if joints.ndim != 3 or joints.shape[1:] != (tok.joints_num, 3):
        raise ValueError(f"the source has joints of shape {joints.shape}; this run's skeleton is "
                         f"[T, {tok.joints_num}, 3]")
    if len(joints) < FRAMES_PER_CODE:
        raise ValueError(f"the source has {len(joints)} frames, shorter than one step of {FRAMES_PER_CODE}")
    feats = motion.features_from_joints(np.concatenate([joints, joints[-1:]]))
    feats = feats[:len(feats) // FRAMES_PER_CODE * FRAMES_PER_CODE].astype(np.float32)
    return tok.encode(torch.from_numpy(feats)[None])[0].cpu().numpy()


@torch.no_grad()
def decoded_joints(tok, codes):
    """Codes [T, P] -> the tokenizer's decoded joints [4 T, J, 3]."""
    feats = tok.decode(torch.as_tensor(codes, device=tok.mean.device)[None])[0]
    return recover_from_ric(feats.float().cpu().numpy(), tok.joints_num)


def kept_joints(mask, part_names, joints_num):
    """A keep mask [T', P] -> [4 T', J] bool: is each joint of each frame kept (its part's code forced)?"""
    part_of = np.zeros(joints_num, np.int64)  # joint 0 is the root part
    for i, name in enumerate(part_names or ["root"]):
        part_of[motion.BODY_PARTS.get(name, [0] if name == "root" else [])] = i
    return np.repeat(np.asarray(mask)[:, part_of], FRAMES_PER_CODE, 0)


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
    settings, src, gif = {k: None if unset(cfg[k]) else cfg[k] for k in DEFAULTS}, cfg["edit"], {}
    if src:  # --edit: one text; each take's joints and a GIF of the source beside the edit
        if len(texts) != 1:
            raise ValueError(f"--edit takes one text (the instruction for the edit), got {len(texts)}")
        if bool(cfg["upper"]) != bool(cfg["lower"]):
            raise ValueError("give both part texts (--upper=... --lower=...) or neither")
        device = pick_device(cfg["device"])
        if src.endswith(".npy"):  # the source: a joints file, or a clip id of --data_dir
            if not Path(src).is_file():
                raise FileNotFoundError(f"{src}: no such joints file (sample.py writes them beside the GIFs)")
            source = np.load(src)
        else:
            data = MotionData(cfg["data_dir"])
            if src not in data.ids:
                raise ValueError(f"--edit={src}: neither a .npy file nor a clip id of {cfg['data_dir']}")
            source = recover_from_ric(np.array(data.motion(data.index(src)), np.float32), data.joints_num)
        parts = {"upper": cfg["upper"], "lower": cfg["lower"]} if cfg["upper"] else None
        joints = edit(source, texts[0], cfg["keep"], cfg["keep_seconds"], cfg["lm_dir"], cfg["num_samples"],
                      cfg["seed"], device, parts, **settings)
        tok = cached_run(cfg["lm_dir"], device)[1]
        steps = len(source) // FRAMES_PER_CODE  # as many as source_codes gave edit(): not encoded again
        mask = keep_mask(tok, steps, cfg["keep"], cfg["keep_seconds"])
        gif = dict(source=source, kept=kept_joints(mask, getattr(tok, "part_names", None), tok.joints_num))
        what = cfg["keep"] or f"the first {cfg['keep_seconds']} s"
        takes = [(f"edit_{slug(Path(src).stem)}_{slug(texts[0])}_{take}", f"{src} -> {texts[0]}",
                  f", kept {what} of {src}") for take in range(len(joints))]
    else:
        joints = generate(texts, cfg["lm_dir"], cfg["num_samples"], seed=cfg["seed"], seconds=cfg["seconds"],
                          device=pick_device(cfg["device"]), batch_size=cfg["batch_size"], **settings)
        takes = [(f"{slug(text)}_{take}", text, f" {text!r}") for text in texts
                 for take in range(cfg["num_samples"])]
    bvh = cfg["bvh"] and not src
    out = Path(cfg["out_dir"]) / Path(cfg["lm_dir"]).name
    out.mkdir(parents=True, exist_ok=True)
    for (name, title, note), j in zip(takes, joints, strict=True):
        path = out / name
        np.save(path.with_suffix(".npy"), j)
        if cfg["gif"]:
            render_gif(j, path.with_suffix(".gif"), title=title, fps=FPS, **gif)
        if bvh:
            to_bvh(j, path.with_suffix(".bvh"), fps=FPS)
        written = " + ".join([".npy"] + [".gif"] * cfg["gif"] + [".bvh"] * bvh)
        print(f"{path}{written}: {len(j)} frames ({len(j) / FPS:.1f} s){note}")


if __name__ == "__main__":
    cli(main, "sample.py")
