"""Lookup-free quantization (LFQ) for the 2D motion tokenizer: bit-packed indices and the exact entropy loss.

Paper §4.2 (after MAGVIT-v2, Yu et al. 2023): the codebook is the set C = {-1, +1}^d of K = 2^d codes, so
nothing is looked up. For z in R^d, eq. (2):

    Q(z_i) = -1 if z_i <= 0 else +1,        Index(z) = sum_i 2^i * 1{z_i > 0}   (dimension 0 = LSB)

The tokenizer is trained with an entropy penalty over the soft code assignment (docs/tokenizer.md):

    l_n(c) = 2 * (z_n . c) / T,   p_n = softmax_c(l_n),   q = mean_n p_n
    sample_entropy   = mean_n H(p_n)    (pushed down: confident codes)
    codebook_entropy = H(q)             (pushed up: all K codes used)

The softmax factorises over bits: with a = 2z/T, l_n(c) = sum_i a_ni c_i, so p_n(c) = prod_i p_ni(c_i) with
p_ni(+-1) = sigmoid(+-2 a_ni). Two exact consequences, neither of which ever forms an N x K tensor:
- H(p_n) = sum_i h(sigmoid(2 a_ni)), h the binary entropy: a closed form over N x d numbers;
- the bit split. Cut the d bits into the low d1 = floor(d/2) and the high d2 = d - d1, K1 = 2^d1 low codes
  and K2 = 2^d2 high codes, c = c_hi * K1 + c_lo (dimension 0 stays the least significant bit). Then
  p_n(c) = P_lo[n, c_lo] * P_hi[n, c_hi], P_lo = softmax over the K1 low codes of a_lo . c_lo [N, K1] and
  P_hi likewise [N, K2], and the code mass is one small matrix product:

      mass(c_hi * K1 + c_lo) = sum_n p_n(c) = (P_hi^T P_lo)[c_hi, c_lo]            [K2, K1] = [K]

  N (K1 + K2) exponentials instead of N K, N K multiply-adds. Backward, with G = dL/dmass as [K2, K1]:
  dL/dP_lo = P_hi G, dL/dP_hi = P_lo G^T, then each half's softmax backward.
"""

import math

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

MAX_BITS = 18  # K = 2^18 codes at most (the paper uses d = 14, K = 16384)
# Which implementation runs: "auto" = the Triton kernels (kernels/lfq_triton.py) for CUDA tensors (float64:
# the PyTorch reference here), the reference otherwise; "triton" or "reference" forces one (tests, bench).
# "triton" on CPU tensors needs TRITON_INTERPRET=1 set before triton is first imported (tests/conftest.py).
BACKEND = "auto"
# The reference holds P_lo and P_hi for a chunk of samples: at most this many entries, 16 MiB in fp32
# (N = 16384 at d = 14 in one chunk; 4096 samples per chunk at d = 18)
REFERENCE_TILE = 1 << 22


def _use_triton(x: torch.Tensor) -> bool:
    if BACKEND not in ("auto", "triton", "reference"):
        raise ValueError(f'kernels.lfq.BACKEND must be "auto", "triton" or "reference", got {BACKEND!r}')
    return BACKEND == "triton" or (BACKEND == "auto" and x.is_cuda and x.dtype != torch.float64)


def _check_bits(d: int, what: str, z=None) -> None:  # (and that z, if given, is floating-point)
    if not 1 <= d <= MAX_BITS:
        raise ValueError(f"{what}: LFQ needs 1 <= d <= {MAX_BITS} bits per code (K = 2^d codes), got d = {d}")
    if z is not None and not z.is_floating_point():
        raise TypeError(f"{what}: z must be a floating-point tensor, got {z.dtype}")


def _triton():  # kernels/lfq_triton.py, and with it triton, imported when a tensor first takes that path
    from kernels import lfq_triton
    return lfq_triton


def _quantize_reference(z: torch.Tensor):
    bits = z > 0
    weights = torch.pow(2, torch.arange(z.shape[-1], device=z.device, dtype=torch.int64))  # 1, 2, 4, ...
    return torch.where(bits, 1.0, -1.0).to(z.dtype), (bits.to(torch.int64) * weights).sum(-1)


def _codes_reference(idx: torch.Tensor, d: int) -> torch.Tensor:
    bits = torch.bitwise_and(idx.unsqueeze(-1) >> torch.arange(d, device=idx.device), 1)
    return bits.to(torch.float32) * 2 - 1


