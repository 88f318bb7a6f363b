"""Motion data: the on-disk dataset (data/<name>/, format: docs/design.md), batching, and the command line
that writes datasets (from synth.py, or from real data through support/data_real.py's loaders) and renders
clips. The skeleton, forward kinematics and the features themselves are motion.py's.

    python data.py                                   # synthetic dataset (synth.py) -> data/synth
    python data.py --source=humanml3d --src=DIR      # HumanML3D layout -> data/humanml3d
    python data.py --source=smplx --src=DIR --smplx_model_dir=DIR   # Motion-X / MotionBase style
    python data.py --show=0,5,9                      # stick-figure GIFs of data/synth clips -> out/gifs
    python data.py --show=0 --bvh                    # + a .bvh beside each GIF (for Blender)

Source layouts (docs/data.md, "Real data"): HumanML3D's SRC/new_joint_vecs/, texts/ and split files;
SMPL-X parameters in SRC/motions/<name>.npz, captions in SRC/texts/<name>.txt. Sequences longer than 196
frames (at 20 fps) are cut evenly into <name>@0, @1, ...; a single frame (an image's pose) is held for 64.
"""

import contextlib
import json
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import torch

import synth
from common import cli, make_temp_dir, parse_args, replace_dir
from motion import FPS, MIN_FRAMES, feature_slices, part_columns, recover_from_ric, render_gif
from support.bvh import to_bvh
from support.data_real import convert, load_humanml3d, load_smplx, read_splits

# settings of the command line: plain values, overridden by --key=value (data.py --help lists them)
CONFIG = dict(
    source="synth",  # synth (the embedded dataset) | humanml3d | smplx (Motion-X / MotionBase-style SMPL-X)
    src="",  # humanml3d, smplx: the source folder
    data_dir="",  # the dataset folder written, or read by --show ("": data/<source>)
    size=20000, seed=0,  # synth: clips, generator seed
    workers=max(1, min(8, os.cpu_count() or 1)),  # processes converting or generating clips
    strict=False,  # stop at the first bad clip, naming it, instead of skipping and counting it
    smplx_model_dir="",  # smplx: the folder with SMPLX_NEUTRAL.npz (or smplx/SMPLX_NEUTRAL.npz)
    gender="neutral", src_fps=30.0, up="y",  # smplx: model file, frame rate of files with none, up axis y | z
    t2m_test=False,  # humanml3d: the test split as Guo et al.'s evaluation has it (eval.py --t2m_checkpoint)
    show="",  # comma-separated clip ids or indices to render as GIFs instead of writing a dataset
    gif_dir="out/gifs",  # --show: where the GIFs go
    bvh=False,  # --show: also write each clip as a .bvh beside its GIF (joint rotations, for Blender)
)
SKIP_REASONS = "load_error nan_or_inf too_short too_long wrong_width bad_caption duplicate_id".split()


class BadClip(ValueError):  # a clip that cannot go into the dataset; .reason is one of SKIP_REASONS
    def __init__(self, reason, where, problem):
        super().__init__(f"{where}: {problem}")
        self.reason = reason


