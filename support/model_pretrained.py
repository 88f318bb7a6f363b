"""What starting from a pretrained LLM needs (model.build): its weights found on disk, never the network,
and its vocabulary grown by the motion tokens' rows, initialised near the known rows yet apart; or, with
motion_vocab="reuse" (§5.1, the paper's), the text tokens that the motion codes take over."""

from pathlib import Path

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError


def hub_snapshot(spec):
    """The Hugging Face cache's snapshot of a named model's weights (spec["hf_id"]). Never the network:
    weights that are not on disk are one clear error."""
    try:
        return Path(snapshot_download(spec["hf_id"], local_files_only=True))
    except LocalEntryNotFoundError:
        gated = " (Llama weights are gated: accept the licence on the hub and `hf auth login` first)"
        raise FileNotFoundError(
            f"{spec['hf_id']} is not on disk (Hugging Face cache {hub_constants.HF_HUB_CACHE}): fetch it "
            f"with `hf download {spec['hf_id']}`{gated if spec['family'] == 'llama' else ''}, or pass "
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
