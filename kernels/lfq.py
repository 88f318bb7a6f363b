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
BACKEND = "triton") and a chunked PyTorch reference (everything else). The per-sample entropy is a closed
form over N x d numbers, written once in PyTorch and used by both.

Public functions: lfq_quantize, lfq_codes, lfq_entropy.
"""

import math
import os

import torch
import torch.distributed as dist
import triton
import triton.language as tl

MAX_BITS = 18  # K = 2^18 codes at most (the paper uses d = 14, K = 16384)
# Which implementation runs: "auto" = the Triton kernels for CUDA tensors (float64: the reference), the
# reference otherwise; "triton" or "reference" forces one (tests, bench). "triton" on CPU tensors needs
# TRITON_INTERPRET=1 set before triton is first imported (tests/conftest.py does that without CUDA).
BACKEND = "auto"
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"  # Triton kernels run on the CPU, in Python
REFERENCE_TILE = 1 << 22  # (sample, code) pairs per reference tile: 16 MiB in fp32, at most two tiles alive


def _use_triton(x: torch.Tensor) -> bool:
    if BACKEND not in ("auto", "triton", "reference"):
        raise ValueError(f'kernels.lfq.BACKEND must be "auto", "triton" or "reference", got {BACKEND!r}')
    return BACKEND == "triton" or (BACKEND == "auto" and x.is_cuda and x.dtype != torch.float64)


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
    """Yield (rows, a, p, codes) per chunk of C samples: a = 2z/T [C, d], p [C, K] = softmax over all K codes
    (computed in place, one [C, K] buffer), codes [K, d] = every code, row c = lfq_codes(c)."""
    n, d = z.shape
    codes = _codes_reference(torch.arange(2**d, device=z.device), d).to(z.dtype)  # [K, d], K*d floats
    chunk = max(1, REFERENCE_TILE >> d)
    for start in range(0, n, chunk):
        a = z[start : start + chunk] * (2.0 / temperature)
        p = (a @ codes.T).sub_(_log_normaliser(a)[:, None]).exp_()  # p_n(c) = exp(l_n(c) - log Z_n), in place
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
        weighted = p.mul_(grad_mass)  # p_n(c) g(c), [C, K]
        gbar = weighted.sum(1, keepdim=True)
        grad_z[rows] = (2.0 / temperature) * (weighted @ codes - gbar * torch.tanh(a))
    return grad_z


# ---------------------------------------------------------------------------------------------------------
# Triton kernels. z is [N, d] row-major; the bit/dimension axis is padded to D_PAD = max(16, 2^ceil(log2 d))
# (tl.dot needs >= 16) and masked. Bytes below are for fp32 z; the entropy kernels stream N x K (sample, code)
# pairs through registers and never write them.
# ---------------------------------------------------------------------------------------------------------


@triton.jit
def _quantize_kernel(z_ptr, q_ptr, idx_ptr, N, D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    """q = where(z > 0, +1, -1) in z's dtype and idx = sum_i 2^i [z_i > 0], one pass over BLOCK_N rows.

    Memory: reads N*d elements of z, writes N*d of q and 8N bytes of idx; nothing else.
    """
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, D_PAD)
    mask = (rows[:, None] < N) & (cols[None, :] < D)
    offs = rows[:, None] * D + cols[None, :]
    bits = (tl.load(z_ptr + offs, mask=mask, other=0.0) > 0) & mask
    tl.store(q_ptr + offs, tl.where(bits, 1.0, -1.0).to(q_ptr.dtype.element_ty), mask=mask)
    idx = tl.sum(bits.to(tl.int64) << cols[None, :].to(tl.int64), axis=1)  # bit i <- dimension i
    tl.store(idx_ptr + rows, idx, mask=rows < N)


@triton.jit
def _codes_kernel(idx_ptr, q_ptr, N, D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    """q_i = 2 * ((idx >> i) & 1) - 1, float32, for BLOCK_N indices.

    Memory: reads 8N bytes of idx, writes 4*N*d bytes of q.
    """
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, D_PAD)
    idx = tl.load(idx_ptr + rows, mask=rows < N, other=0)
    bits = (idx[:, None] >> cols[None, :].to(tl.int64)) & 1
    mask = (rows[:, None] < N) & (cols[None, :] < D)
    tl.store(q_ptr + rows[:, None] * D + cols[None, :], bits.to(tl.float32) * 2 - 1, mask=mask)


@triton.jit
def _scaled_rows(z_ptr, rows, cols, N, scale, D: tl.constexpr):
    """a = (2/T) z for a tile of rows [BLOCK_N, D_PAD] (zero padding) and log Z_n = sum_i log(2 cosh a_ni)."""
    mask = (rows[:, None] < N) & (cols[None, :] < D)
    a = tl.load(z_ptr + rows[:, None] * D + cols[None, :], mask=mask, other=0.0) * scale
    log_cosh = tl.abs(a) + tl.log(1.0 + tl.exp(-2.0 * tl.abs(a)))  # log(2 cosh a), overflow-free
    return a, tl.sum(tl.where(mask, log_cosh, 0.0), axis=1)


@triton.jit
def _mass_fwd_kernel(
    z_ptr, partial_ptr, N, scale, K, D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """partial[s, c] = sum_{n in split s} p_n(c) for the BLOCK_K codes c of this program, p_n = softmax(l_n).

    Program (k, s) owns codes [k*BLOCK_K, (k+1)*BLOCK_K) and every S-th tile of BLOCK_N samples (S splits on
    grid axis 1); the host sums the S partial rows: no atomics, a deterministic result. Per tile:
        a = (2/T) z                                  [BLOCK_N, D_PAD]
        l = a @ C,  C[i, c] = 2*((c >> i) & 1) - 1   [D_PAD, BLOCK_K], made from the bits of c, never loaded
        p = exp(l - log Z_n),  log Z_n = sum_i log(2 cosh a_ni)   (the normaliser factorises over bits)
        acc[c] += sum_n p[n, c]
    Memory: each program reads its N/S rows of z (4*N*d/S bytes) and writes 4*BLOCK_K bytes: in all
    4*N*d*K/BLOCK_K bytes read (mostly from L2) and 4*S*K written. Work: 2*N*K*D_PAD flops + N*K exp.
    """
    ks = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
    cols = tl.arange(0, D_PAD)
    codes = tl.where(cols[:, None] < D, ((ks[None, :] >> cols[:, None]) & 1).to(tl.float32) * 2 - 1, 0.0)
    acc = tl.zeros([BLOCK_K], dtype=tl.float32)
    for start in range(tl.program_id(1) * BLOCK_N, N, tl.num_programs(1) * BLOCK_N):
        rows = start + tl.arange(0, BLOCK_N)
        a, log_norm = _scaled_rows(z_ptr, rows, cols, N, scale, D)
        logits = tl.dot(a, codes, input_precision="ieee")  # fp32 products: TF32 would ruin small T
        p = tl.exp(logits - log_norm[:, None])
        acc += tl.sum(tl.where(rows[:, None] < N, p, 0.0), axis=0)
    tl.store(partial_ptr + tl.program_id(1) * K + ks, acc, mask=ks < K)


@triton.jit
def _mass_bwd_kernel(
    z_ptr, g_ptr, dz_ptr, N, scale, K, D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """dz for L(mass), mass(c) = sum_n p_n(c), given g(c) = dL/dmass(c): one program per BLOCK_N samples.

    Softmax backward: dL/dl_n(c) = p_n(c) (g(c) - gbar_n), gbar_n = sum_c p_n(c) g(c); dl_n(c)/dz_ni = 2c_i/T:
        dz_ni = (2/T) (G_ni - gbar_n tanh(a_ni)),  G_n = sum_c p_n(c) g(c) c,  sum_c p_n(c) c_i = tanh(a_ni).
    For H(q), q = mass/N: g(c) = (-log q(c) - 1)/N, which gives the formula of the issue. The loop over all K
    codes recomputes p tile by tile (as in the forward) and accumulates gbar with a row sum and G with
    tl.dot(p*g [BLOCK_N, BLOCK_K], C^T [BLOCK_K, D_PAD]).
    Memory: reads z and writes dz once (4*N*d bytes each), reads g once per program (4*K*N/BLOCK_N bytes,
    L2-resident). Work: 4*N*K*D_PAD flops + N*K exp.
    """
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, D_PAD)
    a, log_norm = _scaled_rows(z_ptr, rows, cols, N, scale, D)
    gbar = tl.zeros([BLOCK_N], dtype=tl.float32)
    grad_codes = tl.zeros([BLOCK_N, D_PAD], dtype=tl.float32)
    for start in range(0, K, BLOCK_K):
        ks = start + tl.arange(0, BLOCK_K)
        bits = ((ks[:, None] >> cols[None, :]) & 1).to(tl.float32)
        codes_t = tl.where(cols[None, :] < D, bits * 2 - 1, 0.0)  # C^T, [BLOCK_K, D_PAD]
        p = tl.exp(tl.dot(a, tl.trans(codes_t), input_precision="ieee") - log_norm[:, None])
        weighted = p * tl.load(g_ptr + ks, mask=ks < K, other=0.0)[None, :]
        gbar += tl.sum(weighted, axis=1)
        grad_codes += tl.dot(weighted, codes_t, input_precision="ieee")
    t = tl.exp(-2.0 * tl.abs(a))
    tanh_a = tl.where(a < 0, -1.0, 1.0) * (1.0 - t) / (1.0 + t)  # overflow-free
    dz = scale * (grad_codes - gbar[:, None] * tanh_a)
    tl.store(dz_ptr + rows[:, None] * D + cols[None, :], dz, mask=(rows[:, None] < N) & (cols[None, :] < D))


# (BLOCK_N, BLOCK_K) of the entropy kernels: register-sized tiles on a GPU; the interpreter runs programs one
# after another in Python, so there few large tiles are fastest.
TILES_GPU = (64, 128)
TILES_INTERPRETER = (128, 2048)


def _blocks(d: int):
    """(D_PAD, BLOCK_N, BLOCK_K, target number of programs: 4 per SM on a GPU) for d bits."""
    block_n, block_k = TILES_INTERPRETER if INTERPRET else TILES_GPU
    if INTERPRET:
        programs = 4
    else:
        programs = 4 * torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    return max(16, triton.next_power_of_2(d)), block_n, max(16, min(block_k, 2**d)), programs


def _quantize_triton(z: torch.Tensor):
    n, d = z.shape
    q, idx = torch.empty_like(z), torch.empty(n, dtype=torch.int64, device=z.device)
    block_n = 1024 if INTERPRET else 128
    _quantize_kernel[(triton.cdiv(n, block_n),)](z, q, idx, n, d, max(16, triton.next_power_of_2(d)), block_n)
    return q, idx


def _codes_triton(idx: torch.Tensor, d: int) -> torch.Tensor:
    n = idx.shape[0]
    q = torch.empty(n, d, dtype=torch.float32, device=idx.device)
    block_n = 1024 if INTERPRET else 128
    _codes_kernel[(triton.cdiv(n, block_n),)](idx, q, n, d, max(16, triton.next_power_of_2(d)), block_n)
    return q


def _mass_fwd_triton(z: torch.Tensor, temperature: float) -> torch.Tensor:
    n, d = z.shape
    d_pad, block_n, block_k, programs = _blocks(d)
    k_blocks, n_blocks = triton.cdiv(2**d, block_k), triton.cdiv(n, block_n)
    splits = max(1, min(n_blocks, programs // k_blocks))
    partial = torch.empty(splits, 2**d, dtype=torch.float32, device=z.device)
    _mass_fwd_kernel[(k_blocks, splits)](z, partial, n, 2.0 / temperature, 2**d, d, d_pad, block_n, block_k)
    return partial.sum(0)


def _mass_bwd_triton(z: torch.Tensor, temperature: float, grad_mass: torch.Tensor) -> torch.Tensor:
    n, d = z.shape
    d_pad, block_n, block_k, _ = _blocks(d)
    dz = torch.empty_like(z)
    _mass_bwd_kernel[(triton.cdiv(n, block_n),)](
        z, grad_mass.float(), dz, n, 2.0 / temperature, 2**d, d, d_pad, block_n, block_k
    )
    return dz


# ---------------------------------------------------------------------------------------------------------
# autograd wrappers and the public functions
# ---------------------------------------------------------------------------------------------------------


class _Quantize(torch.autograd.Function):
    """(q, idx) = quantize(z); straight-through: dL/dz = dL/dq, passed on unchanged."""

    @staticmethod
    def forward(ctx, z):
        q, idx = _quantize_triton(z) if _use_triton(z) else _quantize_reference(z)
        ctx.mark_non_differentiable(idx)
        return q, idx

    @staticmethod
    def backward(ctx, grad_q, grad_idx):
        return grad_q


class _CodeMass(torch.autograd.Function):
    """mass(c) = sum_n softmax_c(2 z_n . c / T) for all K codes, [K]; backward recomputes p tile by tile."""

    @staticmethod
    def forward(ctx, z, temperature):
        mass = _mass_fwd_triton(z, temperature) if _use_triton(z) else _mass_fwd_reference(z, temperature)
        ctx.save_for_backward(z, mass)
        ctx.temperature = temperature
        return mass

    @staticmethod
    def backward(ctx, grad_mass):
        z, mass = ctx.saved_tensors
        # Shifting g by a constant changes nothing (sum_c p_n(c) = 1); centring it on its mean under the
        # code distribution keeps the two terms of the backward small, so their difference loses fewer digits.
        grad_mass = grad_mass - (grad_mass * mass).sum() / mass.sum()
        bwd = _mass_bwd_triton if _use_triton(z) else _mass_bwd_reference
        return bwd(z, ctx.temperature, grad_mass.contiguous()), None


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks. The backward is the same sum: every rank's loss depends on every rank's input."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


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
    codes = _codes_triton(flat, d) if _use_triton(flat) else _codes_reference(flat, d)
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
    if distributed and dist.is_available() and dist.is_initialized():
        mass = _AllReduceSum.apply(mass)
    q = mass / mass.sum()  # sum_c mass(c) = N (all ranks' N); dividing by the computed sum removes the
    # common part of the rounding error of p_n (the fp32 logits are only as exact as eps * sum_i |2 z_ni / T|)
    # 0 log 0 = 0: a code whose mass underflowed to 0 has p_n(c) = 0 for every n, so clamping inside the log
    # changes neither the value nor the gradient that reaches z.
    codebook_entropy = -(q * torch.log(q.clamp_min(torch.finfo(q.dtype).tiny))).sum()
    return sample_entropy, codebook_entropy
