"""The large motion model (paper §4.1, §5.1): a Hugging Face causal LM (GPT-2 family, Llama-2/3) that speaks
motion as a foreign language, with its text tokenizer, the motion vocabulary, the instruction format, the
loss masks and constrained generation. train.py fine-tunes it, sample.py and eval.py generate with it.

One training sample (docs/design.md), time-major, the P part codes of a step together:

    <text tokens of the instruction> <mot> [<len T>] c(0,0) … c(0,P−1) c(1,0) … c(T−1,P−1) </mot> <eos>

The instruction is a template around the normalised caption, e.g. "generate a motion: a man walks forward."
(every pair is a question–answer instance {X_Q, X_M}, §4.1), sometimes with MotionBase's part texts appended
("… upper body: the arms swing. lower body: the legs take steps."). Code c of the tokenizer's codebook is
vocabulary id motion_ids[c]: with motion_vocab="add" a block of K new rows appended to the embedding and the
head; with "reuse" (the paper's choice for its LFQ codebook, §5.1) the K least frequent text tokens of the
captions, repurposed. <mot> and </mot> are always new tokens (§4.1), and <pad> where the family lacks one.
With train.py --length_token (not in the paper) the model first writes the motion's length <len T> (one of
LENGTH_TOKENS new tokens, T steps; the last: that many or more), and the motion then has T steps: the length
is decided once, from the text, instead of at every step by whether to write </mot>.

Training minimises eq. (1), L(Θ) = −Σ_j log P_Θ(y_j | desc, ŷ_{1:j−1}); collate() marks which tokens count:
loss="whole" counts instruction and motion tokens (the paper's choice: Table 10, better than "motion", which
counts only the motion codes and </mot>). generate() is constrained, so every output parses into codes [T, P].

    lm = model.build("gpt2-tiny", K=1024, P=6, captions=train_texts)      # or "gpt2-medium", a local folder
    ids, kinds = lm.sample_ids("A man walks forward.", codes)              # codes int [T, P]
    batch = lm.collate([(ids, kinds), ...])                                # input_ids, attention_mask, labels
    codes = lm.generate(["a man waves."], temperature=0)[0]                # int64 [T, P]
    lm.save("out/lm/default"); lm = model.load("out/lm/default")
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from common import make_temp_dir, read_run_file, replace_dir, write_json
from support.editing import forced_codes
from support.pretrained import count_tokens, grow_vocab, hub_snapshot, reuse_ids
from support.registry import REGISTRY, VOCAB_MULTIPLE, hf_config, model_spec
from support.text_tokenizer import TextTokenizer, bpe_from_files, tiktoken_gpt2_files, train_bpe

hf_logging.disable_progress_bar()  # one-shard "Loading weights" / "Writing model shards" bars: noise


# the named models (gpt2 ... llama3.1-8b, gpt2-tiny, llama-tiny): their architectures, learning rates and
# configs are support/registry.py's REGISTRY, model_spec() and hf_config()


# instructions: every pair is a question-answer instance {X_Q, X_M} (§4.1), worded by one of a few templates
TEMPLATES = [
    "generate a motion: {text}",
    "show me how a person moves: {text}",
    "what motion matches this description? {text}",
]
PARTS = ("upper", "lower")  # MotionBase's hierarchical texts: a whole-body caption plus one per body part
LENGTH_TOKENS = 64  # <len 1> ... <len 64>: 4 frames a step, 12.8 s (HumanML3D's clips: at most 9.8 s)

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


def motion_end(n_ctx, P):
    """Where a counted-down motion's </mot> sits: after the most whole steps that fit from motion_position."""
    return motion_position(n_ctx) + (n_ctx - motion_position(n_ctx) - 2) // P * P


