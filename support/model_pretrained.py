"""What starting from a pretrained LLM needs (model.build): its weights, fetched from the Hugging Face hub
once (only the files a run reads) or found in its cache offline, and its vocabulary grown by the motion
tokens' rows, initialised near the known rows yet apart; or, with motion_vocab="reuse" (§5.1, the paper's),
the text tokens that the motion codes take over."""

from pathlib import Path

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

# the files a run reads: safetensors weights (and their index), configs, tokenizer files; not a repo's .bin,
# .h5, .msgpack or .onnx copies of the same weights (Llama-2-13b-hf holds both .bin and .safetensors shards)
HUB_FILES = ("*.safetensors", "*.json", "tokenizer.model", "merges.txt")


def download_command(hf_id):
    return f"hf download {hf_id} --include " + " ".join(f'"{p}"' for p in HUB_FILES)


def hub_snapshot(spec):
    """The local snapshot of a named model's weights (spec["hf_id"]): downloaded on first use (HUB_FILES
    only) and read from the Hugging Face cache after that. Offline (HF_HUB_OFFLINE=1, or no network) and not
    in the cache: one clear error naming the command that fetches the same files."""
    try:
        return Path(snapshot_download(spec["hf_id"], allow_patterns=list(HUB_FILES)))
    except LocalEntryNotFoundError:
        offline = " (HF_HUB_OFFLINE is set)" if hub_constants.HF_HUB_OFFLINE else ""
        gated = (" (Llama weights are gated: accept the licence on the hub and `hf auth login` first)"
                 if spec["family"] == "llama" else "")
        raise FileNotFoundError(
            f"{spec['hf_id']} is not on disk (Hugging Face cache {hub_constants.HF_HUB_CACHE}) and could not "
            f"be downloaded{offline}: fetch it with `{download_command(spec['hf_id'])}`{gated}, or pass "
            "--model=PATH to a local folder") from None


def fresh_rows(lm, rows):
    """Set `rows` of the input embedding and the head to the other rows' mean plus Gaussian noise at their
    per-dimension spread: new tokens that start near the known ones yet distinct from each other."""
    weights = {id(w): w for w in (lm.get_input_embeddings().weight, lm.get_output_embeddings().weight)}
    with torch.no_grad():
        for w in weights.values():
            known = ~torch.isin(torch.arange(w.shape[0]), rows)
            ref = w[known.to(w.device)].float()
            noise = torch.randn(len(rows), w.shape[1]).to(w.device)
            w[rows.to(w.device)] = (ref.mean(0) + ref.std(0) * noise).to(w.dtype)


def reuse_ids(counts, candidates, K):
    """The K least frequent of `candidates` under `counts` (token id -> count): motion_vocab="reuse" (§5.1).
    Ties go to the higher id: BPE learns its rarest merges last. Every chosen token must be unused."""
    chosen = sorted(candidates, key=lambda i: (counts.get(i, 0), -i))[:K]
    missing = K - sum(counts.get(i, 0) == 0 for i in chosen)
    if missing:
        raise ValueError(f"motion_vocab=reuse needs {K} text tokens that the captions never use, but the "
                         f"tokenizer has only {K - missing} ({missing} missing): use motion_vocab=add")
    return sorted(chosen)
