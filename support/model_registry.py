"""The named language models (model.build's `model`): each one's architecture, so that --init=scratch, the
memory estimates and the benchmark need no weights, its learning rate, and its transformers config."""

from pathlib import Path

from transformers import AutoConfig, GPT2Config, LlamaConfig


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


def grown_vocab(n_text, K, motion_vocab, length_tokens, has_pad):
    """The vocabulary's size after model.build's new rows: <mot>, </mot>, <pad> (unless the text has one),
    the K codes (motion_vocab="add") and `length_tokens`, rounded up to VOCAB_MULTIPLE."""
    rows = 2 + (not has_pad) + K * (motion_vocab == "add") + length_tokens
    return -(-(n_text + rows) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def hf_config(spec, vocab_size=None):
    """A transformers config of the spec's architecture (no weights needed)."""
    vocab_size = vocab_size or spec["vocab_size"]
    if vocab_size is None:
        raise ValueError(f"{spec['name']}: the vocabulary size comes from its trained BPE; pass vocab_size")
    if spec["family"] == "gpt2":
        d = spec["dropout"]
        # GPT-2's tanh-approximated GELU as torch's one fused op, not transformers' "gelu_new" (the same
        # formula as eight elementwise passes: a fifth of a gpt2-tiny step on the CPU; the step 1.27x faster)
        return GPT2Config(n_layer=spec["n_layer"], n_embd=spec["n_embd"], n_head=spec["n_head"],
                          n_positions=spec["n_ctx"], vocab_size=vocab_size, resid_pdrop=d, embd_pdrop=d,
                          attn_pdrop=d, bos_token_id=None, eos_token_id=None,
                          activation_function="gelu_pytorch_tanh")
    return LlamaConfig(num_hidden_layers=spec["n_layer"], hidden_size=spec["n_embd"],
                       num_attention_heads=spec["n_head"], num_key_value_heads=spec["n_kv_head"],
                       intermediate_size=spec["n_inner"], max_position_embeddings=spec["n_ctx"],
                       vocab_size=vocab_size, rope_parameters=dict(spec["rope"]), rms_norm_eps=1e-5,
                       bos_token_id=None, eos_token_id=None)
