"""What model.MotionLM.generate runs on: the key/value cache it decodes with, the keep masks of editing and
the draw of one token per row."""

import numpy as np
import torch
from transformers.cache_utils import Cache, DynamicLayer


class FilledLayer(DynamicLayer):
    """One layer's keys and values [B, heads, positions, dim], written into a buffer made once for
    `capacity` positions and handed to attention as views of its filled part. Hugging Face's DynamicLayer
    concatenates instead: every new token copies the whole cache, O(L²) over a motion of L tokens, and on a
    CPU that copy was a third of sampling's time (a tiny LM decoding 96 captions: 33 s -> 23 s, the same
    codes). A StaticCache would avoid it too, but attends over all `capacity` positions at every step."""

    def __init__(self, capacity):
        super().__init__()
        self.capacity, self.length = capacity, 0

    def lazy_initialization(self, key_states, value_states):
        self.device, self.is_initialized = key_states.device, True
        self.buffers = [s.new_empty(*s.shape[:2], self.capacity, s.shape[3])
                        for s in (key_states, value_states)]

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:  # more than asked for: grow (doubling keeps the copies O(L) in all)
            self.capacity = max(end, 2 * self.capacity)
            self.buffers = [torch.cat([b[:, :, :self.length], b.new_empty(*b.shape[:2], self.capacity -
                                                                          self.length, b.shape[3])], 2)
                            for b in self.buffers]
        for buffer, states in zip(self.buffers, (key_states, value_states), strict=True):
            buffer[:, :, self.length:end] = states
        self.length = end
        self.keys, self.values = (b[:, :, :end] for b in self.buffers)
        return self.keys, self.values

    def get_seq_length(self):
        return self.length


def filled_cache(config, capacity):
    """A cache of FilledLayers for a Hugging Face model of this config, room for `capacity` tokens a row."""
    return Cache(layers=[FilledLayer(capacity) for _ in range(config.num_hidden_layers)])


def forced_codes(keep, lm, limit, low):
    """MotionLM.generate's keep masks (one per prompt, or None) -> (vocabulary ids [B, T, P], forced
    [B, T, P] bool, limit, low): which token to force where, and the per-row step bounds, adjusted. A mask
    that keeps anything in its last step (part editing) fixes the motion to its T steps; one that keeps only
    leading steps (a continuation) makes the motion at least that long and lets the model end it."""
    keep = [None] * len(limit) if keep is None else keep
    if len(keep) != len(limit):
        raise ValueError(f"keep: {len(keep)} entries for {len(limit)} prompts")
    T = max([len(k[0]) for k in keep if k is not None], default=1)
    ids, forced = (torch.zeros(len(keep), T, lm.P, dtype=dtype) for dtype in (torch.long, torch.bool))
    for b in [b for b, k in enumerate(keep) if k is not None]:
        codes, mask = lm.code_ids(keep[b][0]), torch.as_tensor(np.asarray(keep[b][1])).bool()
        if mask.shape != codes.shape:
            raise ValueError(f"keep: the mask must be [T, P] as its codes are, got {tuple(mask.shape)} for "
                             f"{tuple(codes.shape)}")
        ids[b, :len(codes)], forced[b, :len(codes)] = codes, mask
        if mask[-1].any():  # part editing: the source's length
            low[b] = limit[b] = len(codes)
        elif mask.any():  # a continuation: at least up to the last kept step
            low[b] = max(int(low[b]), int(mask.any(1).nonzero()[-1]) + 1)
    if (low > limit).any():
        raise ValueError(f"keep: a source of {int(low.max())} steps does not fit: at most {int(limit.min())}")
    return ids.to(limit.device), forced.to(limit.device), limit, low


def sampler(temperature, top_k, top_p, generator):
    """draw(logits) -> one token per row (pick) with these settings; one clear error for impossible ones."""
    if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0, top_k >= 0 and 0 < top_p <= 1, got {temperature}, "
                         f"{top_k}, {top_p}")
    return lambda logits: pick(logits, temperature, top_k, top_p, generator)


def pick(logits, temperature, top_k, top_p, generator):
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
