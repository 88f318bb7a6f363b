"""model.py: the motion vocabulary, the sequence layout and loss masks, the text tokenizers, constrained
generation and save/load. References are independent of the code under test: hand-written ids and labels,
Hugging Face `tokenizers` for BPE ids, a no-cache forward for the KV-cache path, safetensors read directly
for the old embedding rows, published parameter counts for the registry."""

import hashlib
import json
import math
import socket

import numpy as np
import pytest
import torch
from huggingface_hub.utils import filter_repo_objects
from safetensors.torch import load_file
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

import model
from support import model_pretrained as pretrained
from support import text_tokenizer, train_scale
from support.model_generate import FilledLayer

CAPTIONS = [
    "a man walks forward.", "a woman takes a few steps backward.", "someone jumps twice, then waves!",
    "a person turns left by 90 degrees.", "the person squats down and stands up again.",
    "a man raises both arms; then claps.", "someone kicks with the right leg.", "a woman runs in a circle.",
    "the arms swing back and forth with the steps.", "the legs take steps backward.",
    "held still, the right arm raised straight up.", "the left hand waves side to side at head height.",
] * 5
TRICKY = ["a man walks forward.", "Someone's kick: 90° — then «wave»!", "naïve café, 日本語 ok?\n",
          "  two  spaces"]


def bytes_to_unicode():
    """GPT-2's map of the 256 bytes to printable characters, in its vocabulary order (encoder.py)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


B2U = bytes_to_unicode()
MERGES = ["a l", "Ġ w", "Ġw al", "k s"]  # ids 256..259: "al", "Ġw", "Ġwal", "ks"; <|endoftext|> is 260


def write_bpe(folder, merges=MERGES):
    """A GPT-2-layout vocab.json + merges.txt: the 256 bytes in GPT-2's order, the merges, <|endoftext|>."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(B2U.values())}
    for m in merges:
        vocab["".join(m.split())] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A local Hugging Face GPT-2 folder: random weights (save_pretrained) and the hand-made BPE files."""
    folder = write_bpe(tmp_path_factory.mktemp("gpt2_local"))
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=261, n_layer=2, n_embd=32, n_head=2, n_positions=128)
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A local Hugging Face Llama folder: random untied weights and its own (HF) tokenizer."""
    folder = tmp_path_factory.mktemp("llama_local")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CAPTIONS, vocab_size=300, special_tokens=["<s>", "</s>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>")
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny():
    return model.build("gpt2-tiny", K=16, P=3, captions=CAPTIONS)


@pytest.fixture(scope="module")
def tiny_llama():
    return model.build("llama-tiny", K=16, P=3, captions=CAPTIONS)


# text: captions, instructions, tokenizers
def test_normalise_caption_and_instruction():
    assert model.normalise_caption("  A  Man\tWALKS forward.\n") == "a man walks forward."
    with pytest.raises(ValueError, match="empty caption"):
        model.normalise_caption(" \n\t")
    parts = {"upper": "The right arm  waves.", "lower": "the legs stand still."}
    assert model.instruction_text("A man waves.", parts) == (
        "generate a motion: a man waves. upper body: the right arm waves. lower body: the legs stand still.")
    assert model.instruction_text("A man waves.", template=1) == "show me how a person moves: a man waves."


def test_tiktoken_from_files_gives_hand_computed_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    folder = write_bpe(tmp_path / "bpe")
    text = text_tokenizer.bpe_from_files(folder / "vocab.json", folder / "merges.txt")
    a, w = list(B2U.values()).index("a"), list(B2U.values()).index("w")  # GPT-2 byte ids: "!" is 0
    assert (a, w) == (64, 86)
    # " walks": Ġ w a l k s -> (a l) -> (Ġ w) -> (Ġw al) -> (k s) = Ġwal ks; "walks" has no Ġ: w al ks
    assert text.encode(" walks") == [258, 259]
    assert text.encode("walks a") == [86, 256, 259, 220, 64]  # " a" is Ġ a (Ġ = byte 32 = id 220)
    assert text.eos_id == 260 and text.n_vocab == 261 and text.decode([258, 259]) == " walks"
    # the same path (the same file name) after the files changed gives the new ranks, not a cached copy
    write_bpe(folder, merges=["k s"])
    text = text_tokenizer.bpe_from_files(folder / "vocab.json", folder / "merges.txt")
    assert text.encode(" walks") == [220, 86, 64, 75, 256]


def test_gpt2_from_tiktoken_cache_or_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="GPT-2's tokenizer is not on disk.*hf download gpt2") as e:
        text_tokenizer.tiktoken_gpt2_files()
    assert "\n" not in str(e.value)
    src = write_bpe(tmp_path / "src")  # tiktoken names a cached file by the sha1 of its URL
    url = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
    for name, ours in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (tmp_path / hashlib.sha1(f"{url}{name}".encode()).hexdigest()).write_bytes((src / ours).read_bytes())
    assert text_tokenizer.bpe_from_files(*text_tokenizer.tiktoken_gpt2_files()).encode(" walks") == [258, 259]


def test_bpe_round_trip_matches_hf_tokenizers_and_survives_save_load(tiny, tmp_path):
    for s in TRICKY:
        assert tiny.text.decode(tiny.text.encode(s)) == s
    tiny.text.save(tmp_path)
    reference = ByteLevelBPETokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    loaded = text_tokenizer.bpe_from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    for s in TRICKY + CAPTIONS[:12]:
        assert tiny.text.encode(s) == reference.encode(s).ids == loaded.encode(s)
    assert loaded.n_vocab == tiny.text.n_vocab and loaded.eos_id == tiny.text.eos_id == tiny.text.n_vocab - 1
    assert len(tiny.text.encode("the person squats down")) < len("the person squats down") / 2  # it merged