def _check_clip(clip, feat_dim, seen):
    """-> (feats float32 [T, D], captions, tokens) or raises BadClip. `tokens`: HumanML3D's part-of-speech
    tokens of each caption (for Guo et al.'s standard evaluator), aligned with the captions kept, or None."""
    where = clip.get("file") or f"clip {clip.get('id')!r}"
    if "error" in clip:
        raise BadClip("load_error", where, clip["error"])
    feats = np.asarray(clip["feats"], dtype=np.float32)
    if feats.ndim != 2 or feats.shape[1] != feat_dim:
        raise BadClip("wrong_width", where, f"features of shape {feats.shape}, expected [T, {feat_dim}]")
    if not np.isfinite(feats).all():
        raise BadClip("nan_or_inf", where, "features contain NaN or inf")
    if len(feats) < MIN_FRAMES:
        raise BadClip("too_short", where, f"{len(feats)} frames, fewer than {MIN_FRAMES}")
    if len(feats) > clip.get("max_frames", len(feats)):  # a loader's limit (humanml3d --t2m_test)
        raise BadClip("too_long", where, f"{len(feats)} frames, more than {clip['max_frames']}")
    captions, tokens, all_tokens = [], [], clip.get("tokens")
    for k, c in enumerate(clip.get("captions") or []):
        try:
            c = c.decode("utf-8") if isinstance(c, bytes) else str(c)
            pos = all_tokens[k].decode("utf-8").split() if all_tokens is not None else None
        except UnicodeDecodeError:
            raise BadClip("bad_caption", clip.get("text_file", where), "caption is not valid UTF-8") from None
        if c.strip():
            captions.append(c.strip())
            tokens.append(pos)
    if not captions:
        raise BadClip("bad_caption", clip.get("text_file", where), "no caption (empty or missing)")
    if clip["id"] in seen:
        raise BadClip("duplicate_id", where, f"id {clip['id']!r} appears twice")
    return feats, captions, tokens if all_tokens is not None else None


def default_split(clip_id):  # deterministic 80/10/10 train/val/test split by a hash of the id
    u = zlib.crc32(clip_id.encode()) / 2 ** 32
    return "train" if u < 0.8 else "val" if u < 0.9 else "test"


def write_dataset(out_dir, clips, *, name, joints_num, splits=None, strict=False, source=None):
    """Validate and stream `clips` (dicts {"id", "feats" [T, D], "captions", "parts", "subset"}) into out_dir
    atomically; -> the summary (also in meta.json). Bad clips are skipped and counted per reason (strict: one
    error naming the clip). `splits`: {split name: [ids]}, else each clip's "split" or default_split(id)."""
    out_dir, feat_dim = Path(out_dir), 12 * joints_num - 1
    tmp = make_temp_dir(out_dir)
    membership = {}
    for split_name, ids in (splits or {}).items():
        for i in ids:
            membership.setdefault(i, []).append(split_name)
    split_ids = {s: [] for s in (splits or ("train", "val", "test"))}
    skipped, offsets, seen = dict.fromkeys(SKIP_REASONS, 0), [0], set()
    total, sq_total, n_train = np.zeros(feat_dim), np.zeros(feat_dim), 0
    try:
        with open(tmp / "motions.npy", "wb") as mf, open(tmp / "texts.jsonl", "w", encoding="utf-8") as tf:
            header = {"descr": "<f4", "fortran_order": False, "shape": (0, feat_dim)}
            np.lib.format.write_array_header_1_0(mf, header)  # rewritten with the real length (room left)
            for clip in clips:
                try:
                    feats, captions, tokens = _check_clip(clip, feat_dim, seen)
                except BadClip as e:
                    if strict:
                        raise
                    skipped[e.reason] += 1
                    continue
                seen.add(clip["id"])
                mf.write(feats.tobytes())
                offsets.append(offsets[-1] + len(feats))
                record = {"id": clip["id"], "captions": captions, "parts": clip.get("parts") or {},
                          "subset": clip.get("subset", ""), **({"tokens": tokens} if tokens else {}),
                          **({"plan": clip["plan"]} if "plan" in clip else {})}
                tf.write(json.dumps(record, ensure_ascii=False) + "\n")
                in_splits = membership.get(clip["id"], []) if splits else [clip.get("split")
                                                                           or default_split(clip["id"])]
                for s in in_splits:
                    split_ids.setdefault(s, []).append(clip["id"])
                if "train" in in_splits:
                    f64 = feats.astype(np.float64)
                    total += f64.sum(0)
                    sq_total += (f64 ** 2).sum(0)
                    n_train += len(feats)
            if len(offsets) == 1:
                raise ValueError(f"{out_dir}: no valid clips to write (skipped: {skipped})")
            mf.seek(0)
            np.lib.format.write_array_header_1_0(mf, {**header, "shape": (offsets[-1], feat_dim)})
        if n_train == 0:
            raise ValueError(f"{out_dir}: the train split is empty; mean/std need training clips")
        # Mean per column; std averaged within each feature group as HumanML3D does (keeps rarely-moving
        # columns from being blown up), floored at 1e-3.
        mean = total / n_train
        std = np.sqrt(np.maximum(sq_total / n_train - mean ** 2, 0))
        for g in feature_slices(joints_num).values():
            std[g] = std[g].mean()
        np.save(tmp / "mean.npy", mean.astype(np.float32))
        np.save(tmp / "std.npy", np.maximum(std, 1e-3).astype(np.float32))
        np.save(tmp / "offsets.npy", np.array(offsets, dtype=np.int64))
        for s, ids in split_ids.items():
            (tmp / f"{s}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        summary = {"written": len(offsets) - 1, "frames": offsets[-1], "skipped": skipped,
                   "splits": {s: len(ids) for s, ids in split_ids.items()}}
        meta = {"name": name, "version": 1, "fps": FPS, "joints_num": joints_num, "feat_dim": feat_dim,
                "parts": {k: v.tolist() for k, v in part_columns(joints_num).items()},
                "source": source, "summary": summary}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


