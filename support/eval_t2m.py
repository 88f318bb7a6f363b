"""The standard HumanML3D evaluator (Guo et al. 2022, "Generating Diverse and Natural 3D Human Motions from
Text"), re-implemented so that its released checkpoint loads and our numbers compare with published ones
(paper Table 3; docs/evaluation.md). eval.py uses it as its own evaluator: load(), then embed_texts and
embed_motions. Architecture and checkpoint layout as in EricGuo5513/text-to-motion (networks/modules.py), with
T2M-GPT's evaluator settings (the constants below). The GloVe index files are pickles: read only from the
folder the user passes, through an unpickler that builds plain data and refuses anything else (a pickle can
otherwise run code).
"""

import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

WORD_DIM, TEXT_HIDDEN, MOTION_HIDDEN, CO_EMB, MOVEMENT = 300, 512, 1024, 512, 512
UNIT, MAX_TEXT, MAX_FRAMES, FEAT_DIM = 4, 20, 196, 263
# The part-of-speech one-hot (utils/word_vectorizer.py): spaCy's coarse tags, plus five "very important
# word" classes that override a word's tag when it is in their list.
POS = ["VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV", "Loc_VIP", "Body_VIP", "Obj_VIP",
       "Act_VIP", "Desc_VIP", "OTHER"]
VIP = {
    "Loc_VIP": "left right clockwise counterclockwise anticlockwise forward back backward up down straight "
               "curve",
    "Body_VIP": "arm chin foot feet face hand mouth leg waist eye knee shoulder thigh",
    "Obj_VIP": "stair dumbbell chair window floor car ball handrail baseball basketball",
    "Act_VIP": "walk run swing pick bring kick put squat throw hop dance jump turn stumble stop sit lift "
               "lower raise wash stand kneel stroll rub bend balance flap jog shuffle lean rotate spin "
               "spread climb",
    "Desc_VIP": "slowly carefully fast careful slow quickly happy angry sad happily angrily sadly",
}
VIP_OF = {word: tag for tag, words in VIP.items() for word in words.split()}


class MovementConvEncoder(nn.Module):
    """Features without the foot contacts [B, T, 259] -> movement latents [B, T/4, 512]."""

    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(nn.Conv1d(FEAT_DIM - 4, MOVEMENT, 4, 2, 1), nn.Dropout(0.2),
                                  nn.LeakyReLU(0.2), nn.Conv1d(MOVEMENT, MOVEMENT, 4, 2, 1), nn.Dropout(0.2),
                                  nn.LeakyReLU(0.2))
        self.out_net = nn.Linear(MOVEMENT, MOVEMENT)

    def forward(self, x):
        return self.out_net(self.main(x.transpose(1, 2)).transpose(1, 2))


