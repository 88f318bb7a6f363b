"""The quantizers the paper compares 2D-LFQ with (§5.3, Figures 4/5): VQ with an EMA codebook and residual VQ,
which BASELINES[kind](cfg) builds for `python tokenizer.py --kind=vq|rvq` and experiments/sweep.py."""

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


class VQ(nn.Module):
    """Vector quantizer with an EMA codebook and dead-code reset (T2M-GPT's QuantizeEMAReset):
    code_c = EMA(sum of the z assigned to c) / EMA(count of c); a code whose EMA count is too low becomes a
    random encoder output of the batch. Under DDP the sums and counts are all-reduced and the replacements
    come from rank 0, so every rank keeps the same codebook."""

    n_layers = 1  # codes per vector

    def __init__(self, K, dim, decay):
        super().__init__()
        self.K, self.dim, self.decay = K, dim, decay
        self.register_buffer("codebook", torch.zeros(K, dim))
        self.register_buffer("ema_sum", torch.zeros(K, dim))
        self.register_buffer("ema_count", torch.zeros(K))  # all codes dead: the first update resets them

    def nearest(self, z):  # argmin_c ||z - code_c||^2, [..., dim] -> [...]
        flat = z.reshape(-1, z.shape[-1])
        dist2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.pow(2).sum(1)
        return dist2.argmin(1).view(z.shape[:-1])

    def forward(self, z, step):
        flat = z.detach().reshape(-1, z.shape[-1])
        codes = self.nearest(flat)
        if self.training:  # the EMA codebook update (no gradient: flat is detached)
            counts = torch.bincount(codes, minlength=self.K).to(flat.dtype)
            sums = torch.zeros_like(self.ema_sum).index_add_(0, codes, flat)
            if dist.is_initialized():
                dist.all_reduce(counts)
                dist.all_reduce(sums)
            self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            # T2M-GPT resets codes whose EMA count is below 1 with 4096 vectors a batch for 512 codes: 1/8 of
            # a uniformly used code's count. min(1, N / 8K) keeps that ratio for small batches, where a count
            # of 1 would reset codes in use at every step (1 at T2M-GPT's and the paper's batch sizes).
            used = (self.ema_count >= (counts.sum() / (8 * self.K)).clamp(max=1.0))[:, None]
            # random batch rows for the others (CPU generator: its state is all that a resume has to restore)
            rows = flat[torch.randint(len(flat), (self.K,)).to(flat.device)].contiguous()
            if dist.is_initialized():
                dist.broadcast(rows, 0)
            self.codebook.copy_(torch.where(used, self.ema_sum / self.ema_count[:, None], rows))
        q = F.embedding(codes, self.codebook).view(z.shape)
        return z + (q - z).detach(), codes.view(z.shape[:-1]), {"commit": F.mse_loss(z, q)}

    def lookup(self, codes):  # [...] -> [..., dim]
        return F.embedding(codes, self.codebook)


class RVQ(nn.Module):
    """Residual VQ (Lee et al. 2022; MoMask): layer l quantizes what the layers before it left,
    r_l = r_(l-1) - q_(l-1); the output is sum_l q_l. Quantizer dropout: with probability p a training step
    uses only the first n layers, n ~ U{1..L}, drawn from (seed, step): the same on every DDP rank and
    after a resume."""

    def __init__(self, K, dim, decay, n_quantizers, dropout, seed):
        super().__init__()
        self.layers = nn.ModuleList(VQ(K, dim, decay) for _ in range(n_quantizers))  # one code per layer
        self.dim, self.n_layers, self.dropout, self.seed = dim, n_quantizers, dropout, seed

    def forward(self, z, step):
        n = len(self.layers)
        if self.training:
            rng = np.random.default_rng([self.seed, step])
            n = int(rng.integers(1, n + 1)) if rng.random() < self.dropout else n
        residual, total, codes, commit = z, torch.zeros_like(z), [], 0.0
        for layer in self.layers[:n]:
            q, c, aux = layer(residual, step)
            # layer l's commitment ||r_l - sg(q_l)||^2 reaches z through r_l = z - sum_(k<l) sg(q_k)
            q = q.detach()
            total, residual, commit = total + q, residual - q, commit + aux["commit"] / n
            codes.append(c)
        # one straight-through for the sum, so z gets the output's gradient (not n times it)
        return z + (total - z).detach(), torch.cat(codes, -1), {"commit": commit}

    def nearest(self, z):  # z [..., 1, dim] -> codes [..., L]
        codes, residual = [], z
        for layer in self.layers:
            codes.append(layer.nearest(residual))
            residual = residual - layer.lookup(codes[-1])
        return torch.cat(codes, -1)

    def lookup(self, codes):  # codes [..., L] -> sum of the L layers' vectors [..., 1, dim]
        return sum(layer.lookup(codes[..., i : i + 1]) for i, layer in enumerate(self.layers))


BASELINES = {  # kind -> its quantizer built from the tokenizer settings (tokenizer.CONFIG)
    "vq": lambda cfg: VQ(cfg["codebook_size"], cfg["vq_dim"], cfg["ema_decay"]),
    "rvq": lambda cfg: RVQ(cfg["codebook_size"], cfg["vq_dim"], cfg["ema_decay"], cfg["n_quantizers"],
                           cfg["quantizer_dropout"], cfg["seed"]),
}