class JsonLines:
    """A .jsonl file as a read-only list of dicts, each line parsed when accessed (memory-mapped, so a
    million clips' texts stay on disk). A line that is not JSON is reported with its file and line number."""

    def __init__(self, path):
        self.path = Path(path)
        empty = os.path.getsize(path) == 0  # (an empty file cannot be memory-mapped)
        self.buf = np.zeros(0, np.uint8) if empty else np.memmap(path, dtype=np.uint8, mode="r")
        self.ends = np.flatnonzero(self.buf == ord("\n")) + 1
        if len(self.buf) and self.buf[-1] != ord("\n"):  # a last line cut short still counts (and fails)
            self.ends = np.r_[self.ends, len(self.buf)]
        self.starts = np.r_[0, self.ends[:-1]]

    def __len__(self):
        return len(self.ends)

    def __getitem__(self, i):
        try:
            return json.loads(self.buf[self.starts[i]:self.ends[i]].tobytes())
        except ValueError as e:  # (a JSONDecodeError counts lines and columns within this one line)
            col, why = (f", column {e.colno}", e.msg) if isinstance(e, json.JSONDecodeError) else ("", e)
            raise ValueError(f"{self.path}: line {i % len(self) + 1}{col}: not valid JSON ({why})") from None


def _load_npy(path, mmap_mode=None):  # np.load, naming the file when it is cut short or not an .npy array
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, EOFError) as e:
        raise ValueError(f"{path}: truncated or not an .npy array ({e})") from None


