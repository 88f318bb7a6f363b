"""Lookup-free quantization (LFQ) for the 2D motion tokenizer: bit-packed indices and the exact entropy loss.

Paper §4.2 (after MAGVIT-v2, Yu et al. 2023): the codebook is the set C = {-1, +1}^d of K = 2^d codes, so
nothing is looked up. For z in R^d, eq. (2):

    Q(z_i) = -1 if z_i <= 0 else +1,        Index(z) = sum_i 2^i * 1{z_i > 0}   (dimension 0 = LSB)

The tokenizer is trained with an entropy penalty over the soft code assignment (DESIGN.md):

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

Two implementations of the mass: Triton kernels (CUDA tensors; CPU tensors under TRITON_INTERPRET=1 when
BACKEND = "triton") and a PyTorch reference (everything else). The per-sample entropy is written once in
PyTorch and used by both.

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
# The reference holds P_lo and P_hi for a chunk of samples: at most this many entries, 16 MiB in fp32
# (N = 16384 at d = 14 in one chunk; 4096 samples per chunk at d = 18)
REFERENCE_TILE = 1 << 22


def _use_triton(x: torch.Tensor) -> bool:
    if BACKEND not in ("auto", "triton", "reference"):
        raise ValueError(f'kernels.lfq.BACKEND must be "auto", "triton" or "reference", got {BACKEND!r}')
    return BACKEND == "triton" or (BACKEND == "auto" and x.is_cuda and x.dtype != torch.float64)


def _check_bits(d: int, what: str) -> None:
    if not 1 <= d <= MAX_BITS:
        raise ValueError(f"{what}: LFQ needs 1 <= d <= {MAX_BITS} bits per code (K = 2^d codes), got d = {d}")


# ---------------------------------------------------------------------------------------------------------
# PyTorch reference (runs anywhere; chunked over samples where N (K1 + K2) would be large)
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
    """mass(c_hi * K1 + c_lo) = sum_n P_hi[n, c_hi] P_lo[n, c_lo] = (P_hi^T P_lo)[c_hi, c_lo], [K]."""
    d = z.shape[1]
    mass = torch.zeros(2 ** (d - d // 2), 2 ** (d // 2), device=z.device, dtype=z.dtype)  # [K2, K1]
    for _, _, p_lo, p_hi, _, _ in _half_softmaxes(z, temperature):
        mass.addmm_(p_hi.T, p_lo)
    return mass.view(-1)


def _mass_bwd_reference(z: torch.Tensor, temperature: float, grad_mass: torch.Tensor) -> torch.Tensor:
    """dL/dz from G = dL/dmass as [K2, K1], recomputing P_lo and P_hi chunk by chunk:

        dL/dP_lo = P_hi G  [C, K1],   dL/dP_hi = P_lo G^T  [C, K2]
        softmax backward per half: dL/dl_lo(c_lo) = P_lo(c_lo) (dL/dP_lo(c_lo) - gbar_n), likewise for hi;
        gbar_n = sum_c_lo P_lo dL/dP_lo = sum_c_hi P_hi dL/dP_hi = sum_c p_n(c) g(c), the same for both halves
        dl(c)/dz_ni = 2 c_i / T and sum_c P(c) c_i = tanh(a_ni) (the mean of bit i), so per half
        dL/dz_ni = (2/T) (sum_c P(c) dL/dP(c) c_i - gbar_n tanh(a_ni))
    """
    d = z.shape[1]
    g = grad_mass.view(2 ** (d - d // 2), 2 ** (d // 2))
    grad_z = torch.empty_like(z)
    for rows, a, p_lo, p_hi, codes_lo, codes_hi in _half_softmaxes(z, temperature):
        weighted_lo = (p_hi @ g).mul_(p_lo)  # P_lo dL/dP_lo, [C, K1]
        weighted_hi = (p_lo @ g.T).mul_(p_hi)  # P_hi dL/dP_hi, [C, K2]
        gbar = weighted_lo.sum(1, keepdim=True)
        grad_codes = torch.cat([weighted_lo @ codes_lo, weighted_hi @ codes_hi], dim=1)  # [C, d]
        grad_z[rows] = (2.0 / temperature) * (grad_codes - gbar * torch.tanh(a))
    return grad_z


# ---------------------------------------------------------------------------------------------------------
# Triton kernels. z is [N, d] row-major; the bit/dimension axis is padded to D_PAD = max(16, 2^ceil(log2 d))
# (tl.dot needs >= 16) and masked, and so are code blocks of fewer than 16 codes (K1 or K2 < 16). Row
# indices stay int32 (N < 2^31); element offsets are int64 (_row_offsets), so N * d >= 2^31 is safe. Bytes
# below are for fp32 z; the entropy kernels keep P_lo and P_hi in registers and never write them.
# ---------------------------------------------------------------------------------------------------------


@triton.jit
def _row_offsets(rows, cols, D: tl.constexpr):
    """Element offsets rows * D + cols [BLOCK_N, D_PAD], in int64: rows * D overflows int32 once N * d >= 2^31
    (as Liger-Kernel does, the row index is cast before the multiplication)."""
    return rows.to(tl.int64)[:, None] * D + cols[None, :]


@triton.jit
def _quantize_kernel(z_ptr, q_ptr, idx_ptr, N, D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    """q = where(z > 0, +1, -1) in z's dtype and idx = sum_i 2^i [z_i > 0], one pass over BLOCK_N rows.

    Memory: reads N*d elements of z, writes N*d of q and 8N bytes of idx; nothing else.
    """
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, D_PAD)
    mask = (rows[:, None] < N) & (cols[None, :] < D)
    offs = _row_offsets(rows, cols, D)
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
    tl.store(q_ptr + _row_offsets(rows, cols, D), bits.to(tl.float32) * 2 - 1, mask=mask)


@triton.jit
def _scaled_rows(z_ptr, rows, cols, N, scale, D: tl.constexpr):
    """a = (2/T) z for a tile of rows [BLOCK_N, D_PAD] (zero padding) and log(2 cosh a) (0 in the padding)."""
    mask = (rows[:, None] < N) & (cols[None, :] < D)
    a = tl.load(z_ptr + _row_offsets(rows, cols, D), mask=mask, other=0.0) * scale
    log_cosh = tl.abs(a) + tl.log(1.0 + tl.exp(-2.0 * tl.abs(a)))  # overflow-free
    return a, tl.where(mask, log_cosh, 0.0)


@triton.jit
def _half_probs(a, log_cosh, codes, cols, FIRST: tl.constexpr, BITS: tl.constexpr):
    """One half's softmax at a block of its codes: bits [FIRST, FIRST + BITS) of the index, 2^BITS codes.

        P[n, c] = exp(sum_{i in half} a_ni s_i(c) - sum_{i in half} log(2 cosh a_ni))     [BLOCK_N, BLOCK_C]
        S[c, i] = s_i(c) = 2 * bit i of (c << FIRST) - 1 for i in the half, 0 elsewhere    [BLOCK_C, D_PAD]
    The normaliser is the closed form, so a block needs no other block. Codes >= 2^BITS (the padding of a
    half with fewer than 16 codes) get P = 0. Returns (P, S).
    """
    in_half = (cols >= FIRST) & (cols < FIRST + BITS)
    bits = ((codes[:, None] << FIRST) >> cols[None, :]) & 1
    signs = tl.where(in_half[None, :], bits.to(tl.float32) * 2 - 1, 0.0)
    log_norm = tl.sum(tl.where(in_half[None, :], log_cosh, 0.0), axis=1)
    logits = tl.dot(a, tl.trans(signs), input_precision="ieee")  # fp32 products: TF32 would ruin small T
    return tl.where(codes[None, :] < (1 << BITS), tl.exp(logits - log_norm[:, None]), 0.0), signs


@triton.jit
def _mass_fwd_kernel(
    z_ptr, partial_ptr, N, scale, D: tl.constexpr, D_LO: tl.constexpr, D_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_LO: tl.constexpr, BLOCK_HI: tl.constexpr,
):
    """partial[s, c_hi * K1 + c_lo] = sum_{n in split s} P_hi[n, c_hi] P_lo[n, c_lo] for one block of codes.

    Program (h, l, s) owns the block [h*BLOCK_HI, (h+1)*BLOCK_HI) x [l*BLOCK_LO, (l+1)*BLOCK_LO) of the
    [K2, K1] mass matrix (one block up to d = 14 on a GPU; d = 18, K1 = K2 = 512, has several) and every S-th
    tile of BLOCK_N samples (S splits on grid axis 2); the host sums the S partial rows: no atomics, a
    deterministic result. Per tile:
        a = (2/T) z                                         [BLOCK_N, D_PAD]
        P_lo = _half_probs(low bits), P_hi = (high bits)   [BLOCK_N, BLOCK_LO], [BLOCK_N, BLOCK_HI]
        acc += P_hi^T P_lo                                  [BLOCK_HI, BLOCK_LO], one tl.dot
    Memory: each program reads its N/S rows of z: 4*N*d*(K/(BLOCK_HI*BLOCK_LO)) bytes read in all, 4*S*K
    written. Work: 2*N*K flops in tl.dot + N*(K1 + K2) exp per code block's share.
    """
    K_LO: tl.constexpr = 1 << D_LO
    K_HI: tl.constexpr = 1 << (D - D_LO)
    hi = tl.program_id(0) * BLOCK_HI + tl.arange(0, BLOCK_HI)
    lo = tl.program_id(1) * BLOCK_LO + tl.arange(0, BLOCK_LO)
    cols = tl.arange(0, D_PAD)
    acc = tl.zeros([BLOCK_HI, BLOCK_LO], dtype=tl.float32)
    for start in range(tl.program_id(2) * BLOCK_N, N, tl.num_programs(2) * BLOCK_N):
        rows = start + tl.arange(0, BLOCK_N)
        a, log_cosh = _scaled_rows(z_ptr, rows, cols, N, scale, D)
        p_lo, _ = _half_probs(a, log_cosh, lo, cols, 0, D_LO)
        p_hi, _ = _half_probs(a, log_cosh, hi, cols, D_LO, D - D_LO)
        p_lo = tl.where(rows[:, None] < N, p_lo, 0.0)  # padding rows add nothing
        acc += tl.dot(tl.trans(p_hi), p_lo, input_precision="ieee")
    offs = tl.program_id(2) * K_HI * K_LO + hi[:, None] * K_LO + lo[None, :]
    tl.store(partial_ptr + offs, acc, mask=(hi[:, None] < K_HI) & (lo[None, :] < K_LO))


@triton.jit
def _grad_block(g_ptr, hi, lo, D: tl.constexpr, D_LO: tl.constexpr):
    """G[hi, lo] [BLOCK_HI, BLOCK_LO] of G = dL/dmass as [K2, K1], 0 at the padding codes."""
    mask = (hi[:, None] < (1 << (D - D_LO))) & (lo[None, :] < (1 << D_LO))
    return tl.load(g_ptr + hi[:, None] * (1 << D_LO) + lo[None, :], mask=mask, other=0.0)


@triton.jit
def _mass_bwd_kernel(
    z_ptr, g_ptr, dz_ptr, N, scale, D: tl.constexpr, D_LO: tl.constexpr, D_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_LO: tl.constexpr, BLOCK_HI: tl.constexpr,
):
    """dz for L(mass), given G = dL/dmass as [K2, K1]: the forward's mirror, one program per BLOCK_N samples.

        dL/dP_lo = P_hi G  [BLOCK_N, K1],  dL/dP_hi = P_lo G^T  [BLOCK_N, K2]   (tl.dot, code block by block)
        gbar_n = sum_c_lo P_lo dL/dP_lo = sum_c p_n(c) g(c)   (the same from the high half)
        dz_ni = (2/T) (sum_c P(c) dL/dP(c) s_i(c) - gbar_n tanh(a_ni)),  each half's softmax backward, with
        sum_c P(c) s_i(c) = tanh(a_ni); the first sum is tl.dot(P * dL/dP, S) over the half's codes.
    The low half loops over blocks of low codes, each summing over blocks of high codes (and the other way
    round), recomputing P_hi (P_lo) per block: one pass when a half fits a block, as up to d = 14 on a GPU.
    Memory: reads z and writes dz once (4*N*d bytes each), reads G twice per program (8*K*N/BLOCK_N bytes,
    L2-resident). Work: 4*N*K flops in tl.dot + N*(K1 + K2) exp times the number of code blocks of a half.
    """
    K_LO: tl.constexpr = 1 << D_LO
    K_HI: tl.constexpr = 1 << (D - D_LO)
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, D_PAD)
    a, log_cosh = _scaled_rows(z_ptr, rows, cols, N, scale, D)
    gbar = tl.zeros([BLOCK_N], dtype=tl.float32)
    grad_codes = tl.zeros([BLOCK_N, D_PAD], dtype=tl.float32)
    for lo_start in range(0, K_LO, BLOCK_LO):  # low half: dL/dP_lo = P_hi G
        lo = lo_start + tl.arange(0, BLOCK_LO)
        grad_p = tl.zeros([BLOCK_N, BLOCK_LO], dtype=tl.float32)
        for hi_start in range(0, K_HI, BLOCK_HI):
            hi = hi_start + tl.arange(0, BLOCK_HI)
            p_hi, _ = _half_probs(a, log_cosh, hi, cols, D_LO, D - D_LO)
            grad_p += tl.dot(p_hi, _grad_block(g_ptr, hi, lo, D, D_LO), input_precision="ieee")
        p_lo, signs_lo = _half_probs(a, log_cosh, lo, cols, 0, D_LO)
        weighted = p_lo * grad_p
        gbar += tl.sum(weighted, axis=1)
        grad_codes += tl.dot(weighted, signs_lo, input_precision="ieee")
    for hi_start in range(0, K_HI, BLOCK_HI):  # high half: dL/dP_hi = P_lo G^T
        hi = hi_start + tl.arange(0, BLOCK_HI)
        grad_p = tl.zeros([BLOCK_N, BLOCK_HI], dtype=tl.float32)
        for lo_start in range(0, K_LO, BLOCK_LO):
            lo = lo_start + tl.arange(0, BLOCK_LO)
            p_lo, _ = _half_probs(a, log_cosh, lo, cols, 0, D_LO)
            grad_p += tl.dot(p_lo, tl.trans(_grad_block(g_ptr, hi, lo, D, D_LO)), input_precision="ieee")
        p_hi, signs_hi = _half_probs(a, log_cosh, hi, cols, D_LO, D - D_LO)
        grad_codes += tl.dot(p_hi * grad_p, signs_hi, input_precision="ieee")
    t = tl.exp(-2.0 * tl.abs(a))
    tanh_a = tl.where(a < 0, -1.0, 1.0) * (1.0 - t) / (1.0 + t)  # overflow-free
    dz = scale * (grad_codes - gbar[:, None] * tanh_a)
    tl.store(dz_ptr + _row_offsets(rows, cols, D), dz, mask=(rows[:, None] < N) & (cols[None, :] < D))


# (BLOCK_N, largest code block of a half) of the entropy kernels: register-sized tiles on a GPU; the
# interpreter runs programs one after another in Python, so there few large tiles are fastest. With 8 warps
# the GPU tiles compile for sm_90 with at most 24 bytes of register spill (d = 10 to 18), with 4 warps up to
# 2.4 KB (ptxas from Triton's wheel, checked without a GPU; not timed on one).
TILES_GPU = (64, 64)
TILES_INTERPRETER = (512, 512)
WARPS_GPU = 8


def _blocks(d: int):
    """(D_PAD, BLOCK_N, BLOCK_LO, BLOCK_HI, target number of programs: 4 per SM on a GPU) for d bits."""
    block_n, block_codes = TILES_INTERPRETER if INTERPRET else TILES_GPU
    if INTERPRET:
        programs = 4
    else:
        programs = 4 * torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    block_lo = max(16, min(block_codes, 2 ** (d // 2)))
    block_hi = max(16, min(block_codes, 2 ** (d - d // 2)))
    return max(16, triton.next_power_of_2(d)), block_n, block_lo, block_hi, programs


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
    d_pad, block_n, block_lo, block_hi, programs = _blocks(d)
    code_blocks = (triton.cdiv(2 ** (d - d // 2), block_hi), triton.cdiv(2 ** (d // 2), block_lo))
    splits = max(1, min(triton.cdiv(n, block_n), programs // (code_blocks[0] * code_blocks[1])))
    partial = torch.empty(splits, 2**d, dtype=torch.float32, device=z.device)
    _mass_fwd_kernel[(*code_blocks, splits)](
        z, partial, n, 2.0 / temperature, d, d // 2, d_pad, block_n, block_lo, block_hi, num_warps=WARPS_GPU
    )
    return partial.sum(0)


def _mass_bwd_triton(z: torch.Tensor, temperature: float, grad_mass: torch.Tensor) -> torch.Tensor:
    n, d = z.shape
    d_pad, block_n, block_lo, block_hi, _ = _blocks(d)
    dz = torch.empty_like(z)
    _mass_bwd_kernel[(triton.cdiv(n, block_n),)](
        z, grad_mass.float(), dz, n, 2.0 / temperature, d, d // 2, d_pad, block_n, block_lo, block_hi,
        num_warps=WARPS_GPU,
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
    """mass(c) = sum_n softmax_c(2 z_n . c / T) for all K codes, [K], by the bit split; the backward
    recomputes P_lo and P_hi (nothing but z and the K masses is saved)."""

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