def _half_softmaxes(z: torch.Tensor, temperature: float):
    """Yield (rows, a, P_lo, P_hi, C_lo, C_hi) per chunk of samples: a = 2z/T [C, d]; C_lo [K1, d1] and
    C_hi [K2, d2] the codes of each half (row c = lfq_codes(c)); P_lo = softmax(a_lo C_lo^T) [C, K1] and
    P_hi = softmax(a_hi C_hi^T) [C, K2]. At d = 1 the low half has no bits: K1 = 1 and P_lo = 1."""
    n, d = z.shape
    d_lo = d // 2
    codes_lo = _codes_reference(torch.arange(2**d_lo, device=z.device), d_lo).to(z.dtype)
    codes_hi = _codes_reference(torch.arange(2 ** (d - d_lo), device=z.device), d - d_lo).to(z.dtype)
    chunk = max(1, REFERENCE_TILE // (len(codes_lo) + len(codes_hi)))
    for start in range(0, n, chunk):
        a = z[start : start + chunk] * (2.0 / temperature)
        p_lo = torch.softmax(a[:, :d_lo] @ codes_lo.T, dim=1)
        p_hi = torch.softmax(a[:, d_lo:] @ codes_hi.T, dim=1)
        yield slice(start, start + chunk), a, p_lo, p_hi, codes_lo, codes_hi


def _mass_fwd_reference(z: torch.Tensor, temperature: float) -> torch.Tensor:
    d = z.shape[1]
    mass = torch.zeros(2 ** (d - d // 2), 2 ** (d // 2), device=z.device, dtype=z.dtype)  # [K2, K1]
    for _, _, p_lo, p_hi, _, _ in _half_softmaxes(z, temperature):
        mass.addmm_(p_hi.T, p_lo)
    return mass.view(-1)


def _mass_bwd_reference(z: torch.Tensor, temperature: float, grad_mass: torch.Tensor) -> torch.Tensor:
    """dL/dz from G = dL/dmass as [K2, K1], recomputing P_lo and P_hi chunk by chunk:
        softmax backward per half: dL/dl_lo(c_lo) = P_lo(c_lo) (dL/dP_lo(c_lo) - gbar_n), likewise for hi;
        gbar_n = sum_c_lo P_lo dL/dP_lo = sum_c_hi P_hi dL/dP_hi = sum_c p_n(c) g(c), the same for both halves
        dl(c)/dz_ni = 2 c_i / T and sum_c P(c) c_i = tanh(a_ni) (the mean of bit i), so per half
        dL/dz_ni = (2/T) (sum_c P(c) dL/dP(c) c_i - gbar_n tanh(a_ni))"""
    g = grad_mass.view(-1, 2 ** (z.shape[1] // 2))  # G [K2, K1]
    grad_z = torch.empty_like(z)
    for rows, a, p_lo, p_hi, codes_lo, codes_hi in _half_softmaxes(z, temperature):
        weighted_lo = (p_hi @ g).mul_(p_lo)  # P_lo dL/dP_lo, [C, K1]
        weighted_hi = (p_lo @ g.T).mul_(p_hi)  # P_hi dL/dP_hi, [C, K2]
        gbar = weighted_lo.sum(1, keepdim=True)
        grad_codes = torch.cat([weighted_lo @ codes_lo, weighted_hi @ codes_hi], dim=1)  # [C, d]
        grad_z[rows] = (2.0 / temperature) * (grad_codes - gbar * torch.tanh(a))
    return grad_z


class _Quantize(torch.autograd.Function):
    """(q, idx) = quantize(z); straight-through: dL/dz = dL/dq, passed on unchanged."""

    @staticmethod
    def forward(ctx, z):
        q, idx = _triton().quantize(z) if _use_triton(z) else _quantize_reference(z)
        ctx.mark_non_differentiable(idx)
        return q, idx

    @staticmethod
    def backward(ctx, grad_q, grad_idx):
        return grad_q


class _CodeMass(torch.autograd.Function):
    """mass [K] = sum_n p_n by the bit split; the backward recomputes P_lo, P_hi (only z, mass are saved)."""

    @staticmethod
    def forward(ctx, z, temperature):
        mass = _triton().mass_fwd(z, temperature) if _use_triton(z) else _mass_fwd_reference(z, temperature)
        ctx.save_for_backward(z, mass)
        ctx.temperature = temperature
        return mass

    @staticmethod
    def backward(ctx, grad_mass):
        z, mass = ctx.saved_tensors
        # Shifting g by a constant changes nothing (sum_c p_n(c) = 1); centring it on its mean under the
        # code distribution keeps the two terms of the backward small, so their difference loses fewer digits.
        grad_mass = grad_mass - (grad_mass * mass).sum() / mass.sum()
        bwd = _triton().mass_bwd if _use_triton(z) else _mass_bwd_reference
        return bwd(z, ctx.temperature, grad_mass.contiguous()), None


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks. The backward is the same sum: every rank's loss depends on every rank's input."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    backward = forward


def lfq_quantize(z: torch.Tensor):
    """z [..., d] -> (q = Q(z) [..., d] in z's dtype, straight-through; idx = Index(z) [...] int64): eq. 2."""
    d = z.shape[-1]
    _check_bits(d, "lfq_quantize", z)
    q, idx = _Quantize.apply(z.reshape(-1, d).contiguous())
    return q.view(z.shape), idx.view(z.shape[:-1])


def lfq_codes(idx: torch.Tensor, d: int) -> torch.Tensor:
    """idx [...] integer -> codes [..., d] float32 in {-1, +1}: the inverse of lfq_quantize's index."""
    _check_bits(d, "lfq_codes")
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise TypeError(f"lfq_codes: idx must be an integer tensor, got {idx.dtype}")
    idx = idx.to(torch.int64)
    if idx.numel() and (idx.min() < 0 or idx.max() >= 2**d):
        raise ValueError(f"lfq_codes: indices must lie in [0, 2^{d}), got [{idx.min()}, {idx.max()}]")
    flat = idx.reshape(-1).contiguous()
    codes = _triton().codes(flat, d) if _use_triton(flat) else _codes_reference(flat, d)
    return codes.view(*idx.shape, d)


def lfq_entropy(z: torch.Tensor, temperature: float = 1.0, distributed: bool = False):
    """z [..., d] -> (sample_entropy, codebook_entropy) of the module docstring: differentiable scalars in
    nats, in float32 (float64 for float64 z), in O(K + N*d) memory; the gradient reaches z in z's dtype.

    distributed=True, with torch.distributed initialised: q is the mean over all ranks' samples (sum_n p_n
    all-reduced, differentiably), so codebook_entropy is the concatenated batch's, on every rank. The
    all-reduce's backward sums the gradient over ranks, so each rank's z receives world_size x dH(q)/dz; DDP's
    averaging of parameter gradients over ranks then yields exactly the gradient of H(q) of the whole batch.
    sample_entropy stays the mean over the local samples."""
    d = z.shape[-1]
    _check_bits(d, "lfq_entropy", z)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"lfq_entropy: temperature must be a positive number, got {temperature}")
    z = z.reshape(-1, d)
    if z.shape[0] == 0:
        raise ValueError("lfq_entropy: z holds no samples (N = 0)")
    z = z.to(torch.float64 if z.dtype == torch.float64 else torch.float32).contiguous()

    # Per-sample entropy, closed form: bit i is +1 with probability sigmoid(x), x = 4 z_i / T, and
    # H(p_n) = sum_i h(x_ni), h(x) = softplus(-|x|) + |x| sigmoid(-|x|) (the binary entropy, overflow-free).
    x = (4.0 / temperature) * z.abs()
    sample_entropy = (F.softplus(-x) + x * torch.sigmoid(-x)).sum(-1).mean()

    mass = _CodeMass.apply(z, float(temperature))  # [K] = sum_n p_n
    if distributed and dist.is_available() and dist.is_initialized():
        mass = _AllReduceSum.apply(mass)
    q = mass / mass.sum()  # sum_c mass(c) = N (all ranks' N); dividing by the computed sum removes the
    # common part of the rounding error of p_n (the fp32 logits are only as exact as eps * sum_i |2 z_ni / T|)
    # 0 log 0 = 0: a code whose mass underflowed to 0 has p_n(c) = 0 for every n, so clamping inside the log
    # changes neither the value nor the gradient that reaches z.
    codebook_entropy = -(q * torch.log(q.clamp_min(torch.finfo(q.dtype).tiny))).sum()
    return sample_entropy, codebook_entropy


class LFQ(nn.Module):
    """Lookup-free quantizer (§4.2), d = log2 K bits (eq. 2 counts the dimensions from 1: 2^(i-1))."""

    n_layers = 1  # codes per vector z

    def __init__(self, K, temperature):
        super().__init__()
        if K < 2 or K & (K - 1):
            raise ValueError(f"LFQ needs the codebook size K to be a power of two (K = 2^d), got K = {K}")
        self.dim, self.temperature = int(math.log2(K)), temperature

    def forward(self, z, step):
        q, codes = lfq_quantize(z)  # straight-through gradient
        # the entropy penalty of the module docstring; under DDP, q is the mean over all ranks' samples
        sample_h, codebook_h = lfq_entropy(z, self.temperature, distributed=dist.is_initialized())
        return q, codes, {"commit": F.mse_loss(z, q.detach()), "entropy": sample_h - codebook_h}

    def nearest(self, z):
        return lfq_quantize(z)[1]

    def lookup(self, codes):
        return lfq_codes(codes, self.dim)