def _first_non_finite_row(a, rows=1 << 16):
    """Index of the first row of `a` holding a NaN or inf, else None. Slices keep the temporary small; the
    whole 20k-clip synth set (2.1 GB) takes 0.1 s from the page cache, 0.2-0.8 s from disk (2 CPU cores)."""
    for start in range(0, len(a), rows):
        finite = np.isfinite(a[start:start + rows]).all(1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


class MotionData:
    """Read-only view of a dataset folder written by write_dataset (motions memory-mapped). Opening it checks
    every file's shape and that no frame holds NaN or inf: a damaged folder fails here, naming the file."""

    def __init__(self, root):
        self.root = Path(root)
        files = ["meta.json", "motions.npy", "offsets.npy", "texts.jsonl", "mean.npy", "std.npy"]
        if missing := [f for f in files if not (self.root / f).is_file()]:
            raise FileNotFoundError(f"{self.root}: not a dataset folder, missing {', '.join(missing)} "
                                    f"(write one with `python data.py --data_dir={self.root}`)")
        meta = self.root / "meta.json"
        try:
            self.meta = m = json.loads(meta.read_text(encoding="utf-8"))
            self.joints_num, self.feat_dim, self.fps = m["joints_num"], m["feat_dim"], m["fps"]
        except (ValueError, KeyError) as e:
            raise ValueError(f"{meta}: not a dataset's meta.json ({type(e).__name__}: {e})") from None
        self.motions = _load_npy(self.root / "motions.npy", mmap_mode="r")
        self.offsets = _load_npy(self.root / "offsets.npy")
        self.texts = JsonLines(self.root / "texts.jsonl")
        self.ids = [t.get("id") if isinstance(t, dict) else None for t in self.texts]
        if None in self.ids:
            raise ValueError(f"{self.texts.path}: line {self.ids.index(None) + 1} is not a record with an id")
        self.mean, self.std = _load_npy(self.root / "mean.npy"), _load_npy(self.root / "std.npy")
        problems = []
        if self.motions.ndim != 2 or self.motions.shape[1] != self.feat_dim:
            problems.append(f"motions.npy has shape {self.motions.shape}, meta says feat_dim {self.feat_dim}")
        o = self.offsets
        if o.ndim != 1 or o.dtype.kind != "i" or len(o) != len(self.ids) + 1 or o[0] != 0 or \
                o[-1] != len(self.motions) or (np.diff(o) <= 0).any():
            problems.append(f"offsets.npy ({len(self.offsets)} entries) does not match texts.jsonl "
                            f"({len(self.ids)} clips) and motions.npy ({len(self.motions)} frames)")
        if self.mean.shape != (self.feat_dim,) or self.std.shape != (self.feat_dim,):
            problems.append(f"mean.npy/std.npy have shapes {self.mean.shape}/{self.std.shape}, "
                            f"not ({self.feat_dim},)")
        if problems:
            raise ValueError(f"{self.root}: inconsistent dataset: " + "; ".join(problems))
        if (row := _first_non_finite_row(self.motions)) is not None:
            i = int(np.searchsorted(self.offsets, row, side="right")) - 1
            raise ValueError(f"{self.root / 'motions.npy'}: NaN or inf in clip {self.ids[i]!r} (index {i}, "
                             f"frame {row - self.offsets[i]}); write the dataset again")
        self._index = {i: n for n, i in enumerate(self.ids)}

    def __len__(self):
        return len(self.ids)

    def motion(self, i):  # clip i (an index) as float32 [T_i, D], a view into the memory map
        return self.motions[self.offsets[i]:self.offsets[i + 1]]

    def index(self, clip_id):
        return self._index[clip_id]

    def _crops(self, starts, T):  # raw features [len(starts), T, D]: T frames from each start row
        rows = (starts[:, None] + np.arange(T)).reshape(-1)
        return torch.from_numpy(np.asarray(self.motions[rows], dtype=np.float32)).view(len(starts), T, -1)

    def whole_clips(self, clips, unit, max_batch=64):
        """(clip indices, raw features [n, T, D]) over `clips`, grouped by their length cropped to a multiple
        of `unit` (the last T mod unit frames are dropped): whole clips through a network in batches."""
        frames = np.diff(self.offsets)[clips] // unit * unit
        for T in np.unique(frames):
            group = clips[frames == T]
            for start in range(0, len(group), max_batch):
                idx = group[start : start + max_batch]
                yield idx, self._crops(self.offsets[idx], T)

    def random_windows(self, clips, window, batch, rng):
        """(clip indices [batch] drawn from `clips`, each one's random crop of `window` frames [batch, window,
        D] of raw features), by the numpy Generator rng; every clip must have at least `window` frames."""
        pick = rng.integers(len(clips), size=batch)
        lengths = np.diff(self.offsets)[clips[pick]]
        starts = self.offsets[clips[pick]] + rng.integers(0, lengths - window + 1)
        return clips[pick], self._crops(starts, window)

    def split(self, name):  # clip indices of a split (train, val, test, ood, ...)
        path = self.root / f"{name}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no split named {name!r} in this dataset")
        ids = path.read_text(encoding="utf-8").split()
        if unknown := [i for i in ids if i not in self._index]:
            raise ValueError(f"{path}: {len(unknown)} ids not in texts.jsonl, e.g. {unknown[0]!r}")
        return np.array([self._index[i] for i in ids], dtype=np.int64)


