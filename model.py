"""The large motion model (paper §4.1, §5.1): a Hugging Face causal LM (GPT-2 family, Llama-2/3) that speaks
motion as a foreign language, with its text tokenizer, the motion vocabulary, the instruction format, the
loss masks and constrained generation. train.py fine-tunes it, sample.py and eval.py generate with it.

One training sample (docs/design.md), time-major, the P part codes of a step together:

    <text tokens of the instruction> <mot> c(0,0) … c(0,P−1) c(1,0) … c(T−1,P−1) </mot> <eos>

The instruction is a template around the normalised caption, e.g. "generate a motion: a man walks forward."
(every pair is a question–answer instance {X_Q, X_M}, §4.1), sometimes with MotionBase's part texts appended
("… upper body: the arms swing. lower body: the legs take steps."). Code c of the tokenizer's codebook is
vocabulary id motion_ids[c]: with motion_vocab="add" a block of K new rows appended to the embedding and the
head; with "reuse" (the paper's choice for its LFQ codebook, §5.1) the K least frequent text tokens of the
captions, repurposed. <mot> and </mot> are always new tokens (§4.1), and <pad> where the family lacks one.

Training minimises eq. (1), L(Θ) = −Σ_j log P_Θ(y_j | desc, ŷ_{1:j−1}); collate() marks which tokens count:
loss="whole" counts instruction and motion tokens (the paper's choice: Table 10, better than "motion", which
counts only the motion codes and </mot>). generate() is constrained, so every output parses into codes [T, P].

    lm = model.build("gpt2-tiny", K=1024, P=6, captions=train_texts)      # or "gpt2-medium", a local folder
    ids, kinds = lm.sample_ids("A man walks forward.", codes)              # codes int [T, P]
    batch = lm.collate([(ids, kinds), ...])                                # input_ids, attention_mask, labels
    codes = lm.generate(["a man waves."], temperature=0)[0]                # int64 [T, P]
    lm.save("out/lm/default"); lm = model.load("out/lm/default")
"""

from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GPT2Config, LlamaConfig
from transformers.utils import logging as hf_logging

from common import make_temp_dir, read_run_file, replace_dir, write_json
from support.editing import forced_codes
from support.pretrained import grow_vocab, hub_snapshot
from support.text_tokenizer import TextTokenizer, bpe_from_files, tiktoken_gpt2_files, train_bpe

hf_logging.disable_progress_bar()  # one-shard "Loading weights" / "Writing model shards" bars: noise


# registry: each named model's architecture (--init=scratch, memory estimates, the benchmark need no weights)
def _gpt2(hf_id, n_layer, n_embd, n_head, n_ctx=1024, vocab_size=50257, lr=2e-4, dropout=0.1):
    return dict(family="gpt2", hf_id=hf_id, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_ctx=n_ctx,
                vocab_size=vocab_size, lr=lr, dropout=dropout)


def _llama(hf_id, n_layer, n_embd, n_head, n_kv_head, n_inner, n_ctx, vocab_size, rope, lr=2e-5):
    return dict(family="llama", hf_id=hf_id, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                n_kv_head=n_kv_head, n_inner=n_inner, n_ctx=n_ctx, vocab_size=vocab_size, rope=rope, lr=lr)


LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
ROPE = {"rope_type": "default", "rope_theta": 10000.0}
# lr: the paper's fine-tuning rates (§5.1: 2e-4 GPT-2, 2e-5 Llama); tiny models train from scratch at 3e-3
# (on synth, 3e-3 reached a val motion loss of 2.40 after 100 steps of 32 where 1e-3 reached 3.45).
# Tiny models have no hf_id (no weights) and vocab_size None: their BPE is trained on the captions in build().
REGISTRY = {
    "gpt2": _gpt2("gpt2", 12, 768, 12),
    "gpt2-medium": _gpt2("gpt2-medium", 24, 1024, 16),
    "gpt2-large": _gpt2("gpt2-large", 36, 1280, 20),
    "llama2-7b": _llama("meta-llama/Llama-2-7b-hf", 32, 4096, 32, 32, 11008, 4096, 32000, ROPE),
    "llama2-13b": _llama("meta-llama/Llama-2-13b-hf", 40, 5120, 40, 40, 13824, 4096, 32000, ROPE),
    "llama3.1-8b": _llama("meta-llama/Llama-3.1-8B", 32, 4096, 32, 8, 14336, 131072, 128256, LLAMA3_ROPE),
    "gpt2-tiny": _gpt2(None, 4, 192, 6, n_ctx=512, vocab_size=None, lr=3e-3, dropout=0.0),
    "llama-tiny": _llama(None, 4, 192, 6, 2, 512, 512, None, ROPE, lr=3e-3),
}
VOCAB_MULTIPLE = 64  # the grown vocabulary is rounded up (nanoGPT's 50304): aligned head matmuls on a GPU