def position_ids(kinds, n_ctx, clock=True, countdown_P=0):
    """kinds [B, L] (collate's: 2 = motion code) -> position ids [B, L]: natural up to a row's first code,
    motion_position(n_ctx) + i for the i-th token from there; padding stays below n_ctx. clock=False (the
    ablation, train.py --motion_clock=False): natural positions throughout. countdown_P = P (train.py
    --countdown, with the length token): the motion of T < LENGTH_TOKENS steps ends at motion_end, so that a
    code's position says how many steps are left."""
    L = kinds.shape[1]
    natural = torch.arange(L).expand_as(kinds)
    is_code = kinds == 2
    first = torch.where(is_code.any(1), is_code.int().argmax(1), L)[:, None]  # rows with no code: natural
    start = torch.full_like(first, motion_position(n_ctx)) if clock else first
    if countdown_P:
        T = is_code.sum(1, keepdim=True) // countdown_P
        start = torch.where(T < LENGTH_TOKENS, motion_end(n_ctx, countdown_P) - T * countdown_P, start)
    motion = start + natural - first
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


class MotionLM:
    """The LM, its text tokenizer and the motion vocabulary (motion_ids[c] is code c's vocabulary id)."""

    def __init__(self, lm, text, *, K, P, motion_ids, mot_id, end_mot_id, pad_id, mode, spec, length_ids=()):
        self.lm, self.text, self.K, self.P, self.mode, self.spec = lm, text, K, P, mode, spec
        self.length_ids = torch.as_tensor(length_ids, dtype=torch.long)  # <len 1> ...; empty: no length token
        self.clock = spec.get("motion_clock", True)  # False: natural positions (an ablation)
        self.countdown = spec.get("countdown", False)  # the motion ends at motion_end (with length_ids)
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
        3 </mot>, 4 the length token. caption None: no instruction (an unconditional sample, for guidance)."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.P or codes.shape[0] == 0:
            raise ValueError(f"codes must be [T >= 1, P={self.P}], got {list(codes.shape)}")
        if codes.min() < 0 or codes.max() >= self.K:
            raise ValueError(f"codes must lie in [0, {self.K}), got {codes.min()}..{codes.max()}")
        prompt = self.prompt_ids(caption, parts, template)
        motion = self.motion_ids.numpy()[codes.reshape(-1)].tolist()  # time-major: a step's P codes together
        if len(self.length_ids):
            prompt.append(int(self.length_ids[min(len(codes), len(self.length_ids)) - 1]))
        kinds = [1] * (len(prompt) - len(self.length_ids[:1])) + [4] * len(self.length_ids[:1]) + \
            [2] * len(motion) + [3, 1]
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
        10), "motion" the codes, </mot> and the length token. The labels are not shifted: Hugging Face models
        shift them inside."""
        if loss not in ("whole", "motion"):
            raise ValueError(f"loss must be 'whole' or 'motion', got {loss!r}")
        B, L = len(samples), max(len(ids) for ids, _ in samples)
        input_ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        kinds = torch.zeros(B, L, dtype=torch.long)
        for b, (ids, k) in enumerate(samples):
            input_ids[b, :len(ids)], kinds[b, :len(ids)] = torch.tensor(ids), torch.tensor(k)
        counted = kinds > 0 if loss == "whole" else kinds >= 2
        return dict(input_ids=input_ids, attention_mask=(kinds > 0).long(),
                    position_ids=position_ids(kinds, self.spec["n_ctx"], self.clock, self.P * self.countdown),
                    kinds=kinds,
                    labels=input_ids.masked_fill(~counted, -100))

    def motion_room(self, prompt_len):
        """How many motion steps fit after an instruction of prompt_len tokens (<mot> included): the motion
        starts at motion_position(n_ctx) and ends with </mot> <eos> within the context; -1 when the
        instruction itself is longer than that start. The length token, if any, goes before the start."""
        prompt_len += len(self.length_ids[:1])
        start = motion_position(self.spec["n_ctx"]) if self.clock else prompt_len
        return -1 if prompt_len > start else (self.spec["n_ctx"] - start - 2) // self.P

    @torch.no_grad()
    def generate(self, prompts, *, min_steps=1, max_steps=None, steps=None, temperature=1.0, top_k=0,
                 top_p=1.0, guidance=1.0, generator=None, template=0, keep=None, length_slack=0.0):
        """Motion codes int64 [T, P] for each prompt (a caption, or (caption, parts)): batched with left
        padding and the KV cache, each row's motion from motion_position(n_ctx) as in training. Constrained:
        after <mot> only motion codes, </mot> only after whole steps of P codes and at least min_steps steps,
        forced at max_steps (default: what fits); steps=n gives exactly n (each an int, or one per prompt:
        sample.py holds each text to its length estimate so). temperature 0 is greedy; top_k 0 and top_p 1
        are off. guidance g != 1 is classifier-free guidance (Ho & Salimans 2022): each prompt also runs
        without its instruction (a second row fed the same tokens), and the next token is drawn from
        log p_u + g (log p_c - log p_u) (train.py --uncond_prob teaches the model the bare prompt). A list of
        `generator`s, one per prompt, makes each prompt's sample independent of the rest of the batch. `keep`
        (editing; per prompt None or (codes [T, P], mask [T, P] bool)): where mask is true the token is the
        source's code, not a draw (support/editing.py). A length-token run writes <len T> first, and the
        motion then has T steps, or ends within ±length_slack·T steps where the model writes </mot>."""
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
        R, (limit, low) = len(rows), self._step_bounds(prompts, min_steps, max_steps)
        forced_ids, forced, limit, low = forced_codes(keep, self, limit, low)
        ids, mask = self._left_padded(rows)
        pos = (mask.cumsum(1) - 1).clamp(min=0)  # left padding: each prompt starts at position 0
        motion_pos = (torch.full((R, 1), motion_position(self.spec["n_ctx"]), device=dev) if self.clock else
                      mask.sum(1, keepdim=True))  # the next token's
        V = self.lm.config.vocab_size
        is_code = torch.zeros(V, dtype=torch.bool, device=dev)
        is_code[self.motion_ids] = True
        n = torch.zeros(B, dtype=torch.long, device=dev)  # codes emitted per row
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        out, cache, training, length_first = [], None, self.lm.training, len(self.length_ids) > 0
        self.lm.eval()
        try:
            while not done.all():
                res = self.lm(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache,
                              use_cache=True)
                cache, logits = res.cache, res.logits[:, -1].float()
                if guided:
                    cond, uncond = logits[:B].log_softmax(-1), logits[B:].log_softmax(-1)
                    logits = uncond + guidance * (cond - uncond)
                if length_first:  # the length token first, then the motion has that many steps
                    length_first = False
                    tok, low, limit = self._length(logits, low, limit, temperature, top_k, top_p, generator,
                                                   length_slack)
                    feed = torch.cat([tok, tok]) if guided else tok
                    ids, mask, pos = feed[:, None], F.pad(mask, (0, 1), value=1), pos[:, -1:] + 1
                    motion_pos = motion_pos + (not self.clock)
                    if self.countdown:  # a known length T ends at motion_end: start T steps before it
                        T = limit.repeat(R // B)[:, None]
                        start = motion_end(self.spec["n_ctx"], P) - T * P
                        motion_pos = torch.where(T < len(self.length_ids), start, motion_pos)
                    continue
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

    def _step_bounds(self, prompts, min_steps, max_steps):
        """Each row's (limit, low) in steps: its longest motion (T·P codes, </mot> and <eos> from the
        motion's start to the context's end; at most max_steps) and min_steps (each an int, or one per
        prompt); one clear error where they cannot hold."""
        rooms = [self.motion_room(len(p)) for p in prompts]
        if min(rooms) < 0:
            raise ValueError(f"an instruction of {len(prompts[rooms.index(-1)])} tokens is too long: the "
                             f"motion starts at position {motion_position(self.spec['n_ctx'])} "
                             f"(model.motion_position)")
        limit = torch.tensor(rooms, device=self.lm.device)
        if max_steps is not None:
            limit = torch.minimum(limit, torch.as_tensor(max_steps, device=limit.device))
        low = torch.as_tensor(min_steps, device=limit.device).expand_as(limit).clone()
        bad = torch.nonzero((low < 1) | (limit < low)).flatten()
        if len(bad):
            b = bad[0].item()
            raise ValueError(f"cannot generate {low[b].item()} steps for prompt {b}: at most "
                             f"{limit[b].item()} fit (context {self.spec['n_ctx']}, max_steps {max_steps})")
        return limit, low

    def _left_padded(self, rows):
        """Token lists -> (ids [R, L], attention mask [R, L]) on the model's device, padded on the left."""
        L = max(map(len, rows))
        ids = torch.full((len(rows), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), L, dtype=torch.long)
        for b, p in enumerate(rows):
            ids[b, L - len(p):], mask[b, L - len(p):] = torch.tensor(p), 1
        return ids.to(self.lm.device), mask.to(self.lm.device)

    def _length(self, logits, low, limit, temperature, top_k, top_p, generator, slack=0.0):
        """The length token, drawn among the lengths in [low, limit] (the last token: at least that many
        steps), and the rows' step bounds set to it, or within ±slack of it (the model ends the motion
        there): (tokens [B], low, limit)."""
        D, dev = len(self.length_ids), logits.device
        steps, length_ids = torch.arange(1, D + 1, device=dev), self.length_ids.to(dev)
        ok = (steps >= low[:, None].clamp(max=D)) & (steps <= limit[:, None])
        allowed = torch.zeros_like(logits, dtype=torch.bool)
        allowed[:, length_ids] = ok
        tok = _pick(logits.masked_fill(~allowed, -torch.inf), temperature, top_k, top_p, generator)
        chosen = steps[(tok[:, None] == length_ids).int().argmax(1)]
        near = (chosen * (1 - slack)).floor().long().clamp(min=1), (chosen * (1 + slack)).ceil().long()
        return tok, torch.where(chosen < D, torch.maximum(near[0], low), low.clamp(min=D)), \
            torch.where(chosen < D, torch.minimum(near[1], limit), limit)

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
            length_ids=self.length_ids.tolist(),
            family=self.spec["family"], text_tokenizer="tiktoken" if self.text.files else "hf",
            spec=self.spec))


