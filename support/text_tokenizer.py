"""The language model's text tokenizer (model.py): GPT-2's byte-level BPE through tiktoken, read from a
vocab.json + merges.txt pair (a GPT-2 checkpoint's, tiktoken's cached gpt2 files, or a BPE trained on the
captions for the tiny models), or a checkpoint's own Hugging Face tokenizer (Llama)."""

import hashlib
import json
import os
import tempfile
from pathlib import Path
from unittest.mock import patch

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import r50k_pat_str
from tokenizers import ByteLevelBPETokenizer


def normalise_caption(text):
    """The one normalisation of captions (training, sampling, the evaluator): single spaces, lower case."""
    text = " ".join(text.split()).lower()
    if not text:
        raise ValueError("empty caption")
    return text


class TextTokenizer:
    """A tiktoken Encoding built from vocab.json + merges.txt (`files` holds their bytes, which save() writes
    back), or a Hugging Face tokenizer; encode() adds no special tokens."""

    def __init__(self, tok, files=None):
        self.tok, self.files = tok, files
        if files is not None:
            self.n_vocab, self.eos_id, self.bos_id, self.pad_id = tok.n_vocab, tok.eot_token, None, None
            self.special_ids = {tok.eot_token}
        else:
            self.n_vocab, self.eos_id, self.bos_id = len(tok), tok.eos_token_id, tok.bos_token_id
            self.pad_id = tok.pad_token_id
            self.special_ids = set(tok.all_special_ids) | set(tok.added_tokens_decoder)

    def encode(self, text):
        if self.files:
            return self.tok.encode_ordinary(text)
        return self.tok.encode(text, add_special_tokens=False)

    def encode_batch(self, texts):
        if self.files:
            return self.tok.encode_ordinary_batch(texts)
        return self.tok(texts, add_special_tokens=False)["input_ids"]

    def decode(self, ids):
        return self.tok.decode(ids)

    def spell(self, token_id):
        """A token as the single-character tokens it is made of (a byte-level BPE has one per byte; a
        SentencePiece vocabulary per character, else its <0xXX> byte tokens): the same text in smaller
        pieces, for a caption token that motion_vocab=reuse gave to a motion code (model.MotionLM)."""
        if self.files:
            return [self.tok.encode_single_token(bytes([b]))
                    for b in self.tok.decode_single_token_bytes(token_id)]
        ids = []
        for char in self.tok.convert_ids_to_tokens(token_id):
            i = self.tok.convert_tokens_to_ids(char)
            ids += [i] if i != self.tok.unk_token_id else \
                self.tok.convert_tokens_to_ids([f"<0x{b:02X}>" for b in char.encode()])
        return ids

    def save(self, folder):
        if self.files is None:
            self.tok.save_pretrained(folder)
        for name, data in (self.files or {}).items():
            (Path(folder) / name).write_bytes(data)


def bpe_from_files(vocab_json=None, merges_txt=None):
    """GPT-2's BPE from a vocab.json + merges.txt pair (= OpenAI's encoder.json + vocab.bpe) as a tiktoken
    Encoding: one loader for GPT-2 checkpoints, the tiny models' BPE and (none given) tiktoken's gpt2."""
    if vocab_json is None:
        vocab_json, merges_txt = tiktoken_gpt2_files()
    # An empty cache dir makes tiktoken read the files as they are. With a cache it keeps a copy keyed by the
    # *path* and returns that copy the next time: a run folder whose BPE was retrained would read as the old.
    with patch.dict(os.environ, TIKTOKEN_CACHE_DIR=""):  # (the variable as it was afterwards)
        ranks = data_gym_to_mergeable_bpe_ranks(str(merges_txt), str(vocab_json))
    vocab_bytes, merges_bytes = Path(vocab_json).read_bytes(), Path(merges_txt).read_bytes()
    eot = json.loads(vocab_bytes).get("<|endoftext|>", len(ranks))
    enc = tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": eot})
    return TextTokenizer(enc, {"vocab.json": vocab_bytes, "merges.txt": merges_bytes})


def tiktoken_gpt2_files():
    """(encoder.json, vocab.bpe) in tiktoken's cache. tiktoken.get_encoding("gpt2") downloads them when
    absent, with no timeout, so we look first (tiktoken/load.py's layout: a file is named sha1 of its URL)."""
    data_gym = os.environ.get("DATA_GYM_CACHE_DIR", os.path.join(tempfile.gettempdir(), "data-gym-cache"))
    cache = os.environ.get("TIKTOKEN_CACHE_DIR", data_gym)
    url = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"  # as tiktoken_ext.openai_public
    files = [Path(cache, hashlib.sha1(f"{url}{name}".encode()).hexdigest())
             for name in ("encoder.json", "vocab.bpe")]
    if not cache or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"GPT-2's tokenizer is not on disk (no vocab.json + merges.txt beside the "
                                f"weights, no tiktoken cache in {cache or '(disabled)'}): fetch it with "
                                "`hf download gpt2 vocab.json merges.txt`")
    return files


def train_bpe(texts, vocab_size):
    """A byte-level BPE (GPT-2's scheme) trained on `texts`, written as a vocab.json + merges.txt pair like
    GPT-2's and loaded through the same path. The vocabulary: 256 bytes, the merges, then <|endoftext|>."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        vocab = json.loads(Path(tmp, "vocab.json").read_text())
        Path(tmp, "vocab.json").write_text(json.dumps({**vocab, "<|endoftext|>": len(vocab)}))
        return bpe_from_files(Path(tmp, "vocab.json"), Path(tmp, "merges.txt"))