def model_spec(name_or_path):
    """The registry entry of a named model, or the spec of a local Hugging Face folder (from its config)."""
    if name_or_path in REGISTRY:
        return {"name": name_or_path, **REGISTRY[name_or_path]}
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise ValueError(f"unknown model {name_or_path!r}: one of {', '.join(REGISTRY)}, "
                         "or a local Hugging Face folder (with config.json)")
    c = AutoConfig.from_pretrained(path, local_files_only=True)
    if c.model_type == "gpt2":
        spec = _gpt2(str(path), c.n_layer, c.n_embd, c.n_head, c.n_positions, c.vocab_size,
                     dropout=c.resid_pdrop)
    elif c.model_type == "llama":
        spec = _llama(str(path), c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
                      c.num_key_value_heads, c.intermediate_size, c.max_position_embeddings, c.vocab_size,
                      dict(c.rope_parameters))
    else:
        raise ValueError(f"{path}: model_type {c.model_type!r} is not supported (gpt2, llama)")
    return {"name": str(path), **spec}


def hf_config(spec, vocab_size=None):
    """A transformers config of the spec's architecture (no weights needed)."""
    vocab_size = vocab_size or spec["vocab_size"]
    if vocab_size is None:
        raise ValueError(f"{spec['name']}: the vocabulary size comes from its trained BPE; pass vocab_size")
    if spec["family"] == "gpt2":
        d = spec["dropout"]
        return GPT2Config(n_layer=spec["n_layer"], n_embd=spec["n_embd"], n_head=spec["n_head"],
                          n_positions=spec["n_ctx"], vocab_size=vocab_size, resid_pdrop=d, embd_pdrop=d,
                          attn_pdrop=d, bos_token_id=None, eos_token_id=None)
    return LlamaConfig(num_hidden_layers=spec["n_layer"], hidden_size=spec["n_embd"],
                       num_attention_heads=spec["n_head"], num_key_value_heads=spec["n_kv_head"],
                       intermediate_size=spec["n_inner"], max_position_embeddings=spec["n_ctx"],
                       vocab_size=vocab_size, rope_parameters=dict(spec["rope"]), rms_norm_eps=1e-5,
                       bos_token_id=None, eos_token_id=None)


# instructions: every pair is a question-answer instance {X_Q, X_M} (§4.1), worded by one of a few templates
TEMPLATES = [
    "generate a motion: {text}",
    "show me how a person moves: {text}",
    "what motion matches this description? {text}",
]
PARTS = ("upper", "lower")  # MotionBase's hierarchical texts: a whole-body caption plus one per body part