class BiGRUCo(nn.Module):
    """The motion encoder: a bidirectional GRU from a learned initial state; its two last states -> the
    co-embedding."""

    def __init__(self, input_size=MOVEMENT, hidden_size=MOTION_HIDDEN):
        super().__init__()
        self.input_emb = nn.Linear(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = nn.Sequential(nn.Linear(hidden_size * 2, hidden_size), nn.LayerNorm(hidden_size),
                                        nn.LeakyReLU(0.2), nn.Linear(hidden_size, CO_EMB))
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden_size))

    def forward(self, x, lengths):
        packed = pack_padded_sequence(self.input_emb(x), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, last = self.gru(packed, self.hidden.repeat(1, len(x), 1))
        return self.output_net(torch.cat([last[0], last[1]], -1))


class TextEncoderBiGRUCo(BiGRUCo):  # the same over word vectors plus their part of speech's embedding
    def __init__(self):
        super().__init__(WORD_DIM, TEXT_HIDDEN)
        self.pos_emb = nn.Linear(len(POS), WORD_DIM)

    def forward(self, word_embs, pos_onehot, lengths):
        return super().forward(word_embs + self.pos_emb(pos_onehot), lengths)


class _PlainUnpickler(pickle.Unpickler):
    """Builds what pickle's own opcodes build (lists, dicts, str, int, float) and numpy scalars; any other
    class or function a file names is refused instead of imported."""

    ALLOWED = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data is read")


def _read_pickle(path):
    try:
        with open(path, "rb") as f:
            return _PlainUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: not a plain-data pickle ({e})") from None


class WordVectorizer:
    """"word/POS" -> (GloVe vector, POS one-hot), as utils/word_vectorizer.py: a word in a VIP list takes
    that class; a word missing from the vocabulary becomes "unk" with the OTHER tag."""

    def __init__(self, glove_dir):
        glove_dir = Path(glove_dir)
        paths = [glove_dir / f"our_vab_{name}" for name in ("data.npy", "words.pkl", "idx.pkl")]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing (the GloVe files of Guo et al.'s evaluator)")
        vectors = np.load(paths[0], allow_pickle=False)
        words, index = _read_pickle(paths[1]), _read_pickle(paths[2])
        if vectors.ndim != 2 or vectors.shape[1] != WORD_DIM or "unk" not in index:
            raise ValueError(f"{glove_dir}: expected {WORD_DIM}-d vectors and an 'unk' entry, got "
                             f"{vectors.shape} and {len(index)} words")
        self.vectors = {w: vectors[int(index[w])].astype(np.float32) for w in words}

    def __getitem__(self, token):
        word, _, pos = token.rpartition("/")
        if word not in self.vectors:
            word, pos = "unk", "OTHER"
        tag = VIP_OF.get(word, pos)
        onehot = np.zeros(len(POS), np.float32)
        onehot[POS.index(tag if tag in POS else "OTHER")] = 1
        return self.vectors[word], onehot


class T2MEvaluator:
    def __init__(self, words, mean, std, device="cpu"):
        self.words, self.device = words, device
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self.movement, self.text, self.motion = MovementConvEncoder(), TextEncoderBiGRUCo(), BiGRUCo()

    def modules(self):
        return {"movement_encoder": self.movement, "text_encoder": self.text, "motion_encoder": self.motion}

    @torch.no_grad()
    def embed_texts(self, captions, tokens=None):
        """Per caption its tokens ["a/DET", "man/NOUN", ...], cut to 20 and wrapped in sos/eos, padded with
        unk to 22 (dataset_TM_eval.py) -> [N, 512]."""
        if tokens is None or len(tokens) != len(captions):
            raise ValueError("the standard evaluator needs each caption's part-of-speech tokens (HumanML3D's "
                             "caption#tokens#start#end; texts.jsonl 'tokens'), and this dataset has none")
        seqs = [["sos/OTHER", *list(t)[:MAX_TEXT], "eos/OTHER"] for t in tokens]
        lengths = torch.tensor([len(s) for s in seqs])
        vecs = [[self.words[tok] for tok in s + ["unk/OTHER"] * (MAX_TEXT + 2 - len(s))] for s in seqs]
        word = torch.from_numpy(np.array([[w for w, _ in v] for v in vecs]))
        pos = torch.from_numpy(np.array([[p for _, p in v] for v in vecs]))
        return self.text(word.to(self.device), pos.to(self.device), lengths).cpu().numpy()

    @torch.no_grad()
    def embed_motions(self, feats):
        """Raw features [T, 263] each (T a multiple of 4, at most 196), normalised with the evaluator's own
        mean/std, contacts dropped, zero-padded to 196 frames as the protocol does (the padding reaches the
        last movement latent through the convolutions) -> [N, 512]."""
        lengths = np.array([len(f) for f in feats])
        if (lengths % UNIT).any() or (lengths > MAX_FRAMES).any() or (lengths < UNIT).any():
            raise ValueError(f"the standard evaluator takes {UNIT}..{MAX_FRAMES} frames in multiples of "
                             f"{UNIT}, got lengths {sorted(set(lengths.tolist()))[:5]}")
        x = np.zeros((len(feats), MAX_FRAMES, FEAT_DIM - 4), np.float32)
        for i, f in enumerate(feats):
            x[i, :len(f)] = ((np.asarray(f, np.float32) - self.mean) / self.std)[:, :-4]
        movements = self.movement(torch.from_numpy(x).to(self.device))
        return self.motion(movements, torch.from_numpy(lengths // UNIT)).cpu().numpy()


def load(checkpoint, glove_dir, meta_dir, device="cpu"):
    """Guo et al.'s finest.tar (torch.load(weights_only=True): tensors and plain data only), its GloVe folder
    and the folder with the evaluator's mean.npy / std.npy -> T2MEvaluator in eval mode."""
    meta_dir = Path(meta_dir)
    stats = []
    for name in ("mean.npy", "std.npy"):
        if not (meta_dir / name).is_file():
            raise FileNotFoundError(f"{meta_dir / name}: missing (the evaluator's own normalisation)")
        stats.append(np.load(meta_dir / name, allow_pickle=False))
        if stats[-1].shape != (FEAT_DIM,):
            raise ValueError(f"{meta_dir / name}: shape {stats[-1].shape}, expected ({FEAT_DIM},)")
    ev = T2MEvaluator(WordVectorizer(glove_dir), *stats, device)
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: missing (text_mot_match/model/finest.tar)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for key, module in ev.modules().items():
        if key not in state:
            raise ValueError(f"{checkpoint}: no {key!r} state (keys: {sorted(state)})")
        try:
            module.load_state_dict(state[key])
        except RuntimeError as e:
            raise ValueError(f"{checkpoint}: {key} does not fit the evaluator's layout: {e}") from None
        module.to(device).eval()
    return ev