# the sequence and the loss masks
def test_sample_layout(tiny):
    codes = np.array([[1, 2, 3], [4, 5, 15]])
    ids, kinds = tiny.sample_ids("A man  walks.", codes)
    prompt = tiny.prompt_ids("a man walks.")
    m = tiny.motion_ids.tolist()
    assert tiny.text.decode(prompt[:-1]) == "generate a motion: a man walks." and prompt[-1] == tiny.mot_id
    assert ids == prompt + [m[1], m[2], m[3], m[4], m[5], m[15], tiny.end_mot_id, tiny.eos_id]
    assert kinds == [1] * len(prompt) + [2] * 6 + [3, 1]
    with pytest.raises(ValueError, match=r"codes must be \[T >= 1, P=3\]"):
        tiny.sample_ids("a man walks.", np.zeros((4, 2), dtype=int))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 16\)"):
        tiny.sample_ids("a man walks.", np.full((1, 3), 16))


def test_loss_masks_on_a_hand_built_batch(tiny):
    a = ([7, 8, 9, tiny.mot_id, 40, 41, 42, tiny.end_mot_id, tiny.eos_id], [1, 1, 1, 1, 2, 2, 2, 3, 1])
    b = ([5, tiny.mot_id, 43, tiny.end_mot_id, tiny.eos_id], [1, 1, 2, 3, 1])
    pad, end, eos, mot, X = tiny.pad_id, tiny.end_mot_id, tiny.eos_id, tiny.mot_id, -100
    whole = tiny.collate([a, b], loss="whole")
    assert whole["input_ids"].tolist() == [[7, 8, 9, mot, 40, 41, 42, end, eos],
                                           [5, mot, 43, end, eos, pad, pad, pad, pad]]
    assert whole["attention_mask"].tolist() == [[1] * 9, [1] * 5 + [0] * 4]
    assert whole["kinds"].tolist() == [a[1], b[1] + [0] * 4]
    # the motion clock: the instruction at 0, 1, ..., the motion from 3/8 of the context (512 -> 192) on
    assert whole["position_ids"].tolist() == [[0, 1, 2, 3, 192, 193, 194, 195, 196],
                                              [0, 1, 192, 193, 194, 195, 196, 197, 198]]
    assert whole["labels"].tolist() == [[7, 8, 9, mot, 40, 41, 42, end, eos],
                                        [5, mot, 43, end, eos, X, X, X, X]]
    motion = tiny.collate([a, b], loss="motion")
    assert motion["labels"].tolist() == [[X, X, X, X, 40, 41, 42, end, X], [X, X, 43, end, X, X, X, X, X]]
    with pytest.raises(ValueError, match="loss must be 'whole' or 'motion'"):
        tiny.collate([a], loss="text")
    # the kinds by name, and what each loss counts (train.py's validation counts with the same function)
    assert [int(k) for k in model.Kind] == [0, 1, 2, 3, 4] and model.Kind.LENGTH.name == "LENGTH"
    kinds = torch.tensor([[0, 1, 2, 3, 4]])
    assert model.counted(kinds, "whole").tolist() == [[False, True, True, True, True]]
    assert model.counted(kinds, "motion").tolist() == [[False, False, True, True, True]]
    with pytest.raises(ValueError, match="loss must be 'whole' or 'motion', got 'text'"):
        model.counted(kinds, "text")
    # Hugging Face shifts the labels inside: its loss is the mean (or the sum / num_items_in_batch) of
    # -log p(x_t | x_<t) over the counted t, here written out token by token
    tiny.lm.eval()
    batch = {k: motion[k] for k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        out = tiny.lm(**batch)
        summed = tiny.lm(**batch, num_items_in_batch=torch.tensor(2.0)).loss
    logp = out.logits.log_softmax(-1)
    counted = [(0, t) for t in range(4, 8)] + [(1, 2), (1, 3)]
    nll = torch.stack([-logp[i, t - 1, batch["input_ids"][i, t]] for i, t in counted])
    torch.testing.assert_close(out.loss, nll.mean())
    torch.testing.assert_close(summed, nll.sum() / 2)
    losses = model.token_losses(out.logits, batch["input_ids"])
    assert losses.shape == (2, 9) and (losses[:, 0] == 0).all()
    torch.testing.assert_close(torch.stack([losses[i, t] for i, t in counted]), nll)


# the motion vocabulary
def _sgd_step_changes(mlm, old):
    """One SGD step on a batch holding every motion code. -> (every code's input row changed, every new head
    row changed). The head's new rows include the rounding rows that never appear in the input: with GPT-2's
    tied weights, their change shows that the head's gradient reaches the shared tensor."""
    emb, head = mlm.lm.get_input_embeddings().weight, mlm.lm.get_output_embeddings().weight
    codes = mlm.motion_ids
    before_in, before_out = emb[codes].detach().clone(), head[old:].detach().clone()
    ids = [mlm.sample_ids(c, np.arange(mlm.K).reshape(-1, mlm.P)) for c in CAPTIONS[:2]]
    mlm.lm.train()
    mlm.lm(**{k: v for k, v in mlm.collate(ids).items() if k != "kinds"}).loss.backward()
    torch.optim.SGD(mlm.lm.parameters(), lr=1.0).step()
    mlm.lm.zero_grad()
    return (emb[codes] != before_in).any(1).all().item(), (head[old:] != before_out).any(1).all().item()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_add_keeps_old_rows_and_makes_new_rows_distinct_and_trainable(family, gpt2_dir, llama_dir):
    folder = gpt2_dir if family == "gpt2" else llama_dir
    mlm = model.build(str(folder), K=16, P=2, captions=CAPTIONS)  # auto: a local folder loads its weights
    saved = load_file(folder / "model.safetensors")
    emb, head = mlm.lm.get_input_embeddings().weight, mlm.lm.get_output_embeddings().weight
    old = {"gpt2": 261, "llama": 300}[family]
    new_rows = 3 + 16  # <mot>, </mot>, <pad> and the codes, then rounded up to a multiple of 64
    assert emb.shape[0] == head.shape[0] == mlm.lm.config.vocab_size == -(-(old + new_rows) // 64) * 64
    assert mlm.motion_ids.tolist() == list(range(old + 3, old + 3 + 16))
    assert (mlm.mot_id, mlm.end_mot_id, mlm.pad_id) == (old, old + 1, old + 2)
    if family == "gpt2":
        assert head is emb  # still tied
        assert torch.equal(emb[:old], saved["transformer.wte.weight"])
    else:
        assert torch.equal(emb[:old], saved["model.embed_tokens.weight"])
        assert torch.equal(head[:old], saved["lm_head.weight"])
    for w in (emb, head):
        new = w[old:].detach()
        # pairwise distances of the new rows (transformers' default init leaves them ~1e-6 apart)
        assert torch.cdist(new, new).add(torch.eye(len(new)) * 1e9).min() > 1e-2
        assert (new.std(0) > 0.1 * w[:old].detach().std(0)).all()  # at the old rows' scale
    assert _sgd_step_changes(mlm, old) == (True, True)


def test_reuse_picks_the_least_frequent_tokens():
    counts = {0: 5, 2: 3, 4: 1, 6: 9}  # ids 1, 3, 5 never occur; 7 is a special token, not a candidate
    assert pretrained.reuse_ids(counts, range(7), 2) == [3, 5]  # ties: the higher id (BPE's rarest merges)
    assert pretrained.reuse_ids(counts, range(7), 3) == [1, 3, 5]
    with pytest.raises(ValueError, match=r"needs 5 text tokens .* only 3 \(2 missing\)"):
        pretrained.reuse_ids(counts, range(7), 5)


def test_reuse_on_a_checkpoint_repurposes_unused_tokens(gpt2_dir):
    mlm = model.build(str(gpt2_dir), K=20, P=2, captions=CAPTIONS, motion_vocab="reuse")
    reference = ByteLevelBPETokenizer(str(gpt2_dir / "vocab.json"), str(gpt2_dir / "merges.txt"))
    forms = [model.instruction_text(c, template=t) for c in CAPTIONS for t in range(len(model.TEMPLATES))]
    forms.append(model.instruction_text(CAPTIONS[0], {"upper": CAPTIONS[1], "lower": CAPTIONS[2]}))
    used = {i for f in forms for i in reference.encode(f).ids}
    unused = sorted(set(range(260)) - used)  # 260 is <|endoftext|>
    assert mlm.motion_ids.tolist() == unused[-20:]
    assert mlm.lm.config.vocab_size == 320 and (mlm.mot_id, mlm.end_mot_id, mlm.pad_id) == (261, 262, 263)
    ids, kinds = mlm.sample_ids(CAPTIONS[0], [[0, 19]])
    assert ids[-4:-2] == [unused[-20], unused[-1]]
    assert 256 in mlm.motion_ids  # "al" on its own ("Ġwal" holds it) is in no caption: now a motion code
    # a caption with a token no train caption had ("al" in "t al l") is read in smaller tokens, never refused
    tall = mlm.prompt_ids("a tall man")
    assert mlm.reused.isdisjoint(tall) and tall[-1] == mlm.mot_id
    assert mlm.text.decode(tall[:-1]) == model.instruction_text("a tall man")
    assert len(mlm.generate(["a tall man"], steps=2, temperature=0)[0]) == 2
    with pytest.raises(ValueError, match=f"only {len(unused)} \\({250 - len(unused)} missing\\)"):
        model.build(str(gpt2_dir), K=250, P=2, captions=CAPTIONS, motion_vocab="reuse")


# constrained generation
def bias_logits(mlm, bias):
    """Add `bias` [V] to the head's output (a forward hook), to push the sampler towards chosen tokens."""
    return mlm.lm.get_output_embeddings().register_forward_hook(lambda mod, inp, out: out + bias)


def test_generation_is_constrained(tiny):
    V, g = tiny.lm.config.vocab_size, torch.Generator().manual_seed(0)
    prompts = ["a man walks forward.", ("someone jumps twice.", {"upper": "arms up.", "lower": "legs jump."})]
    out = tiny.generate(prompts * 3, min_steps=2, max_steps=6, generator=g)
    assert all(o.dtype == np.int64 and o.shape[1] == 3 and 2 <= len(o) <= 6 and o.min() >= 0 and o.max() < 16
               for o in out)
    cases = [  # (what the model is pushed to, generate's arguments, the steps each output must have)
        ({tiny.end_mot_id: 100.0}, dict(min_steps=3), 3),  # wants to stop: at the first whole step allowed
        ({tiny.end_mot_id: -100.0}, dict(max_steps=4), 4),  # never wants to: forced at max_steps
        ({tiny.end_mot_id: 100.0}, dict(steps=5), 5),
        ({tiny.end_mot_id: -100.0}, dict(steps=2), 2),
        ({tiny.eos_id: 100.0, 5: 100.0, tiny.mot_id: 100.0}, dict(steps=3), 3),  # text tokens: never
    ]
    for push, kwargs, steps in cases:
        bias = torch.zeros(V)
        for i, b in push.items():
            bias[i] = b
        hook = bias_logits(tiny, bias)
        out = tiny.generate(prompts * 2, generator=g, **kwargs)
        hook.remove()
        assert [o.shape for o in out] == [(steps, 3)] * 4 and min(o.min() for o in out) >= 0
    for end_push in (100.0, -100.0):  # one length per prompt (sample.py's length estimates), guided or not
        bias = torch.zeros(V)
        bias[tiny.end_mot_id] = end_push
        hook = bias_logits(tiny, bias)
        for guidance in (1.0, 2.0):
            out = tiny.generate(prompts * 2, steps=[4, 1, 7, 2], generator=g, guidance=guidance)
            assert [len(o) for o in out] == [4, 1, 7, 2]
        hook.remove()
    bias = torch.zeros(V)
    bias[tiny.motion_ids[11]] = 100.0
    hook = bias_logits(tiny, bias)
    assert (tiny.generate(prompts, steps=3, generator=g)[0] == 11).all()  # vocabulary id -> code
    hook.remove()
    with pytest.raises(ValueError, match="cannot generate 200 steps for prompt 0: at most 106 fit"):
        tiny.generate(["walk."], min_steps=200)  # the motion from 192 to 512, </mot> <eos>: (320 - 2) // 3
    with pytest.raises(ValueError, match="cannot generate 0 steps for prompt 1"):
        tiny.generate(["walk.", "run."], steps=[3, 0])


def test_generation_fills_the_context_by_default(gpt2_dir):
    """No max_steps: every prompt gets the context after the motion's fixed start, 3/8 of 128 = 48, whatever
    its own length: (128 - 48 - 2) // 2 = 39 steps; an instruction longer than 48 tokens is one clear line."""
    mlm = model.build(str(gpt2_dir), K=16, P=2, captions=CAPTIONS)
    bias = torch.zeros(mlm.lm.config.vocab_size)
    bias[mlm.end_mot_id] = -100.0
    hook = bias_logits(mlm, bias)
    prompts = ["walk.", "run, jump."]
    out = mlm.generate(prompts, temperature=0)
    hook.remove()
    assert len(mlm.prompt_ids(prompts[0])) < len(mlm.prompt_ids(prompts[1])) <= 48
    assert [len(o) for o in out] == [39, 39]
    with pytest.raises(ValueError, match="an instruction of 5[0-9] tokens is too long: the motion starts at "
                                         "position 48"):
        mlm.generate(["a woman takes a few steps backward."])


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_greedy_batch_equals_alone_and_kv_cache_equals_full_forward(name, tiny, tiny_llama):
    mlm = tiny if name == "gpt2-tiny" else tiny_llama
    prompts = ["walk.", "a woman takes a few steps backward, then someone jumps twice and waves!", "run."]
    batched = mlm.generate(prompts, steps=6, temperature=0)
    for p, o in zip(prompts, batched, strict=True):
        assert np.array_equal(mlm.generate([p], steps=6, temperature=0)[0], o)
    # the reference: one forward over prompt + generated codes without a cache, argmax over the motion codes
    prompt = mlm.prompt_ids(prompts[1])
    full = torch.tensor([prompt + mlm.motion_ids[torch.from_numpy(batched[1]).flatten()].tolist()])
    positions = torch.tensor([[*range(len(prompt)), *range(192, 192 + 6 * 3)]])  # the motion from 192 on
    with torch.no_grad():
        logits = mlm.lm(full, position_ids=positions).logits[0, len(prompt) - 1:-1]
    assert logits[:, mlm.motion_ids].argmax(-1).tolist() == batched[1].flatten().tolist()


def test_a_run_of_the_deleted_natural_positions_ablation_is_refused_in_one_line(tiny, tmp_path):
    """motion_clock=False (natural positions, deleted after a4c2a31) cannot be loaded; a spec that says
    motion_clock=True (every run saved before) loads as ever."""
    tiny.save(tmp_path / "run")
    vocab = tmp_path / "run" / "motion_vocab.json"
    saved = json.loads(vocab.read_text())
    vocab.write_text(json.dumps(saved | {"spec": saved["spec"] | {"motion_clock": True}}))
    assert model.load(tmp_path / "run").spec["motion_clock"] is True
    vocab.write_text(json.dumps(saved | {"spec": saved["spec"] | {"motion_clock": False}}))
    with pytest.raises(ValueError) as e:
        model.load(tmp_path / "run")
    assert str(e.value) == (f"{vocab}: motion_clock=False: an ablation deleted after commit a4c2a31 (its "
                            "figures: docs/results/choices_motion_clock.json); train a new run")


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_guided_greedy_against_two_full_forwards(name, tiny, tiny_llama):
    """Classifier-free guidance, greedy: every code is the argmax over the motion codes of
    log p_u + g (log p_c - log p_u), each from a no-cache forward over its own prompt (the instruction's, or
    the bare <mot> one) followed by the codes so far; g = 1 is plain generation."""
    mlm, g = (tiny if name == "gpt2-tiny" else tiny_llama), 50.0  # untrained: its codes barely read the text
    prompts = ["a woman takes a few steps backward, then someone jumps twice and waves!", "run."]
    guided = mlm.generate(prompts, steps=5, temperature=0, guidance=g)
    assert all(np.array_equal(a, b) for a, b in zip(mlm.generate(prompts, steps=5, temperature=0),
                                                    mlm.generate(prompts, steps=5, temperature=0, guidance=1),
                                                    strict=True))
    uncond = mlm.prompt_ids(None)
    assert uncond == ([] if mlm.text.bos_id is None else [mlm.text.bos_id]) + [mlm.mot_id]
    for text, codes in zip(prompts, guided, strict=True):
        motion = mlm.motion_ids[torch.from_numpy(codes).flatten()].tolist()
        with torch.no_grad():  # each prompt at 0, 1, ..., the codes from 192 on
            lp = [mlm.lm(torch.tensor([p + motion]), position_ids=torch.tensor(
                [[*range(len(p)), *range(192, 192 + len(motion))]])).logits[0, len(p) - 1:-1].log_softmax(-1)
                  for p in (mlm.prompt_ids(text), uncond)]
        mixed = lp[1] + g * (lp[0] - lp[1])
        assert mixed[:, mlm.motion_ids].argmax(-1).tolist() == codes.flatten().tolist()
    assert any(not np.array_equal(a, b) for a, b in
               zip(guided, mlm.generate(prompts, steps=5, temperature=0), strict=True))


def test_filled_cache_layer_holds_what_concatenation_would_and_grows_past_its_capacity():
    """generate's cache layer against the concatenation Hugging Face's DynamicLayer does: chunks of 2, 1, 4
    and 1 positions into room for 3, so the buffer grows twice; the views hold every position in order."""
    layer, chunks = FilledLayer(capacity=3), [torch.randn(2, 3, n, 5) for n in (2, 1, 4, 1)]
    for k, chunk in enumerate(chunks):
        keys, values = layer.update(chunk, -chunk)
        seen = torch.cat(chunks[:k + 1], 2)
        assert torch.equal(keys, seen) and torch.equal(values, -seen)
        assert layer.get_seq_length() == seen.shape[2] and layer.get_mask_sizes(1) == (seen.shape[2] + 1, 0)


# ---- editing: the keep mask (support/model_generate.forced_codes) --------------------------------------
def greedy_reference(mlm, prompt, codes):
    """The argmax over the motion codes at every position of prompt + codes, from one no-cache forward with
    the motion from 192 on: what greedy generation picks wherever nothing is forced."""
    ids = mlm.prompt_ids(prompt)
    full = torch.tensor([ids + mlm.motion_ids[torch.from_numpy(codes).flatten()].tolist()])
    positions = torch.tensor([[*range(len(ids)), *range(192, 192 + codes.size)]])
    with torch.no_grad():
        logits = mlm.lm(full, position_ids=positions).logits[0, len(ids) - 1:-1]
    return logits[:, mlm.motion_ids].argmax(-1).view(codes.shape).numpy()


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_edit_keeps_the_forced_codes_and_greedy_fills_the_rest(name, tiny, tiny_llama):
    """Part editing: the kept columns come out as the source's, the motion has the source's 7 steps, and at
    temperature 0 every free code is the argmax of a no-cache forward over the same (forced) prefix. Under
    sampling, guidance and top-p the kept codes are still exactly the source's."""
    mlm = tiny if name == "gpt2-tiny" else tiny_llama
    source = np.random.default_rng(0).integers(0, 16, (7, 3))
    mask = np.zeros((7, 3), bool)
    mask[:, [0, 2]] = True  # keep parts 0 and 2, regenerate part 1
    prompt = "a person walks forward and raises the left arm."
    edited = mlm.generate([prompt, "run."], temperature=0, keep=[(source, mask), None], max_steps=20)
    assert edited[0].shape == (7, 3) and np.array_equal(edited[0][mask], source[mask])
    ref = greedy_reference(mlm, prompt, edited[0])
    assert np.array_equal(edited[0][~mask], ref[~mask])
    alone = mlm.generate(["run."], temperature=0, max_steps=20)[0]
    assert np.array_equal(edited[1], alone)  # a prompt without a keep mask: generated as ever
    g = torch.Generator().manual_seed(3)
    sampled = mlm.generate([prompt] * 3, temperature=1.0, top_p=0.9, guidance=2.0, generator=g,
                           keep=[(source, mask)] * 3)
    for codes in sampled:
        assert codes.shape == (7, 3) and np.array_equal(codes[mask], source[mask])
    assert any(not np.array_equal(a[~mask], sampled[0][~mask]) for a in sampled[1:])  # still sampled


def test_continuation_keeps_the_first_steps_and_the_model_ends_it(tiny):
    """A continuation keeps the first 3 of 6 source steps (all parts); the model writes on, greedily as a
    no-cache forward would, and ends the motion itself (here within max_steps = 9)."""
    source = np.random.default_rng(1).integers(0, 16, (6, 3))
    mask = np.zeros((6, 3), bool)
    mask[:3] = True
    out = tiny.generate(["walk, then jump."], temperature=0, keep=[(source, mask)], max_steps=9)[0]
    assert len(out) >= 3 and np.array_equal(out[:3], source[:3])
    assert np.array_equal(out[3:], greedy_reference(tiny, "walk, then jump.", out)[3:])
    with pytest.raises(ValueError, match=r"keep: the mask must be \[T, P\] as its codes are, got \(6, 2\)"):
        tiny.generate(["walk."], keep=[(source, mask[:, :2])])
    with pytest.raises(ValueError, match="codes must lie in"):
        tiny.generate(["walk."], keep=[(source + 16, mask)])


# ---- the length token (train.py --length_token) ----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_len():
    return model.build("gpt2-tiny", K=16, P=3, captions=CAPTIONS, length_token=True)


def test_length_token_layout(tiny_len, tiny):
    """<mot> <len T> codes: the length token sits between them, has its own kind (4), counts in both losses,
    takes the natural position after <mot> while the codes still start at 192; T over 64 says 64."""
    assert len(tiny_len.length_ids) == model.LENGTH_TOKENS and not len(tiny.length_ids)
    assert not set(tiny_len.length_ids.tolist()) & {*tiny_len.motion_ids.tolist(), tiny_len.mot_id,
                                                    tiny_len.end_mot_id, tiny_len.pad_id, tiny_len.eos_id}
    codes = np.random.default_rng(0).integers(0, 16, (5, 3))
    ids, kinds = tiny_len.sample_ids("a man walks.", codes)
    plain, _ = tiny.sample_ids("a man walks.", codes)
    prompt = len(tiny_len.prompt_ids("a man walks."))
    assert ids[prompt] == tiny_len.length_ids[4] and kinds[prompt] == 4 and ids[prompt - 1] == tiny_len.mot_id
    assert len(ids) == len(plain) + 1 and kinds[prompt + 1:] == [2] * 15 + [3, 1]
    batch = tiny_len.collate([(ids, kinds)], "motion")
    assert batch["position_ids"][0, prompt] == prompt and batch["position_ids"][0, prompt + 1] == 192
    assert batch["labels"][0, prompt] == ids[prompt] and (batch["labels"][0, :prompt] == -100).all()
    long_ids, _ = tiny_len.sample_ids("a man walks.", np.zeros((70, 3), int))
    assert long_ids[prompt] == tiny_len.length_ids[63]


def test_length_token_decides_the_steps(tiny_len, tmp_path):
    """The first token after <mot> is a length token, and the motion then has that many steps whatever the
    model thinks of </mot>; 64 means at least 64.
    Greedy codes equal the argmax of one no-cache forward over prompt, <len T> (natural position) and codes
    (from 192). steps=n and a part edit's T force <len n>."""
    V, prompt = tiny_len.lm.config.vocab_size, "a person jumps twice."
    for length, end_push, kwargs, steps in ((5, 100.0, {}, 5), (5, -100.0, {}, 5), (64, 100.0, {}, 64),
                                            (64, -100.0, dict(max_steps=70), 70), (5, 0.0, dict(steps=8), 8)):
        bias = torch.zeros(V)
        bias[tiny_len.length_ids[length - 1]], bias[tiny_len.end_mot_id] = 30.0, end_push
        hook = bias_logits(tiny_len, bias)
        out = tiny_len.generate([prompt, "walk."], temperature=0, **kwargs)
        guided = tiny_len.generate([prompt], guidance=2.0, generator=torch.Generator().manual_seed(0),
                                   **kwargs)
        hook.remove()
        assert [len(o) for o in out + guided] == [steps] * 3
    assert [len(o) for o in tiny_len.generate([prompt, "walk."], temperature=0, steps=[9, 3])] == [9, 3]
    out = tiny_len.generate([prompt], temperature=0)[0]
    ids = tiny_len.prompt_ids(prompt) + [int(tiny_len.length_ids[len(out) - 1])]
    full = torch.tensor([ids + tiny_len.motion_ids[torch.from_numpy(out).flatten()].tolist()])
    positions = torch.tensor([[*range(len(ids)), *range(192, 192 + out.size)]])
    with torch.no_grad():
        logits = tiny_len.lm(full, position_ids=positions).logits[0]
    first = logits[len(ids) - 2, tiny_len.length_ids][:106].argmax().item() + 1  # what fits: 106 steps
    assert len(out) == first
    ref = logits[len(ids) - 1:-1, tiny_len.motion_ids].argmax(-1).view(out.shape).numpy()
    assert np.array_equal(out, ref)
    source, mask = np.random.default_rng(2).integers(0, 16, (7, 3)), np.zeros((7, 3), bool)
    mask[:, 0] = True
    edited = tiny_len.generate([prompt], temperature=0, keep=[(source, mask)])[0]
    assert edited.shape == (7, 3) and np.array_equal(edited[:, 0], source[:, 0])
    tiny_len.save(tmp_path / "run")
    assert torch.equal(model.load(tmp_path / "run").length_ids, tiny_len.length_ids)


def test_countdown_ends_every_motion_at_one_position():
    """--countdown: a motion of T steps takes positions motion_end − T·P ... so that </mot> always sits at
    motion_end (510 for 512 tokens and P = 3: 192 + 106 steps), in training and in generation alike
    (greedy = the argmax of one no-cache forward at those positions); it needs the length token."""
    mlm = model.build("gpt2-tiny", K=16, P=3, captions=CAPTIONS, length_token=True, countdown=True)
    assert model.motion_end(512, 3) == 510
    for T in (2, 5):
        ids, kinds = mlm.sample_ids("walk.", np.zeros((T, 3), int))
        pos = mlm.collate([(ids, kinds)])["position_ids"][0].tolist()
        assert pos[kinds.index(2):] == [*range(510 - 3 * T, 510), 510, 511]
    prompt = "a person squats twice."
    out = mlm.generate([prompt], temperature=0)[0]
    ids = mlm.prompt_ids(prompt) + [int(mlm.length_ids[len(out) - 1])]
    full = torch.tensor([ids + mlm.motion_ids[torch.from_numpy(out).flatten()].tolist()])
    positions = torch.tensor([[*range(len(ids)), *range(510 - out.size, 510)]])
    with torch.no_grad():
        logits = mlm.lm(full, position_ids=positions).logits[0, len(ids) - 1:-1, mlm.motion_ids]
    assert np.array_equal(out, logits.argmax(-1).view(out.shape).numpy())
    with pytest.raises(ValueError, match="countdown needs the length token"):
        model.build("gpt2-tiny", K=16, P=3, captions=CAPTIONS, countdown=True)


def test_sampling_settings(tiny):
    prompts = ["a man walks forward.", "a woman runs in a circle."]
    greedy = tiny.generate(prompts, steps=4, temperature=0)
    for kwargs in (dict(top_k=1), dict(top_p=1e-6)):
        g = torch.Generator().manual_seed(1)
        sampled = tiny.generate(prompts, steps=4, temperature=1.5, generator=g, **kwargs)
        assert all(np.array_equal(a, b) for a, b in zip(greedy, sampled, strict=True))
    a, b = (tiny.generate(prompts, steps=4, top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(7))
            for _ in range(2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    with pytest.raises(ValueError, match="0 < top_p <= 1"):
        tiny.generate(prompts, top_p=0)


# checkpoints and models
@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_save_load_gives_the_same_logits(name, tiny, tiny_llama, tmp_path):
    mlm = tiny if name == "gpt2-tiny" else tiny_llama
    mlm.save(tmp_path / "run")
    mlm.save(tmp_path / "run")  # a second save swaps the folders in place
    back = model.load(tmp_path / "run")
    written = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert written == ["model", "motion_vocab.json", "text_tokenizer"]  # no temporary folders left
    batch = mlm.collate([mlm.sample_ids(c, np.arange(9).reshape(3, 3)) for c in CAPTIONS[:3]])
    mlm.lm.eval()
    with torch.no_grad():
        args = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        assert torch.equal(mlm.lm(**args).logits, back.lm(**args).logits)  # the same fp32 weights: exact
    assert back.motion_ids.tolist() == mlm.motion_ids.tolist() and back.spec == mlm.spec
    assert (back.mot_id, back.end_mot_id, back.eos_id, back.pad_id) == (mlm.mot_id, mlm.end_mot_id,
                                                                        mlm.eos_id, mlm.pad_id)
    assert [back.text.encode(s) for s in TRICKY] == [mlm.text.encode(s) for s in TRICKY]
    (tmp_path / "run" / "motion_vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match="motion_vocab.json not found"):
        model.load(tmp_path / "run")


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_a_model_built_on_the_meta_device_keeps_its_buffers(name, tiny, tiny_llama, tmp_path):
    """train.py's start-up: load(weights=False) builds the run's model on the meta device (no memory),
    materialise allocates it with the buffers no state dict holds (Llama's rotary frequencies) as the
    constructor computes them and the tied weights tied; filled with the weights, it gives their logits."""
    mlm = tiny if name == "gpt2-tiny" else tiny_llama
    mlm.save(tmp_path / "run")
    empty = model.load(tmp_path / "run", weights=False)
    assert all(p.is_meta for p in empty.lm.parameters())
    train_scale.materialise(empty.lm, torch.device("cpu"))
    buffers = dict(mlm.lm.named_buffers())
    assert buffers.keys() == dict(empty.lm.named_buffers()).keys()
    for key, buffer in empty.lm.named_buffers():
        assert torch.equal(buffer, buffers[key]), key
    tied = mlm.lm.get_output_embeddings().weight is mlm.lm.get_input_embeddings().weight
    assert (empty.lm.get_output_embeddings().weight is empty.lm.get_input_embeddings().weight) == tied
    empty.lm.load_state_dict(mlm.lm.state_dict())
    ids = torch.tensor([mlm.prompt_ids(CAPTIONS[0])])
    with torch.no_grad():
        assert torch.equal(mlm.lm.eval()(input_ids=ids).logits, empty.lm.eval()(input_ids=ids).logits)


def test_a_bf16_export_loads_in_the_dtype_of_the_device(tiny, tmp_path):
    """A run's model/ in bf16 (train.py's export on a GPU) names its dtype in config.json and loads as fp32 on
    the CPU, rounded as bf16 rounds; weights=False writes no model/ at all."""
    tiny.save(tmp_path / "start", weights=False)
    assert sorted(p.name for p in (tmp_path / "start").iterdir()) == ["motion_vocab.json", "text_tokenizer"]
    half = {k: v.to(torch.bfloat16) for k, v in tiny.lm.state_dict().items()}
    tiny.save(tmp_path / "run", state_dict=dict(half))  # save_pretrained empties the dict it is given
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    assert str(tiny.lm.config.dtype) == "float32"  # the live model's config is left as it was
    stored = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert {v.dtype for v in stored.values()} == {torch.bfloat16}
    back = model.load(tmp_path / "run")
    for key, value in back.lm.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, half[key].float()), key


def test_local_folder_loads_pretrained(gpt2_dir, llama_dir, tmp_path):
    spec = model.model_spec(str(gpt2_dir))
    assert {k: spec[k] for k in ("family", "n_layer", "n_embd", "n_head", "n_ctx", "vocab_size")} == dict(
        family="gpt2", n_layer=2, n_embd=32, n_head=2, n_ctx=128, vocab_size=261)
    mlm = model.build(str(gpt2_dir), K=8, P=2, captions=CAPTIONS, init="pretrained")
    assert mlm.text.encode(" walks") == [258, 259] and mlm.eos_id == 260  # the folder's own BPE files
    saved = load_file(gpt2_dir / "model.safetensors")
    assert torch.equal(mlm.lm.transformer.h[1].mlp.c_fc.weight, saved["transformer.h.1.mlp.c_fc.weight"])
    llama = model.build(str(llama_dir), K=8, P=2, captions=CAPTIONS)
    assert llama.spec["family"] == "llama" and llama.spec["n_kv_head"] == 2
    assert llama.prompt_ids("walk.")[0] == llama.text.bos_id == 0 and llama.eos_id == 1  # its own tokenizer
    assert [o.shape for o in llama.generate(["walk.", "a man runs."], steps=2)] == [(2, 2)] * 2
    llama.save(tmp_path / "run")
    back = model.load(tmp_path / "run")
    assert back.text.encode(TRICKY[1]) == llama.text.encode(TRICKY[1]) and back.text.bos_id == 0


def test_missing_or_unknown_models_are_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained.hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(pretrained.hub_constants, "HF_HUB_OFFLINE", True)  # as conftest.py sets for all
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    def no_network(*args):
        raise AssertionError("model.build tried the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    for name, hint in (("gpt2-medium", r"\(HF_HUB_OFFLINE is set\).*`hf download gpt2-medium --include "),
                       ("llama2-13b", "`hf download meta-llama/Llama-2-13b-hf --include .*gated")):
        with pytest.raises(FileNotFoundError, match=f"is not on disk .*{hint}") as e:
            model.build(name, K=8, P=2, captions=CAPTIONS)
        assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="GPT-2's tokenizer is not on disk"):
        model.build("gpt2", K=8, P=2, captions=CAPTIONS, init="scratch")
    with pytest.raises(ValueError, match="unknown model 'gpt3': one of gpt2, gpt2-medium, .*llama-tiny") as e:
        model.build("gpt3", K=8, P=2, captions=CAPTIONS)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="gpt2-tiny has no pretrained weights"):
        model.build("gpt2-tiny", K=8, P=2, captions=CAPTIONS, init="pretrained")


def test_named_models_download_only_the_files_a_run_reads(tmp_path, monkeypatch):
    """Online, a named model's snapshot is fetched with allow_patterns that keep safetensors, configs and
    tokenizer files, and drop a repo's other copies of the weights (judged by huggingface_hub's own filter on
    the files of gpt2-medium's and Llama-2-13b-hf's repos); the offline error's command fetches the same."""
    asked = {}

    def fake_download(repo_id, **kwargs):
        asked[repo_id] = kwargs
        return str(tmp_path)

    monkeypatch.setattr(pretrained, "snapshot_download", fake_download)
    assert pretrained.hub_snapshot(model.model_spec("llama2-13b")) == tmp_path
    patterns = asked["meta-llama/Llama-2-13b-hf"]["allow_patterns"]
    assert not asked["meta-llama/Llama-2-13b-hf"].get("local_files_only")
    repo = ["config.json", "generation_config.json", "model-00001-of-00003.safetensors",
            "model.safetensors.index.json", "pytorch_model-00001-of-00003.bin",
            "pytorch_model.bin.index.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "README.md", "LICENSE.txt", "Responsible-Use-Guide.pdf", "vocab.json",
            "merges.txt", "tf_model.h5", "flax_model.msgpack", "onnx/decoder_model.onnx", "64-8bits.tflite",
            "rust_model.ot"]
    kept = set(filter_repo_objects(repo, allow_patterns=patterns))
    assert kept == {"config.json", "generation_config.json", "model-00001-of-00003.safetensors",
                    "model.safetensors.index.json", "pytorch_model.bin.index.json", "tokenizer.model",
                    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                    "merges.txt"}
    command = pretrained.download_command("gpt2-medium").split(" --include ")[1]
    assert [p.strip('"') for p in command.split(" ")] == patterns


def test_registry_architectures_have_the_published_sizes():
    published = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080,
                 "llama2-7b": 6_738_415_616, "llama2-13b": 13_015_864_320, "llama3.1-8b": 8_030_261_248}
    for name, n in published.items():
        with torch.device("meta"):
            lm = AutoModelForCausalLM.from_config(model.hf_config(model.model_spec(name)))
        assert sum(p.numel() for p in lm.parameters()) == n, name
    assert model.REGISTRY["gpt2-medium"]["lr"] == 2e-4 and model.REGISTRY["llama2-13b"]["lr"] == 2e-5


def test_tiny_models_have_1_to_3m_parameters(tiny, tiny_llama):
    for mlm in (tiny, tiny_llama):
        assert 1e6 < sum(p.numel() for p in mlm.lm.parameters()) < 3e6 and mlm.spec["n_ctx"] == 512


def test_gpt2_mlp_is_gpt2s_tanh_gelu_in_closed_form(tiny):
    """The fused activation the registry's GPT-2 configs name is GPT-2's own: 0.5 x (1 + tanh(sqrt(2/pi) (x +
    0.044715 x^3))), in float64, on the tiny model's first MLP over its whole useful range."""
    x = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    closed = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    act = tiny.lm.transformer.h[0].mlp.act
    torch.testing.assert_close(act(x.float()).double(), closed, rtol=1e-6, atol=1e-6)
    assert model.hf_config(model.model_spec("gpt2-medium")).activation_function == "gelu_pytorch_tanh"


def test_motion_starts_at_three_eighths_of_the_context_at_most_512():
    assert [model.motion_position(n) for n in (128, 512, 1024, 4096, 131072)] == [48, 192, 384, 512, 512]


def test_spelling_a_token_keeps_its_text(gpt2_dir, llama_dir):
    """spell(i) (what a reused caption token is read as) decodes to the token's own text, for tiktoken's
    byte-level BPE and a Hugging Face tokenizer alike, in tokens of one character (byte) each."""
    for folder in (gpt2_dir, llama_dir):
        text = model.build(str(folder), K=8, P=2, captions=CAPTIONS).text
        for i in text.encode("A man walks forward, then waves."):
            pieces = text.spell(i)
            assert text.decode(pieces) == text.decode([i]) and all(len(text.decode([j])) == 1 for j in pieces)