def build(model="gpt2-tiny", *, K, P, captions, init="auto", motion_vocab="add", bpe_vocab_size=512,
          dtype=None, seed=0, motion_clock=True, length_token=False, countdown=False):
    """A MotionLM for codebook size K and P codes per step. `model`: a registry name or a local Hugging Face
    folder; init "pretrained" loads its weights, "scratch" draws the same architecture at random (Table 9),
    "auto" is scratch for the tiny models and pretrained otherwise. `captions` (train captions and part texts)
    train the tiny models' BPE and, for motion_vocab="reuse", count the text tokens. dtype None = fp32.
    length_token: the model writes the motion's length first (LENGTH_TOKENS more new rows); countdown (with
    it): the motion's positions count down to its end (position_ids)."""
    if countdown and not (length_token and motion_clock):
        raise ValueError("countdown needs the length token and the motion clock: --length_token=True")
    spec = model_spec(model) | {"motion_clock": motion_clock, "countdown": countdown}
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
            forms = [instruction_text(c, template=t) for t in range(len(TEMPLATES)) for c in captions]
            forms.append(instruction_text(captions[0], dict.fromkeys(PARTS, captions[0])))  # the part labels
            counts = count_tokens(text, forms)
            motion_ids = reuse_ids(counts, [i for i in range(text.n_vocab) if i not in text.special_ids], K)
            used = first
        length_ids = list(range(used, used + LENGTH_TOKENS * length_token))
        used += len(length_ids)
        vocab = -(-used // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
        if lm is None:  # from scratch every row is random: build at the full size
            lm = AutoModelForCausalLM.from_config(hf_config(spec, vocab), dtype=dtype or torch.float32)
        else:
            grow_vocab(lm, vocab)
    lm.config.pad_token_id, lm.config.eos_token_id = pad_id, text.eos_id
    return MotionLM(lm, text, K=K, P=P, motion_ids=motion_ids, mot_id=mot_id, end_mot_id=end_mot_id,
                    pad_id=pad_id, mode=motion_vocab, spec={**spec, "vocab_size": vocab},
                    length_ids=length_ids)


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
                    end_mot_id=v["end_mot_id"], pad_id=v["pad_id"], mode=v["mode"], spec=v["spec"],
                    length_ids=v.get("length_ids", []))


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
