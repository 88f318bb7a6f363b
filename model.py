"""The large motion model (paper §4.1, §5.1): a Hugging Face causal LM (GPT-2 family, Llama-2/3) that speaks
motion as a foreign language, with its text tokenizer, the motion vocabulary, the instruction format, the
loss masks and constrained generation. train.py fine-tunes it, sample.py and eval.py generate with it.

One training sample (docs/design.md), time-major, the P part codes of a step together:

    <text tokens of the instruction> <mot> [<len T>] c(0,0) … c(0,P−1) c(1,0) … c(T−1,P−1) </mot> <eos>

The instruction is a template around the normalised caption, sometimes with MotionBase's part texts. Code c
is vocabulary id motion_ids[c]: K new rows (motion_vocab="add") or the K least frequent caption tokens
("reuse", the paper's, §5.1). <mot> and </mot> are new tokens (§4.1), and <pad> where the family lacks one;
with train.py --length_token (not in the paper) the model first writes the motion's length <len T>.

Training minimises eq. (1), L(Θ) = −Σ_j log P_Θ(y_j | desc, ŷ_{1:j−1}) over the tokens counted() counts (by
their Kind). generate() is constrained, so every output parses into codes [T, P]. Usage: docs/lm.md.
"""

import json
from collections import Counter
from enum import IntEnum
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch.nn.utils.rnn import pad_sequence
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from common import bf16_on, make_temp_dir, read_run_file, replace_dir, write_json
from support.model_generate import filled_cache, forced_codes, sampler
from support.model_pretrained import fresh_rows, hub_snapshot, reuse_ids
from support.model_registry import REGISTRY, grown_vocab, hf_config, model_spec  # the named models
from support.text_tokenizer import TextTokenizer, bpe_from_files, normalise_caption, train_bpe

hf_logging.disable_progress_bar()  # one-shard "Loading weights" / "Writing model shards" bars: noise

# instructions: every pair is a question-answer instance {X_Q, X_M} (§4.1), worded by one of a few templates
TEMPLATES = ["generate a motion: {text}", "show me how a person moves: {text}",
             "what motion matches this description? {text}"]
PARTS = ("upper", "lower")  # MotionBase's hierarchical texts: a whole-body caption plus one per body part
TINY_BPE = 512  # the tiny models' BPE vocabulary, trained on the captions (build)
LENGTH_TOKENS = 64  # <len 1> ... <len 64>: 4 frames a step, 12.8 s (HumanML3D's clips: at most 9.8 s)


class Kind(IntEnum):
    """What each token of a training sequence is (sample_ids, collate: the labels, position_ids)."""
    PAD = 0  # collate's right padding
    TEXT = 1  # the instruction, with <bos>, <mot> and <eos>
    CODE = 2  # a motion code
    END = 3  # </mot>
    LENGTH = 4  # <len T> (train.py --length_token)


# the kinds each loss counts: "whole" every token (the paper's choice, Table 10), "motion" the motion's
COUNTED = {"whole": (Kind.TEXT, Kind.CODE, Kind.END, Kind.LENGTH),
           "motion": (Kind.CODE, Kind.END, Kind.LENGTH)}


def counted(kinds, loss):
    """kinds [B, L] -> bool [B, L]: does each token count in `loss` ("whole" or "motion", COUNTED)?"""
    if loss not in COUNTED:
        raise ValueError(f"loss must be 'whole' or 'motion', got {loss!r}")
    kinds = torch.as_tensor(kinds)
    return torch.isin(kinds, torch.tensor(COUNTED[loss], device=kinds.device))


