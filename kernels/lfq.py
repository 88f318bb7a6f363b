"""Lookup-free quantization (LFQ) for the 2D motion tokenizer: bit-packed indices and the exact entropy loss.

Paper §4.2 (after MAGVIT-v2, Yu et al. 2023): the codebook is the set C = {-1, +1}^d of K = 2^d codes, so
nothing is looked up. For z in R^d, eq. (2):

    Q(z_i) = -1 if z_i <= 0 else +1,        Index(z) = sum_i 2^i * 1{z_i > 0}   (dimension 0 = LSB)

The tokenizer is trained with an entropy penalty over the soft code assignment (DESIGN.md):

    l_n(c) = 2 * (z_n . c) / T,   p_n = softmax_c(l_n),   q = mean_n p_n
    sample_entropy   = mean_n H(p_n)    (pushed down: confident codes)
    codebook_entropy = H(q)             (pushed up: all K codes used)

Two exact shortcuts make this O(K + N*d) memory instead of the usual N x K:
- the softmax factorises over bits, p_n(c) = prod_i sigmoid(2 * c_i * a_ni) with a = 2z/T, so
  log sum_c exp(l_n(c)) = sum_i log(2 cosh a_ni) and H(p_n) = sum_i h(sigmoid(2 a_ni)), h the binary entropy;
- q does not factorise, so it is streamed over tiles of samples x codes and only its K entries are kept;
  its backward recomputes p tile by tile (never stored).

Two implementations of that stream: Triton kernels (CUDA tensors; CPU tensors under TRITON_INTERPRET=1 when
FORCE_TRITON is set) and a chunked PyTorch reference (everything else).

Public functions: lfq_quantize, lfq_codes, lfq_entropy.
"""

import math

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn

MAX_BITS = 18  # K = 2^18 codes at most (the paper uses d = 14, K = 16384)
REFERENCE_TILE = 1 << 22  # the reference holds at most this many (sample, code) pairs at once (16 MiB fp32)


def _check_bits(d: int, what: str) -> None:
    if not 1 <= d <= MAX_BITS:
        raise ValueError(f"{what}: LFQ needs 1 <= d <= {MAX_BITS} bits per code (K = 2^d codes), got d = {d}")


# ---------------------------------------------------------------------------------------------------------
# PyTorch reference (runs anywhere; chunked over samples so it never holds N x K)
# ---------------------------------------------------------------------------------------------------------


def _bit_weights(d: int, device) -> torch.Tensor:
    return torch.pow(2, torch.arange(d, device=device, dtype=torch.int64))  # [d]: 1, 2, 4, ...


def _quantize_reference(z: torch.Tensor):
    bits = z > 0
    q = torch.where(bits, 1.0, -1.0).to(z.dtype)
    idx = (bits.to(torch.int64) * _bit_weights(z.shape[-1], z.device)).sum(-1)
    return q, idx


def _codes_reference(idx: torch.Tensor, d: int) -> torch.Tensor:
    bits = torch.bitwise_and(idx.unsqueeze(-1) >> torch.arange(d, device=idx.device), 1)
    return bits.to(torch.float32) * 2 - 1


def _log_normaliser(a: torch.Tensor) -> torch.Tensor:
    """log sum_c exp(a . c) = sum_i log(2 cosh a_i) = sum_i |a_i| + log(1 + exp(-2|a_i|)); [N, d] -> [N]."""
    return (a.abs() + torch.log1p(torch.exp(-2 * a.abs()))).sum(-1)


def _mass_tiles(z: torch.Tensor, temperature: float):
    """Yield (rows, a, p) over chunks of samples: a = 2z/T [C, d], p = softmax over all K codes [C, K]."""
    n, d = z.shape
    codes = _codes_reference(torch.arange(2**d, device=z.device), d).to(z.dtype)  # [K, d], K*d floats
    chunk = max(1, REFERENCE_TILE >> d)
    for start in range(0, n, chunk):
        a = z[start : start + chunk] * (2.0 / temperature)
        p = torch.exp(a @ codes.T - _log_normaliser(a)[:, None])  # p_n(c) = exp(l_n(c) - log Z_n)
        yield slice(start, start + chunk), a, p, codes