def main(argv):
    cfg = {**CONFIG, **parse_args(argv, CONFIG, "data.py")}
    if cfg["source"] not in ("synth", "humanml3d", "smplx"):
        raise ValueError(f"--source must be synth, humanml3d or smplx, got {cfg['source']!r}")
    if cfg["size"] < 1 or cfg["workers"] < 1:
        raise ValueError(f"--size and --workers must be at least 1, got --size={cfg['size']} "
                         f"--workers={cfg['workers']}")
    if cfg["up"] not in ("y", "z"):
        raise ValueError(f"--up must be y or z, got {cfg['up']!r}")
    if cfg["bvh"] and not cfg["show"]:
        raise ValueError("--bvh writes the clips that --show renders: give --show=ids too")
    if cfg["show"]:
        ds = MotionData(cfg["data_dir"] or "data/synth")
        for key in cfg["show"].split(","):  # an id, else an index
            i = ds._index.get(key, int(key) if key.isdigit() else -1)
            if not 0 <= i < len(ds):
                raise ValueError(f"{ds.root}: no clip with id or index {key!r} ({len(ds)} clips)")
            path = Path(cfg["gif_dir"]) / f"{ds.meta['name']}_{ds.ids[i].replace('/', '_')}.gif"
            joints = recover_from_ric(np.array(ds.motion(i)), ds.joints_num)
            render_gif(joints, path, title=ds.texts[i]["captions"][0], fps=ds.fps)
            if cfg["bvh"]:
                to_bvh(joints, path.with_suffix(".bvh"), fps=ds.fps)
            print(f"{path}{' + .bvh' if cfg['bvh'] else ''}: {ds.ids[i]} ({len(joints)} frames) "
                  f"{ds.texts[i]['captions'][0]!r}")
        return
    out, src = Path(cfg["data_dir"] or f"data/{cfg['source']}"), cfg["src"]
    splits, source = None, {cfg['source']: src}
    if cfg["source"] == "synth":
        clips, splits = synth.generate(cfg["size"], cfg["seed"], cfg["workers"])
        source = {"synth": {"size": cfg["size"], "seed": cfg["seed"]}}
    elif not src or not Path(src).is_dir():
        raise ValueError(f"--source {cfg['source']} needs --src=DIR (an existing folder), got {src!r}")
    elif cfg["source"] == "humanml3d":
        test = {n for n, s in read_splits(src).items() if s == "test"} if cfg["t2m_test"] else set()
        clips = convert(load_humanml3d, Path(src) / "new_joint_vecs", ".npy", default_split, cfg["workers"],
                        read_splits(src), src=src, t2m_test=test)
        source["t2m_test"] = cfg["t2m_test"]
    elif not cfg["smplx_model_dir"]:
        raise ValueError("--source smplx needs --smplx_model_dir=DIR (the SMPL-X model files)")
    else:
        clips = convert(load_smplx, Path(src) / "motions", ".npz", default_split, cfg["workers"],
                        read_splits(src), src=src, model_dir=cfg["smplx_model_dir"], gender=cfg["gender"],
                        src_fps=cfg["src_fps"], up=cfg["up"])
    try:  # closing: a strict error or Ctrl-C inside write_dataset stops the worker processes right there
        with contextlib.closing(clips):
            summary = write_dataset(out, clips, name=out.name, splits=splits, source=source,
                                    joints_num=52 if cfg["source"] == "smplx" else 22, strict=cfg["strict"])
    except KeyboardInterrupt as e:
        raise KeyboardInterrupt(f"{out} left as it was") from e
    print(f"{out}: {json.dumps(summary)}")


if __name__ == "__main__":
    cli(main, "data.py")
