"""Motion codes: how much of the codebook they use (utilisation, perplexity), and the codes folder,
data/<name>/tokens/<run>/ (format: docs/design.md), that `python tokenizer.py --encode` writes and train.py
reads, so the language model never runs the encoder. A clip of T frames gives T // α steps."""

import shutil
from pathlib import Path

import numpy as np
import torch

from common import make_temp_dir, progress_bar, read_run_file, replace_dir, write_json


def code_counts(codes, K, layers):
    """codes [..., S] -> counts [layers, K]: one row per RVQ layer (a row stays 0 when quantizer dropout
    skipped its layer), else one row for all part slots."""
    codes = codes.reshape(-1, codes.shape[-1] if layers > 1 else 1).cpu()
    counts = torch.zeros(layers, K)
    counts[:codes.shape[1]] = torch.stack([torch.bincount(column, minlength=K) for column in codes.T]).float()
    return counts


def code_stats(counts):
    """Utilisation: the fraction of the K codes used at least once; perplexity: exp(entropy of the code
    histogram), K when all codes are used equally often (both averaged over RVQ layers)."""
    p = counts / counts.sum(1, keepdim=True).clamp_min(1)
    return {"utilisation": float((counts > 0).float().mean()),
            "perplexity": float(torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum(1)).mean())}


@torch.no_grad()
def write_codes(model, run_dir, data, data_dir, alpha, device="cpu"):
    """Every clip of `data` (in data_dir) encoded by run_dir's `model` into data_dir/tokens/<run>/ -> that."""
    run_dir, frames = Path(run_dir), np.diff(data.offsets)
    offsets = np.concatenate([[0], np.cumsum(frames // alpha)]).astype(np.int64)  # T mod α frames dropped
    out = Path(data_dir) / "tokens" / run_dir.name
    tmp = make_temp_dir(out)
    dtype = np.uint16 if model.K <= 65536 else np.int32
    try:  # an interrupted encode leaves the previous codes as they were and no half folder
        codes = np.lib.format.open_memmap(tmp / "codes.npy", "w+", dtype, (int(offsets[-1]), model.P))
        with progress_bar(total=len(data), desc="encode", unit="clip") as bar:
            for idx, feats in data.whole_clips(np.arange(len(data)), alpha):
                for i, clip_codes in zip(idx, model.encode(feats.to(device)).cpu().numpy(), strict=True):
                    codes[offsets[i] : offsets[i + 1]] = clip_codes
                bar.update(len(idx))
        codes.flush()
        del codes
        np.save(tmp / "offsets.npy", offsets)
        write_json(tmp / "meta.json", {
            "K": model.K, "P": model.P, "kind": model.kind, "parts": getattr(model, "part_names", None),
            "hold_frames": model.hold,  # each clip's edge poses held this long (Tokenizer.encode)
            "tokenizer": str(run_dir), "dataset": data.meta.get("name"), "data_dir": str(data_dir),
            "clips": len(data), "frames_per_code": alpha, "dtype": np.dtype(dtype).name,
            "cropped": {"clips": int((frames % alpha > 0).sum()),
                        "frames_dropped": int((frames % alpha).sum()),
                        "note": f"a clip of T frames is cropped to its first T - T mod {alpha} frames"}})
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class Codes:
    """data_dir/tokens/<run>/: codes [steps, P] + offsets, checked against the dataset."""

    def __init__(self, data_dir, run, data):
        root = Path(data_dir) / "tokens" / run
        make = f"`python tokenizer.py --encode --data_dir={data_dir} --run_name={run}`"
        if not (root / "meta.json").is_file():
            raise FileNotFoundError(f"{root}: no motion codes here; make them with {make}")
        remake = f"remake them with {make}"
        self.meta = read_run_file(root / "meta.json", remake)
        self.K, self.P = self.meta["K"], self.meta["P"]
        self.codes = read_run_file(root / "codes.npy", remake,
                                   lambda f: np.load(f, mmap_mode="r", allow_pickle=False))
        self.offsets = read_run_file(root / "offsets.npy", remake)
        if len(self.offsets) != len(data) + 1 or self.codes.shape != (self.offsets[-1], self.P):
            raise ValueError(f"{root}: codes {self.codes.shape} for {len(self.offsets) - 1} clips do not "
                             f"match {data.root} ({len(data)} clips) or P = {self.P}; {remake}")
        if "hold_frames" not in self.meta:  # an LM on them would learn edge codes the decoder never sees
            raise ValueError(f"{root}: these codes were encoded with zero-padded clip edges, before the "
                             f"tokenizer held them (tokenizer.py, Tokenizer.encode); {remake}")
        self.root, self.remake = root, remake

    def clip(self, i):
        return np.asarray(self.codes[self.offsets[i]:self.offsets[i + 1]], dtype=np.int64)
