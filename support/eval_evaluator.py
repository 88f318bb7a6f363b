"""The text/motion evaluator eval.py measures with (paper §5.1): a dual encoder as Guo et al. / TMR build it,
trained contrastively (InfoNCE) on the train split's protocol draws (`python eval.py --train_evaluator`, its
settings eval.py's CONFIG), saved to and loaded from its folder. Its design: docs/evaluation.md."""

import json
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

import data as motion_data
from common import atomic_write, cosine_lr, pick_device, progress_bar, read_run_file, save_weights, write_json
from motion import MAX_FRAMES
from support.eval_metrics import UNIT, batch_hits, protocol_draw
from support.text_tokenizer import bpe_from_files, normalise_caption, train_bpe


class _Tower(nn.Module):
    def __init__(self, cfg, layers, max_tokens):
        super().__init__()
        w = cfg["width"]
        self.pos = nn.Parameter(0.02 * torch.randn(max_tokens, w))
        block = nn.TransformerEncoderLayer(w, cfg["heads"], 4 * w, cfg["dropout"], activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm, self.out = nn.LayerNorm(w), nn.Linear(w, cfg["emb_dim"])

    def pool(self, h, pad):  # tokens [B, L, w], pad [B, L] (True = padding) -> unit vectors [B, emb_dim]
        h = self.norm(self.blocks(h + self.pos[:h.shape[1]], src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).float()
        return F.normalize(self.out((h * keep).sum(1) / keep.sum(1)), dim=-1)


class TextTower(_Tower):
    def __init__(self, cfg, n_vocab):
        super().__init__(cfg, cfg["text_layers"], cfg["max_text_tokens"])
        self.tok = nn.Embedding(n_vocab + 1, cfg["width"])  # the last id pads

    def forward(self, ids, pad):
        return self.pool(self.tok(ids), pad)


class MotionTower(_Tower):
    def __init__(self, cfg):
        super().__init__(cfg, cfg["motion_layers"], MAX_FRAMES // UNIT)
        self.conv1 = nn.Conv1d(cfg["feat_dim"] - 4, cfg["width"], 4, 2, 1)
        self.conv2 = nn.Conv1d(cfg["width"], cfg["width"], 4, 2, 1)

    def forward(self, x, lengths):  # normalised [B, T, D - 4], zero beyond each length (a multiple of 4)
        h = F.gelu(self.conv1(x.transpose(1, 2)))
        # zero the half-rate steps past each clip's end, as conv2's own padding is: a clip's embedding is
        # then the same alone or padded in a batch
        h = h * (torch.arange(h.shape[-1], device=x.device) < (lengths // 2)[:, None]).unsqueeze(1)
        h = F.gelu(self.conv2(h)).transpose(1, 2)
        return self.pool(h, torch.arange(h.shape[1], device=x.device) >= (lengths // UNIT)[:, None])


class Evaluator(nn.Module):
    """The dual encoder with its BPE and the dataset's feature mean/std (its own normalisation, saved with
    it): embed_texts / embed_motions take captions / raw features and give numpy embeddings."""

    def __init__(self, cfg, bpe, mean=None, std=None):
        super().__init__()
        self.cfg, self.bpe = cfg, bpe
        D = cfg["feat_dim"]
        self.register_buffer("mean", torch.zeros(D) if mean is None else torch.as_tensor(mean).float())
        self.register_buffer("std", torch.ones(D) if std is None else torch.as_tensor(std).float())
        self.text, self.motion = TextTower(cfg, bpe.n_vocab), MotionTower(cfg)

    def text_batch(self, captions):  # -> token ids [B, L], padding [B, L] on this module's device
        ids = [torch.tensor(i[:self.cfg["max_text_tokens"]] or [self.bpe.eos_id]) for i in
               self.bpe.encode_batch([normalise_caption(c) for c in captions])]
        ids = pad_sequence(ids, batch_first=True, padding_value=self.bpe.n_vocab)
        return ids.to(self.mean.device), (ids == self.bpe.n_vocab).to(self.mean.device)

    def motion_batch(self, feats):  # raw [T_i, D], T_i a multiple of 4 -> normalised [B, T, D - 4], lengths
        lengths = torch.tensor([len(f) for f in feats])
        if (lengths % UNIT).any() or (lengths < UNIT).any() or (lengths > MAX_FRAMES).any():
            raise ValueError(f"the evaluator takes {UNIT}..{MAX_FRAMES} frames in multiples of {UNIT}, got "
                             f"{sorted(set(lengths.tolist()))[:5]}")
        mean, std = self.mean.cpu(), self.std.cpu()
        x = pad_sequence([((torch.as_tensor(np.asarray(f, np.float32)) - mean) / std)[:, :-4] for f in feats],
                         batch_first=True)
        return x.to(self.mean.device), lengths.to(self.mean.device)

    @torch.no_grad()
    def embed_texts(self, captions, tokens=None):  # tokens: only the standard evaluator reads them
        self.eval()
        return np.concatenate([self.text(*self.text_batch(captions[s:s + 512])).cpu().numpy()
                               for s in range(0, len(captions), 512)])

    @torch.no_grad()
    def embed_motions(self, feats):
        self.eval()
        order = np.argsort([len(f) for f in feats])  # similar lengths together: little padding
        out = np.zeros((len(feats), self.cfg["emb_dim"]), np.float32)
        for s in range(0, len(feats), 256):
            idx = order[s:s + 256]
            out[idx] = self.motion(*self.motion_batch([feats[i] for i in idx])).cpu().numpy()
        return out


def info_nce(text, motion, duplicates, temperature):
    """Symmetric InfoNCE over a batch of unit embeddings (row i of each a pair); near-duplicate captions are
    taken out of each other's negatives."""
    logits = text @ motion.T / temperature
    eye = torch.eye(len(text), dtype=torch.bool, device=text.device)
    logits = logits.masked_fill(torch.as_tensor(duplicates, device=text.device) & ~eye, float("-inf"))
    target = torch.arange(len(text), device=text.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def train_evaluator(cfg, progress=True):
    """Contrastive training on the train split (cfg: eval.py's CONFIG) -> the Evaluator and its metrics (the
    real motions' R-Precision on val and test), both saved to out/evaluator/<dataset>/."""
    t0 = time.time()
    data = motion_data.MotionData(cfg["data_dir"])
    train = data.split("train")
    torch.manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])
    captions = [normalise_caption(c) for i in train for c in data.texts[i]["captions"]]
    bpe = train_bpe(captions, cfg["bpe_vocab_size"])
    arch = {k: cfg[k] for k in ("width", "heads", "text_layers", "motion_layers", "dropout", "emb_dim",
                                "max_text_tokens")}
    arch |= {"feat_dim": data.feat_dim, "dataset": data.meta["name"]}
    device = pick_device(cfg["device"])
    ev = Evaluator(arch, bpe, data.mean, data.std).to(device)
    opt = torch.optim.AdamW(ev.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    bar = progress_bar(range(cfg["max_iters"]), desc="evaluator", disable=not progress)
    for step in bar:
        for group in opt.param_groups:  # cosine to lr / 10
            group["lr"] = cosine_lr(step, cfg["lr"], cfg["lr"] / 10, cfg["warmup_iters"], cfg["max_iters"])
        draw = protocol_draw(data, rng.choice(train, min(cfg["batch_size"], len(train)), replace=False), rng)
        ev.train()
        loss = info_nce(ev.text(*ev.text_batch(draw["caption"])), ev.motion(*ev.motion_batch(draw["feats"])),
                        near_duplicates(draw["caption"], cfg["duplicate_jaccard"]), cfg["temperature"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    metrics = {"train_seconds": round(time.time() - t0, 1), "iters": cfg["max_iters"]}
    for split in ("val", "test"):  # R-Precision of the ground truth, one protocol draw
        if (data.root / f"{split}.txt").is_file() and len(data.split(split)) >= cfg["rprecision_batch"]:
            draw = protocol_draw(data, data.split(split), np.random.default_rng(cfg["seed"]))
            r = np.nanmean(batch_hits(ev.embed_texts(draw["caption"]), ev.embed_motions(draw["feats"]),
                                      cfg["rprecision_batch"]), 0)
            metrics |= {f"{split}_R@{k + 1}": round(float(r[k]), 4) for k in range(3)}
    out = Path(cfg["evaluator_dir"] or Path("out/evaluator") / data.meta["name"])
    out.mkdir(parents=True, exist_ok=True)
    save_weights(out / "model.safetensors", ev.state_dict())
    for name, content in bpe.files.items():
        atomic_write(out / name, lambda p, c=content: p.write_bytes(c))
    write_json(out / "config.json", arch)
    write_json(out / "metrics.json", metrics)
    print(f"{out}: {json.dumps(metrics)}")
    return ev, metrics


def load_evaluator(folder, device="cpu"):
    """A trained Evaluator from its folder (what train_evaluator wrote), in eval mode."""
    folder = Path(folder)
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: missing, so {folder} is no trained evaluator "
                                    f"(train one with `python eval.py --train_evaluator`)")
    remake = "rerun python eval.py --train_evaluator"
    read_run_file(folder / "vocab.json", remake)  # JSON: then what fails in bpe_from_files is merges.txt
    bpe = read_run_file(folder / "merges.txt", remake, lambda f: bpe_from_files(folder / "vocab.json", f))
    ev = Evaluator(read_run_file(folder / "config.json", remake), bpe)
    ev.load_state_dict(read_run_file(folder / "model.safetensors", remake))
    return ev.to(device).eval()


def near_duplicates(captions, jaccard=0.8):
    """[N, N] bool: captions equal after normalisation, or whose word sets overlap by Jaccard >= `jaccard`
    (TMR filters such negatives with a sentence encoder, which is not available offline)."""
    texts = [normalise_caption(c) for c in captions]
    words = [set(re.findall(r"[a-z0-9']+", t)) for t in texts]
    vocab = {w: i for i, w in enumerate(sorted(set().union(*words)))}
    hot = np.zeros((len(words), len(vocab)), np.float32)
    for i, ws in enumerate(words):
        hot[i, [vocab[w] for w in ws]] = 1
    inter = hot @ hot.T
    union = hot.sum(1)[:, None] + hot.sum(1)[None] - inter
    same = np.unique(texts, return_inverse=True)[1].reshape(-1)
    return (same[:, None] == same[None]) | (inter >= jaccard * np.maximum(union, 1))