# Position ids, the motion clock (docs/lm.md): the instruction sits at 0, 1, ...; the motion (its codes,
# </mot>, <eos>) starts at motion_position(n_ctx) whatever the instruction's length, so that a code's
# (learned, GPT-2) position says how far into the motion it is. Right after the instruction the model had
# to subtract its length first, and its val loss was higher (docs/results/choices_motion_clock.json).
def motion_position(n_ctx):  # at most 512: a long-context LLM's motion should not start far from its prompt
    return min(n_ctx * 3 // 8, 512)


def motion_end(n_ctx, P):
    """Where a counted-down motion's </mot> sits: after the most whole steps that fit from motion_position."""
    return motion_position(n_ctx) + (n_ctx - motion_position(n_ctx) - 2) // P * P


def motion_start(n_ctx, P, steps, countdown=False):
    """Where the first code of a motion of `steps` steps (LongTensor) sits: motion_position(n_ctx); with the
    countdown (train.py --countdown) a motion of T < LENGTH_TOKENS steps ends at motion_end, so that a code's
    position says how many steps are left."""
    start = torch.full_like(steps, motion_position(n_ctx))
    return torch.where(steps < LENGTH_TOKENS, motion_end(n_ctx, P) - steps * P, start) if countdown else start


def position_ids(kinds, n_ctx, P, countdown=False):
    """kinds [B, L] (Kind) -> position ids [B, L]: natural up to a row's first code, then motion_start + i for
    the i-th token from there; padding stays below n_ctx."""
    natural, is_code = torch.arange(kinds.shape[1]).expand_as(kinds), kinds == Kind.CODE
    first = torch.where(is_code.any(1), is_code.int().argmax(1), kinds.shape[1])[:, None]  # no code: natural
    start = motion_start(n_ctx, P, is_code.sum(1, keepdim=True) // P, countdown)
    return torch.where(natural >= first, start + natural - first, natural).clamp(max=n_ctx - 1)


def instruction_text(caption, parts=None, template=0):
    """The instruction X_Q: a template around the normalised caption, and the part texts if given."""
    text = normalise_caption(caption)
    text += "".join(f" {name} body: {normalise_caption(parts[name])}" for name in PARTS) if parts else ""
    return TEMPLATES[template].format(text=text)


class MotionLM:
    """The LM, its text tokenizer and the motion vocabulary (motion_ids[c] is code c's vocabulary id)."""

    def __init__(self, lm, text, *, K, P, motion_ids, mot_id, end_mot_id, pad_id, mode, spec, length_ids=()):
        self.lm, self.text, self.K, self.P, self.mode, self.spec = lm, text, K, P, mode, spec
        self.length_ids = torch.as_tensor(length_ids, dtype=torch.long)  # <len 1> ...; empty: no length token
        self.countdown = spec.get("countdown", False)  # the motion ends at motion_end (with length_ids)
        self.motion_ids = torch.as_tensor(motion_ids, dtype=torch.long)
        self.code_of = torch.full((lm.config.vocab_size,), -1)  # vocabulary id -> code (-1: not a code)
        self.code_of[self.motion_ids] = torch.arange(K)
        self.mot_id, self.end_mot_id, self.pad_id, self.eos_id = mot_id, end_mot_id, pad_id, text.eos_id
        self.reused = set(self.motion_ids.tolist()) if mode == "reuse" else set()

    def prompt_ids(self, caption, parts=None, template=0):
        """[<bos> where the tokenizer has one] + the instruction's text tokens + <mot>; caption None: no
        instruction at all (the unconditional prompt of classifier-free guidance)."""
        ids = [] if caption is None else self.text.encode(instruction_text(caption, parts, template))
        if not self.reused.isdisjoint(ids):  # reuse: a token no train caption had is a code now, so the
            # caption says it in smaller tokens; a piece that is itself a code cannot be read and is left out
            spelt = [j for i in ids for j in (self.text.spell(i) if i in self.reused else [i])]
            ids = [j for j in spelt if j not in self.reused]
        return ([] if self.text.bos_id is None else [self.text.bos_id]) + ids + [self.mot_id]

    def sample_ids(self, caption, codes, parts=None, template=0):
        """One training sequence and the Kind of each token. caption None: no instruction (an unconditional
        sample, for guidance)."""
        motion = self.code_ids(codes).flatten().tolist()  # time-major: a step's P codes together
        prompt = self.prompt_ids(caption, parts, template)
        D = len(self.length_ids)
        length = [int(self.length_ids[min(len(codes), D) - 1])] if D else []  # <len T>; the last: T or more
        kinds = [Kind.TEXT] * len(prompt) + [Kind.LENGTH] * len(length) + [Kind.CODE] * len(motion)
        return prompt + length + motion + [self.end_mot_id, self.eos_id], kinds + [Kind.END, Kind.TEXT]

    def sample_size(self, prompt_len, steps):
        """sample_ids' length for an instruction of prompt_len tokens and a motion of `steps` steps, and how
        many of its tokens each loss counts ({loss: model.counted of kinds[1:], summed}), unbuilt."""
        motion = int(bool(len(self.length_ids))) + steps * self.P + 1  # [<len T>], the codes, </mot>
        n = prompt_len + motion + 1  # ... <eos>
        return n, {"whole": n - 1, "motion": motion}

    def code_ids(self, codes):
        """Codes int [T >= 1, P] -> their vocabulary ids [T, P] (motion_ids); one clear error for others."""
        codes = torch.as_tensor(np.asarray(codes)).long()
        if codes.ndim != 2 or codes.shape[1] != self.P or codes.shape[0] == 0:
            raise ValueError(f"codes must be [T >= 1, P={self.P}], got {list(codes.shape)}")
        if codes.min() < 0 or codes.max() >= self.K:
            raise ValueError(f"codes must lie in [0, {self.K}), got {int(codes.min())}..{int(codes.max())}")
        return self.motion_ids[codes]

    def collate(self, samples, loss="whole"):
        """Right-padded LongTensors input_ids, attention_mask, position_ids (position_ids()), kinds (Kind.PAD
        on padding) and labels: input_ids where the token counts in `loss` (counted()), else -100. The labels
        are not shifted: Hugging Face models shift them inside."""
        input_ids = pad_sequence([torch.tensor(ids) for ids, _ in samples], True, self.pad_id)
        kinds = pad_sequence([torch.tensor(k) for _, k in samples], True, Kind.PAD)
        return dict(input_ids=input_ids, attention_mask=(kinds != Kind.PAD).long(),
                    position_ids=position_ids(kinds, self.spec["n_ctx"], self.P, self.countdown), kinds=kinds,
                    labels=input_ids.masked_fill(~counted(kinds, loss), -100))

    def motion_room(self, prompt_len):
        """How many motion steps fit after an instruction of prompt_len tokens (<mot> included): the motion
        starts at motion_position(n_ctx) and ends with </mot> <eos> within the context; -1 when the
        instruction itself (and the length token, if any, which goes before the start) is longer than that."""
        n_ctx, start = self.spec["n_ctx"], motion_position(self.spec["n_ctx"])
        return -1 if prompt_len + len(self.length_ids[:1]) > start else (n_ctx - start - 2) // self.P

    @torch.no_grad()
    def generate(self, prompts, *, min_steps=1, max_steps=None, steps=None, temperature=1.0, top_k=0,
                 top_p=1.0, guidance=1.0, generator=None, keep=None):
        """Motion codes int64 [T, P] for each prompt (a caption, or (caption, parts)), decoded together
        (docs/sampling.md): </mot> only after whole steps of P codes and at least min_steps steps, forced at
        max_steps (default: what fits); steps=n: exactly n (each an int, or one per prompt); a length-token
        run writes <len T> first. temperature 0 is greedy, top_k 0 and top_p 1 are off; one `generator` per
        prompt makes its sample independent of the batch; guidance g != 1: classifier-free guidance
        (_logits); `keep` (per prompt None or (codes [T, P], mask [T, P] bool)): forced_codes."""
        draw = sampler(temperature, top_k, top_p, generator)
        prompts = [self.prompt_ids(p) if isinstance(p, str) else self.prompt_ids(*p) for p in prompts]
        B, P, G, dev = len(prompts), self.P, 1 + (guidance != 1), self.lm.device  # G rows a prompt
        limit, low = self._step_bounds(prompts, min_steps, max_steps, steps)
        kept_ids, kept, limit, low = forced_codes(keep, self, limit, low)
        ids, mask, pos = self._left_padded(prompts + [self.prompt_ids(None)] * B * (G - 1))  # guidance's last
        motion_pos = torch.full((G * B, 1), motion_position(self.spec["n_ctx"]), device=dev)  # next code's
        n = torch.zeros(B, dtype=torch.long, device=dev)  # codes emitted per row
        done, out, training = torch.zeros(B, dtype=torch.bool, device=dev), [], self.lm.training
        # every token fed: the prompts, the length token, the codes and the last row's </mot>
        cache = filled_cache(self.lm.config, ids.shape[1] + 2 + int(limit.max()) * P)
        self.lm.eval()
        try:
            if len(self.length_ids):  # the length token first, then the motion has that many steps
                logits, cache = self._logits(ids, mask, pos, cache, guidance)
                tok, low, limit, start = self._length(logits, low, limit, draw)
                ids, mask, pos = tok.repeat(G)[:, None], F.pad(mask, (0, 1), value=1), pos[:, -1:] + 1
                motion_pos = start.repeat(G, 1)
            while not done.all():
                logits, cache = self._logits(ids, mask, pos, cache, guidance)
                whole = n % P == 0
                allowed = torch.zeros_like(logits, dtype=torch.bool)
                allowed[:, self.motion_ids] = ~(whole & (n // P >= limit))[:, None]
                allowed[:, self.end_mot_id] = whole & (n // P >= low)
                tok = draw(logits.masked_fill(~allowed, -torch.inf))
                # the kept codes (forced_codes), in place of the draws (and fed to both rows alike)
                at = torch.arange(B, device=dev), (n // P).clamp(max=kept.shape[1] - 1), n % P
                tok = torch.where(kept[at] & (n // P < kept.shape[1]), kept_ids[at], tok)
                n += (~done & (tok != self.end_mot_id)).long()
                done |= tok == self.end_mot_id
                out.append(tok)
                # finished rows are fed along unchanged, their positions held so that they stay in range
                ids, mask, pos = tok.repeat(G)[:, None], F.pad(mask, (0, 1), value=1), motion_pos
                motion_pos = motion_pos + (~done).repeat(G)[:, None].long()
        finally:
            self.lm.train(training)
        codes = self.code_of[torch.stack(out, 1).cpu()]
        return [codes[b, :n[b]].view(-1, P).numpy() for b in range(B)]

    def _logits(self, ids, mask, pos, cache, guidance):
        """One cached forward -> (the next token's logits [B, V], the cache). Guidance g != 1: the rows are
        the B prompts, then B unconditional ones (bare <mot>, train.py --uncond_prob) fed the same tokens,
        and the logits log p_u + g (log p_c − log p_u): classifier-free guidance (Ho & Salimans 2022)."""
        res = self.lm(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        logits = res.logits[:, -1].float()
        if guidance != 1:
            cond, uncond = (half.log_softmax(-1) for half in logits.chunk(2))
            logits = uncond + guidance * (cond - uncond)
        return logits, res.cache

    def _length(self, logits, low, limit, draw):
        """The length prelude: <len T> drawn among the lengths in [low, limit] (the last token: at least
        that many steps) -> (the tokens [B], low and limit set to T, the first code's position [B, 1])."""
        D, dev = len(self.length_ids), logits.device
        lengths, length_ids = torch.arange(1, D + 1, device=dev), self.length_ids.to(dev)
        allowed = torch.zeros_like(logits, dtype=torch.bool)
        allowed[:, length_ids] = (lengths >= low[:, None].clamp(max=D)) & (lengths <= limit[:, None])
        tok = draw(logits.masked_fill(~allowed, -torch.inf))
        T = lengths[(tok[:, None] == length_ids).int().argmax(1)]  # T < D fixes the length
        start = motion_start(self.spec["n_ctx"], self.P, T[:, None], self.countdown)
        return tok, torch.where(T < D, T, low.clamp(min=D)), torch.where(T < D, T, limit), start

    def _left_padded(self, rows):
        """Token lists -> ids, attention mask, position ids [R, L], left-padded (each row starts at 0)."""
        dev, tensors = self.lm.device, [torch.tensor(r) for r in rows]
        ids = pad_sequence(tensors, True, self.pad_id, "left").to(dev)
        mask = pad_sequence([torch.ones_like(t) for t in tensors], True, 0, "left").to(dev)
        return ids, mask, (mask.cumsum(1) - 1).clamp(min=0)

    def _step_bounds(self, prompts, min_steps, max_steps, steps=None):
        """Each row's (limit, low) in steps: what fits (motion_room), at most max_steps, and min_steps (each
        an int, or one per prompt; steps: both); one clear error where they cannot hold."""
        min_steps, max_steps = (min_steps, max_steps) if steps is None else (steps, steps)
        n_ctx, rooms = self.spec["n_ctx"], [self.motion_room(len(p)) for p in prompts]
        if min(rooms) < 0:
            raise ValueError(f"an instruction of {len(prompts[rooms.index(-1)])} tokens is too long: the "
                             f"motion starts at position {motion_position(n_ctx)} (model.motion_position)")
        limit = torch.tensor(rooms, device=self.lm.device)
        if max_steps is not None:
            limit = torch.minimum(limit, torch.as_tensor(max_steps, device=limit.device))
        low = torch.as_tensor(min_steps, device=limit.device).expand_as(limit).clone()
        bad = torch.nonzero((low < 1) | (limit < low)).flatten().tolist()
        if bad:
            raise ValueError(f"cannot generate {low[bad[0]].item()} steps for prompt {bad[0]}: at most "
                             f"{limit[bad[0]].item()} fit (context {n_ctx}, max_steps {max_steps})")
        return limit, low

    def save(self, run_dir, state_dict=None, weights=True):
        """run_dir/model/ (Hugging Face, safetensors), text_tokenizer/ and motion_vocab.json, each put in
        place whole. `state_dict`: the weights to write, in their dtype (train.py's, gathered under FSDP);
        weights=False: no model/ (a run's start: its first evaluation writes it)."""
        run_dir = Path(run_dir)
        for name, write in (("model", lambda d: self._save_weights(d, state_dict)),
                            ("text_tokenizer", self.text.save))[not weights:]:
            tmp = make_temp_dir(run_dir / name)
            write(tmp)
            replace_dir(tmp, run_dir / name)
        write_json(run_dir / "motion_vocab.json", dict(
            K=self.K, P=self.P, motion_ids=self.motion_ids.tolist(), mot_id=self.mot_id,
            end_mot_id=self.end_mot_id, eos_id=self.eos_id, pad_id=self.pad_id, mode=self.mode,
            length_ids=self.length_ids.tolist(), family=self.spec["family"],
            text_tokenizer="tiktoken" if self.text.files else "hf", spec=self.spec))

    def _save_weights(self, folder, state_dict):
        """save_pretrained into `folder`, its config.json naming the dtype the weights are written in
        (save_pretrained names the live model's, and empties the dict it is given)."""
        dtype = next(iter(state_dict.values())).dtype if state_dict else None
        self.lm.save_pretrained(folder, state_dict=state_dict)
        if dtype is not None:
            config = json.loads((folder / "config.json").read_text())
            config["dtype"] = str(dtype).removeprefix("torch.")
            write_json(folder / "config.json", config)


def build(model="gpt2-tiny", *, K, P, captions, init="auto", motion_vocab="add", seed=0, length_token=False,
          countdown=False):
    """A MotionLM for codebook size K and P codes per step. `model`: a registry name or a local Hugging Face
    folder; init "pretrained" loads its weights, "scratch" draws the same architecture at random (Table 9),
    "auto" is scratch for the tiny models and pretrained otherwise. `captions` (train captions and part texts)
    train the tiny models' BPE (512 tokens) and, for motion_vocab="reuse", count the text tokens.
    length_token: the model writes the motion's length first (LENGTH_TOKENS more new rows); countdown (with
    it): the motion's positions count down to its end (position_ids)."""
    if countdown and not length_token:
        raise ValueError("countdown needs the length token: --length_token=True")
    spec = model_spec(model) | {"countdown": countdown}
    if init == "auto":
        init = "scratch" if spec["hf_id"] is None else "pretrained"
    if init not in ("scratch", "pretrained") or motion_vocab not in ("add", "reuse"):
        raise ValueError(f"init must be auto|scratch|pretrained and motion_vocab add|reuse: {init!r}, "
                         f"{motion_vocab!r}")
    if init == "pretrained" and spec["hf_id"] is None:
        raise ValueError(f"{model} has no pretrained weights: use init=scratch")
    captions = [normalise_caption(c) for c in captions]
    folder = None
    if spec["hf_id"] is not None:
        try:
            folder = Path(spec["hf_id"]) if spec["name"] not in REGISTRY else hub_snapshot(spec)
        except FileNotFoundError:  # a GPT-2 from scratch can take its tokenizer from tiktoken's cache
            if init == "pretrained" or spec["family"] == "llama":
                raise
    if spec["hf_id"] is None:  # the BPE learns from the instructions the model will read
        text = train_bpe([instruction_text(c, template=i % len(TEMPLATES)) for i, c in enumerate(captions)],
                         TINY_BPE)
    elif spec["family"] == "llama":
        text = TextTokenizer(AutoTokenizer.from_pretrained(folder, local_files_only=True))
    elif folder is not None and (folder / "merges.txt").is_file():
        text = bpe_from_files(folder / "vocab.json", folder / "merges.txt")
    else:
        text = bpe_from_files()  # tiktoken's cached gpt2 files

    with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's random state
        torch.manual_seed(seed)
        lm = None
        if init == "pretrained":
            lm = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        n_text = lm.get_input_embeddings().weight.shape[0] if lm else spec["vocab_size"] or text.n_vocab
        # new rows after the text vocabulary: <mot>, </mot>, [<pad>], then the K codes (add)
        mot_id, end_mot_id = n_text, n_text + 1
        pad_id = n_text + 2 if text.pad_id is None else text.pad_id
        first = n_text + 2 + (text.pad_id is None)
        if motion_vocab == "add":
            motion_ids, used = list(range(first, first + K)), first + K
        else:
            forms = [instruction_text(c, template=t) for t in range(len(TEMPLATES)) for c in captions]
            forms.append(instruction_text(captions[0], dict.fromkeys(PARTS, captions[0])))  # the part labels
            counts = Counter(i for ids in text.encode_batch(forms) for i in ids)  # the unseen ones are free
            motion_ids = reuse_ids(counts, [i for i in range(text.n_vocab) if i not in text.special_ids], K)
            used = first
        length_ids = list(range(used, used + LENGTH_TOKENS * length_token))
        vocab = grown_vocab(n_text, K, motion_vocab, len(length_ids), text.pad_id is not None)
        if lm is None:  # from scratch every row is random: build at the full size
            lm = AutoModelForCausalLM.from_config(hf_config(spec, vocab), dtype=torch.float32)
        else:  # fresh_rows: transformers' default (mean_resizing) makes the new rows equal to within ~1e-6
            lm.resize_token_embeddings(vocab, mean_resizing=False)
            fresh_rows(lm, torch.arange(n_text, vocab))
    lm.config.pad_token_id, lm.config.eos_token_id = pad_id, text.eos_id
    return MotionLM(lm, text, K=K, P=P, motion_ids=motion_ids, mot_id=mot_id, end_mot_id=end_mot_id,
                    pad_id=pad_id, mode=motion_vocab, spec={**spec, "vocab_size": vocab},
                    length_ids=length_ids)


def load(run_dir, device="cpu", weights=True, config=None):
    """The MotionLM that save() wrote to run_dir, on `device` in the dtype to compute in there (bf16 on a GPU
    that has it, else fp32; common.bf16_on); a damaged file fails naming it. weights=False: its model on the
    meta device (no memory; from `config`, else model/config.json), for train_scale.materialise to fill."""
    run_dir = Path(run_dir)
    needed = ("motion_vocab.json", "text_tokenizer") + (("model/config.json",) if config is None else ())
    for name in needed:
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} not found: a model run folder holds model/, "
                                    "text_tokenizer/ and motion_vocab.json")
    remake = f"rerun python train.py --run_name={run_dir.name}"
    vocab_file = run_dir / "motion_vocab.json"
    v = read_run_file(vocab_file, remake)
    if v["spec"].get("motion_clock") is False:  # trained at natural positions, which this code never gives
        raise ValueError(f"{vocab_file}: motion_clock=False: an ablation deleted after commit a4c2a31 (its "
                         "figures: docs/results/choices_motion_clock.json); train a new run")
    folder = run_dir / "text_tokenizer"
    if v["text_tokenizer"] == "tiktoken":
        text = read_run_file(folder, remake, lambda f: bpe_from_files(f / "vocab.json", f / "merges.txt"))
    else:
        text = read_run_file(folder, remake, lambda f: TextTokenizer(AutoTokenizer.from_pretrained(
            f, local_files_only=True)))
    if config is None:
        config = read_run_file(run_dir / "model" / "config.json", remake,
                               lambda f: AutoConfig.from_pretrained(f.parent, local_files_only=True))
    if weights:
        for file in sorted((run_dir / "model").glob("*.safetensors")):  # safe_open checks header and size
            read_run_file(file, remake, lambda f: safe_open(f, "pt").keys())
        device = torch.device(device)
        lm = AutoModelForCausalLM.from_pretrained(run_dir / "model", local_files_only=True, dtype=(
            torch.bfloat16 if bf16_on(device) else torch.float32)).to(device)
    else:
        with torch.device("meta"):
            lm = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return MotionLM(lm, text, K=v["K"], P=v["P"], motion_ids=v["motion_ids"], mot_id=v["mot_id"],
                    end_mot_id=v["end_mot_id"], pad_id=v["pad_id"], mode=v["mode"], spec=v["spec"],
                    length_ids=v.get("length_ids", []))


def token_losses(logits, input_ids):
    """Per-token cross-entropy [B, L] in nats of input_ids[:, t] given logits[:, t−1]; column 0 is 0."""
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten(), reduction="none")
    return F.pad(ce.view(input_ids.shape[0], -1), (1, 0))