def _mass_fwd_reference(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """code_mass(c) = sum_n p_n(c), [K]."""
    mass = torch.zeros(2 ** z.shape[1], device=z.device, dtype=z.dtype)
    for _, _, p, _ in _mass_tiles(z, temperature):
        mass += p.sum(0)
    return mass


def _mass_bwd_reference(z: torch.Tensor, temperature: float, grad_mass: torch.Tensor) -> torch.Tensor:
    """dL/dz_ni = (2/T) (sum_c p_n(c) g(c) c_i - gbar_n tanh(a_ni)), g = dL/dmass, gbar_n = sum_c p_n(c) g(c).

    From dL/dl_n(c) = p_n(c) (g(c) - gbar_n) (softmax backward), dl_n(c)/dz_ni = 2 c_i / T and
    sum_c p_n(c) c_i = tanh(a_ni) (the mean of bit i under p_n).
    """
    grad_z = torch.empty_like(z)
    for rows, a, p, codes in _mass_tiles(z, temperature):
        weighted = p * grad_mass  # [C, K]
        gbar = weighted.sum(1, keepdim=True)
        grad_z[rows] = (2.0 / temperature) * (weighted @ codes - gbar * torch.tanh(a))
    return grad_z


# ---------------------------------------------------------------------------------------------------------
# autograd wrappers and the public functions
# ---------------------------------------------------------------------------------------------------------


class _Quantize(torch.autograd.Function):
    """(q, idx) = quantize(z); straight-through: dL/dz = dL/dq, passed on unchanged."""

    @staticmethod
    def forward(ctx, z):
        q, idx = _quantize_reference(z)
        ctx.mark_non_differentiable(idx)
        return q, idx

    @staticmethod
    def backward(ctx, grad_q, grad_idx):
        return grad_q


class _CodeMass(torch.autograd.Function):
    """mass(c) = sum_n softmax_c(2 z_n . c / T) for all K codes, [K]; backward recomputes p tile by tile."""

    @staticmethod
    def forward(ctx, z, temperature):
        mass = _mass_fwd_reference(z, temperature)
        ctx.save_for_backward(z, mass)
        ctx.temperature = temperature
        return mass

    @staticmethod
    def backward(ctx, grad_mass):
        z, mass = ctx.saved_tensors
        # Shifting g by a constant changes nothing (sum_c p_n(c) = 1); centring it on its mean under the
        # code distribution keeps the two terms of the backward small, so their difference loses fewer digits.
        grad_mass = grad_mass - (grad_mass * mass).sum() / mass.sum()
        bwd = _mass_bwd_reference
        return bwd(z, ctx.temperature, grad_mass.contiguous()), None


def lfq_quantize(z: torch.Tensor):
    """z [..., d] -> (q [..., d] in {-1, +1} in z's dtype, straight-through gradient; idx [...] int64).

    Eq. (2): q_i = +1 where z_i > 0 else -1 (z_i = 0 gives -1); idx = sum_i 2^i [z_i > 0] (dimension 0 = LSB).
    """
    d = z.shape[-1]
    _check_bits(d, "lfq_quantize")
    if not z.is_floating_point():
        raise TypeError(f"lfq_quantize: z must be a floating-point tensor, got {z.dtype}")
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
    codes = _codes_reference(flat, d)
    return codes.view(*idx.shape, d)


def lfq_entropy(z: torch.Tensor, temperature: float = 1.0, distributed: bool = False):
    """z [..., d] (flattened to [N, d]) -> (sample_entropy, codebook_entropy): differentiable scalars, nats.

    l_n(c) = 2 (z_n . c) / T over all K = 2^d codes, p_n = softmax(l_n), q = mean_n p_n;
    sample_entropy = mean_n H(p_n), codebook_entropy = H(q). Memory O(K + N*d): no N x K tensor.
    Computed in float32 (float64 for float64 input); the gradient reaches z in z's dtype.

    distributed=True, with torch.distributed initialised: q is the mean over the samples of all ranks
    (sum_n p_n all-reduced, differentiably), so codebook_entropy is the same on every rank and is the one of
    the concatenated batch. The all-reduce's backward sums the gradient over ranks, so each rank's z receives
    world_size x d H(q)/dz; DDP's averaging of parameter gradients over ranks then yields exactly the gradient
    of H(q) of the whole batch. sample_entropy stays the mean over the local samples.
    """
    d = z.shape[-1]
    _check_bits(d, "lfq_entropy")
    if not z.is_floating_point():
        raise TypeError(f"lfq_entropy: z must be a floating-point tensor, got {z.dtype}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"lfq_entropy: temperature must be a positive number, got {temperature}")
    z = z.reshape(-1, d)
    if z.shape[0] == 0:
        raise ValueError("lfq_entropy: z holds no samples (N = 0)")
    z = z.to(torch.float64 if z.dtype == torch.float64 else torch.float32).contiguous()

    # Per-sample entropy, closed form: bit i is +1 with probability sigmoid(x), x = 4 z_i / T, and
    # H(p_n) = sum_i h(x_ni), h(x) = softplus(-|x|) + |x| sigmoid(-|x|) (the binary entropy, overflow-free).
    x = (4.0 / temperature) * z.abs()
    sample_entropy = (torch.nn.functional.softplus(-x) + x * torch.sigmoid(-x)).sum(-1).mean()

    mass = _CodeMass.apply(z, float(temperature))  # [K] = sum_n p_n
    count = torch.tensor(float(z.shape[0]), dtype=mass.dtype, device=mass.device)
    if distributed and dist.is_available() and dist.is_initialized():
        mass = dist_fn.all_reduce(mass)
        dist.all_reduce(count)
    q = mass / count
    # 0 log 0 = 0: a code whose mass underflowed to 0 has p_n(c) = 0 for every n, so clamping inside the log
    # changes neither the value nor the gradient that reaches z.
    codebook_entropy = -(q * torch.log(q.clamp_min(torch.finfo(q.dtype).tiny))).sum()
    return sample_entropy, codebook_entropy