# Position ids, the motion clock: the instruction sits at its natural positions 0, 1, ...; the motion (its
# codes, </mot>, <eos>) starts at a fixed position, motion_position(n_ctx) = 3/8 of the context, at most 512,
# whatever the instruction's length: the i-th motion token has position motion_position + i. With learned
# absolute positions (GPT-2) a code's position embedding then says how far into the motion it is. When the
# motion went on right after the instruction (5 to 166 tokens long on synth), the model had to subtract the
# instruction's length first; with the fixed start it reaches a lower val loss in the same steps (docs/lm.md).
# The token sequence is unchanged (docs/design.md). Instructions longer than motion_position tokens are not
# used (train.py counts them); the motion gets the rest of the context.
def motion_position(n_ctx):  # at most 512: a long-context LLM's motion should not start far from its prompt
    return min(n_ctx * 3 // 8, 512)


def position_ids(kinds, n_ctx, clock=True):
    """kinds [B, L] (collate's: 2 = motion code) -> position ids [B, L]: natural up to a row's first code,
    motion_position(n_ctx) + i for the i-th token from there; padding stays below n_ctx. clock=False (the
    ablation, train.py --motion_clock=False): natural positions throughout."""
    L = kinds.shape[1]
    natural = torch.arange(L).expand_as(kinds)
    is_code = kinds == 2
    first = torch.where(is_code.any(1), is_code.int().argmax(1), L)[:, None]  # rows with no code: natural
    motion = (motion_position(n_ctx) if clock else first) + natural - first
    return torch.where(natural >= first, motion, natural).clamp(max=n_ctx - 1)


def normalise_caption(text):
    """The one normalisation of captions, for training and sampling alike: single spaces, lower case."""
    text = " ".join(text.split()).lower()
    if not text:
        raise ValueError("empty caption")
    return text


def instruction_text(caption, parts=None, template=0):
    """The instruction X_Q: a template around the normalised caption, and the part texts if given."""
    text = normalise_caption(caption)
    for name in PARTS if parts else ():
        text += f" {name} body: {normalise_caption(parts[name])}"
    return TEMPLATES[template].format(text=text)


def reuse_ids(counts, candidates, K):
    """The K least frequent of `candidates` under `counts` (token id -> count): motion_vocab="reuse" (§5.1).
    Ties go to the higher id: BPE learns its rarest merges last. Every chosen token must be unused."""
    chosen = sorted(candidates, key=lambda i: (counts.get(i, 0), -i))[:K]
    missing = K - sum(counts.get(i, 0) == 0 for i in chosen)
    if missing:
        raise ValueError(f"motion_vocab=reuse needs {K} text tokens that the captions never use, but the "
                         f"tokenizer has only {K - missing} ({missing} missing): use motion_vocab=add")
    return sorted(chosen)


class MotionLM:
    """The LM, its text tokenizer and the motion vocabulary (motion_ids[c] is code c's vocabulary id)."""

    def __init__(self, lm, text, *, K, P, motion_ids, mot_id, end_mot_id, pad_id, mode, spec):
        self.lm, self.text, self.K, self.P, self.mode, self.spec = lm, text, K, P, mode, spec
        self.clock = spec.get("motion_clock", True)  # False: natural positions (an ablation)
        self.motion_ids = torch.as_tensor(motion_ids, dtype=torch.long)
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
        """One training sequence and the kind of each token: 1 instruction (with <mot>, <eos>), 2 motion code,
        3 </mot>. caption None: no instruction (an unconditional sample, for classifier-free guidance)."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.P or codes.shape[0] == 0:
            raise ValueError(f"codes must be [T >= 1, P={self.P}], got {list(codes.shape)}")
        if codes.min() < 0 or codes.max() >= self.K:
            raise ValueError(f"codes must lie in [0, {self.K}), got {codes.min()}..{codes.max()}")
        prompt = self.prompt_ids(caption, parts, template)
        motion = self.motion_ids.numpy()[codes.reshape(-1)].tolist()  # time-major: a step's P codes together
        kinds = [1] * len(prompt) + [2] * len(motion) + [3, 1]
        return prompt + motion + [self.end_mot_id, self.eos_id], kinds

    def text_ids(self, text):
        """A plain text as a training sequence (text-only pretraining): [<bos>] + its tokens + <eos>, all of
        kind 1."""
        bos = [] if self.text.bos_id is None else [self.text.bos_id]
        ids = bos + self.text.encode(text) + [self.eos_id]
        return ids, [1] * len(ids)

    def collate(self, samples, loss="whole"):
        """Right-padded LongTensors input_ids, attention_mask, position_ids (position_ids()), kinds (0 on
        padding) and labels: input_ids where the token counts, else -100: "whole" counts every token (Table
        10), "motion" the codes and </mot>. The labels are not shifted: Hugging Face models shift them
        inside."""
        if loss not in ("whole", "motion"):
            raise ValueError(f"loss must be 'whole' or 'motion', got {loss!r}")
        B, L = len(samples), max(len(ids) for ids, _ in samples)
        input_ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        kinds = torch.zeros(B, L, dtype=torch.long)
        for b, (ids, k) in enumerate(samples):
            input_ids[b, :len(ids)], kinds[b, :len(ids)] = torch.tensor(ids), torch.tensor(k)
        counted = kinds > 0 if loss == "whole" else kinds >= 2
        return dict(input_ids=input_ids, attention_mask=(kinds > 0).long(),
                    position_ids=position_ids(kinds, self.spec["n_ctx"], self.clock), kinds=kinds,
                    labels=input_ids.masked_fill(~counted, -100))

    def motion_room(self, prompt_len):
        """How many motion steps fit after an instruction of prompt_len tokens (<mot> included): the motion
        starts at motion_position(n_ctx) and ends with </mot> <eos> within the context; -1 when the
        instruction itself is longer than that start."""
        start = motion_position(self.spec["n_ctx"]) if self.clock else prompt_len
        return -1 if prompt_len > start else (self.spec["n_ctx"] - start - 2) // self.P

    @torch.no_grad()
    def generate(self, prompts, *, min_steps=1, max_steps=None, steps=None, temperature=1.0, top_k=0,
                 top_p=1.0, guidance=1.0, generator=None, template=0, keep=None):
        """Motion codes int64 [T, P] for each prompt (a caption, or (caption, parts)): batched with left
        padding and the KV cache, each row's motion from motion_position(n_ctx) as in training. Constrained:
        after <mot> only motion codes, </mot> only after whole steps of P codes and at least min_steps steps,
        forced at max_steps (default: what fits); steps=n gives exactly n. temperature 0 is greedy; top_k 0
        and top_p 1 are off. guidance g != 1 is classifier-free guidance (Ho & Salimans 2022): each prompt
        also runs without its instruction (a second row fed the same tokens), and the next token is drawn from
        log p_u + g (log p_c - log p_u) (train.py --uncond_prob teaches the model the bare prompt). A list of
        `generator`s, one per prompt, makes each prompt's sample independent of the rest of the batch. `keep`
        (editing; per prompt None or (codes [T, P], mask [T, P] bool)): where mask is true the token is the
        source's code, not a draw (support/editing.py)."""
        if steps is not None:
            min_steps = max_steps = steps
        if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0, top_k >= 0 and 0 < top_p <= 1, got {temperature}, "
                             f"{top_k}, {top_p}")
        prompts = [self.prompt_ids(p, template=template) if isinstance(p, str) else
                   self.prompt_ids(*p, template=template) for p in prompts]
        B, P, dev = len(prompts), self.P, self.lm.device
        guided = guidance != 1
        rows = prompts + [self.prompt_ids(None)] * B if guided else prompts  # conditional rows, then the rest
        R, L = len(rows), max(map(len, rows))
        # each row's longest motion: T·P codes, </mot> and <eos> from the motion's start to the context's end
        rooms = [self.motion_room(len(p)) for p in prompts]
        if min(rooms) < 0:
            raise ValueError(f"an instruction of {len(prompts[rooms.index(-1)])} tokens is too long: the "
                             f"motion starts at position {motion_position(self.spec['n_ctx'])} "
                             f"(model.motion_position)")
        limit = torch.tensor(rooms, device=dev)
        if max_steps is not None:
            limit = limit.clamp(max=max_steps)
        if min_steps < 1 or (limit < min_steps).any():
            raise ValueError(f"cannot generate {min_steps} steps: at most {limit.min().item()} fit "
                             f"(context {self.spec['n_ctx']}, max_steps {max_steps})")
        forced_ids, forced, limit, low = forced_codes(keep, self, limit, torch.full_like(limit, min_steps))
        ids = torch.full((R, L), self.pad_id, dtype=torch.long)
        mask = torch.zeros(R, L, dtype=torch.long)
        for b, p in enumerate(rows):
            ids[b, L - len(p):], mask[b, L - len(p):] = torch.tensor(p), 1
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(1) - 1).clamp(min=0)  # left padding: each prompt starts at position 0
        motion_pos = (torch.full((R, 1), motion_position(self.spec["n_ctx"]), device=dev) if self.clock else
                      mask.sum(1, keepdim=True))  # the next token's
        V = self.lm.config.vocab_size
        is_code = torch.zeros(V, dtype=torch.bool, device=dev)
        is_code[self.motion_ids] = True
        n = torch.zeros(B, dtype=torch.long, device=dev)  # codes emitted per row
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        out, cache, training = [], None, self.lm.training
        self.lm.eval()
        try:
            while not done.all():
                res = self.lm(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache,
                              use_cache=True)
                cache, logits = res.cache, res.logits[:, -1].float()
                if guided:
                    cond, uncond = logits[:B].log_softmax(-1), logits[B:].log_softmax(-1)
                    logits = uncond + guidance * (cond - uncond)
                whole = n % P == 0
                allowed = is_code.expand(B, V) & ~(whole & (n // P >= limit))[:, None]
                allowed[:, self.end_mot_id] = whole & (n // P >= low)
                tok = _pick(logits.masked_fill(~allowed, -torch.inf), temperature, top_k, top_p, generator)
                if keep is not None:  # the kept codes, in place of the draws (and fed to both rows alike)
                    at = torch.arange(B, device=dev), (n // P).clamp(max=forced.shape[1] - 1), n % P
                    tok = torch.where(forced[at] & (n // P < forced.shape[1]), forced_ids[at], tok)
                ended = tok == self.end_mot_id
                n += (~done & ~ended).long()
                done |= ended
                out.append(tok)
                # finished rows are fed along unchanged, their positions held so that they stay in range
                feed, running = (torch.cat([tok, tok]), torch.cat([~done, ~done])) if guided else (tok, ~done)
                ids, mask, pos = feed[:, None], F.pad(mask, (0, 1), value=1), motion_pos
                motion_pos = motion_pos + running[:, None].long()
        finally:
            self.lm.train(training)
        code_of = torch.full((V,), -1, dtype=torch.long, device=dev)
        code_of[self.motion_ids] = torch.arange(self.K, device=dev)
        toks = code_of[torch.stack(out, 1)]
        return [toks[b, :n[b]].view(-1, P).cpu().numpy() for b in range(B)]

    def save(self, run_dir, state_dict=None):
        """run_dir/model/ (a Hugging Face folder, safetensors), run_dir/text_tokenizer/ and
        run_dir/motion_vocab.json, each put in place whole. `state_dict`: a full state dict gathered
        elsewhere (FSDP rank 0)."""
        run_dir = Path(run_dir)
        for name, write in (("model", lambda d: self.lm.save_pretrained(d, state_dict=state_dict)),
                            ("text_tokenizer", self.text.save)):
            tmp = make_temp_dir(run_dir / name)
            write(tmp)
            replace_dir(tmp, run_dir / name)
        write_json(run_dir / "motion_vocab.json", dict(
            K=self.K, P=self.P, motion_ids=self.motion_ids.tolist(), mot_id=self.mot_id,
            end_mot_id=self.end_mot_id, eos_id=self.eos_id, pad_id=self.pad_id, mode=self.mode,
            family=self.spec["family"], text_tokenizer="tiktoken" if self.text.files else "hf",
            spec=self.spec))


def build(model="gpt2-tiny", *, K, P, captions, init="auto", motion_vocab="add", bpe_vocab_size=512,
          dtype=None, seed=0, motion_clock=True):
    """A MotionLM for codebook size K and P codes per step. `model`: a registry name or a local Hugging Face
    folder; init "pretrained" loads its weights, "scratch" draws the same architecture at random (Table 9),
    "auto" is scratch for the tiny models and pretrained otherwise. `captions` (train captions and part texts)
    train the tiny models' BPE and, for motion_vocab="reuse", count the text tokens. dtype None = fp32."""
    spec = model_spec(model) | {"motion_clock": motion_clock}
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
                         bpe_vocab_size)
    elif spec["family"] == "llama":
        text = TextTokenizer(AutoTokenizer.from_pretrained(folder, local_files_only=True))
    elif folder is not None and (folder / "merges.txt").is_file():
        text = bpe_from_files(folder / "vocab.json", folder / "merges.txt")
    else:
        text = bpe_from_files(*tiktoken_gpt2_files())

    with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's random state
        torch.manual_seed(seed)
        lm = None
        if init == "pretrained":
            lm = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                      dtype=dtype or torch.float32)
        n_text = lm.get_input_embeddings().weight.shape[0] if lm else spec["vocab_size"] or text.n_vocab
        # new rows after the text vocabulary: <mot>, </mot>, [<pad>], then the K codes (add)
        mot_id, end_mot_id = n_text, n_text + 1
        pad_id = n_text + 2 if text.pad_id is None else text.pad_id
        first = n_text + 2 + (text.pad_id is None)
        if motion_vocab == "add":
            motion_ids, used = list(range(first, first + K)), first + K
        else:
            counts = _count_tokens(text, captions)
            motion_ids = reuse_ids(counts, [i for i in range(text.n_vocab) if i not in text.special_ids], K)
            used = first
        vocab = -(-used // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
        if lm is None:  # from scratch every row is random: build at the full size
            lm = AutoModelForCausalLM.from_config(hf_config(spec, vocab), dtype=dtype or torch.float32)
        else:
            grow_vocab(lm, vocab)
    lm.config.pad_token_id, lm.config.eos_token_id = pad_id, text.eos_id
    return MotionLM(lm, text, K=K, P=P, motion_ids=motion_ids, mot_id=mot_id, end_mot_id=end_mot_id,
                    pad_id=pad_id, mode=motion_vocab, spec={**spec, "vocab_size": vocab})


def load(run_dir, device="cpu", dtype=None):
    """The MotionLM that save() wrote to run_dir (dtype None: as saved); a damaged file fails naming it."""
    run_dir = Path(run_dir)
    for name in ("motion_vocab.json", "model/config.json", "text_tokenizer"):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} not found: a model run folder holds model/, "
                                    "text_tokenizer/ and motion_vocab.json")
    remake = f"rerun python train.py --run_name={run_dir.name}"
    v = read_run_file(run_dir / "motion_vocab.json", remake)
    folder = run_dir / "text_tokenizer"
    if v["text_tokenizer"] == "tiktoken":
        text = read_run_file(folder, remake, lambda f: bpe_from_files(f / "vocab.json", f / "merges.txt"))
    else:
        text = read_run_file(folder, remake, lambda f: TextTokenizer(AutoTokenizer.from_pretrained(
            f, local_files_only=True)))
    read_run_file(run_dir / "model" / "config.json", remake)
    for weights in sorted((run_dir / "model").glob("*.safetensors")):  # safe_open checks header and size
        read_run_file(weights, remake, lambda f: safe_open(f, "pt").keys())
    lm = AutoModelForCausalLM.from_pretrained(run_dir / "model", local_files_only=True, dtype=dtype or "auto")
    return MotionLM(lm.to(device), text, K=v["K"], P=v["P"], motion_ids=v["motion_ids"], mot_id=v["mot_id"],
                    end_mot_id=v["end_mot_id"], pad_id=v["pad_id"], mode=v["mode"], spec=v["spec"])


def _count_tokens(text, captions):
    """Text-token counts over every form in which the captions reach the model: each template, and the part
    labels (a token never seen here is free to become a motion code)."""
    forms = [instruction_text(c, template=t) for t in range(len(TEMPLATES)) for c in captions]
    forms += [instruction_text(c, dict.fromkeys(PARTS, c)) for c in captions[:1]]
    return Counter(i for ids in text.encode_batch(forms) for i in ids)


def _pick(logits, temperature, top_k, top_p, generator):
    """One token per row from logits [B, V] already masked to the allowed tokens (so top-k and top-p choose
    among those): greedy at temperature 0, else a sample from the tempered, truncated softmax."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k:
        kth = logits.topk(min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p < 1:  # nucleus: the most likely tokens whose mass reaches top_p (the first always stays)
        sorted_logits, order = logits.sort(-1, descending=True)
        p = sorted_logits.softmax(-1)
        sorted_logits = sorted_logits.masked_fill(p.cumsum(-1) - p >= top_p, -torch.inf)
        logits = logits.scatter(-1, order, sorted_logits)
    probs = logits.softmax(-1)
    if isinstance(generator, (list, tuple)):  # one per row: a row's draws do not depend on the other rows
        return torch.cat([torch.multinomial(p[None], 1, generator=g)[0] for p, g in zip(probs, generator,
                                                                                         strict=True)])
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def token_losses(logits, input_ids):
    """Per-token cross-entropy [B, L] in nats of input_ids[:, t] given logits[:, t−1]; column 0 is 0."""
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten(), reduction="none")
    return F.pad(ce.view(input_ids.shape[0], -1), (1, 0))
