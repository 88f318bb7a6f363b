"""Triton kernels of kernels/lfq.py: the LFQ index and codes, and the bit-split code mass with its backward
(the math is in kernels/lfq.py's docstring).

z is [N, d] row-major; the bit/dimension axis is padded to D_PAD = max(16, 2^ceil(log2 d)) (tl.dot needs
>= 16) and masked, and so are code blocks of fewer than 16 codes (K1 or K2 < 16). Row indices stay int32
(N < 2^31); element offsets are int64 (_row_offsets casts the row index before multiplying, as Liger-Kernel
does), so N * d >= 2^31 is safe. Bytes below are for fp32 z; the entropy kernels keep P_lo and P_hi in
registers and never write them.
"""

import contextlib
import os

import torch
import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"  # Triton kernels run on the CPU, in Python


@triton.jit
def _row_offsets(rows, cols, D: tl.constexpr):  # rows * D + cols [BLOCK_N, D_PAD] in int64 (see the top)
    return rows.to(tl.int64)[:, None] * D + cols[None, :]


@triton.jit
def _quantize_kernel(z_ptr, q_ptr, idx_ptr, N, D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    """q = where(z > 0, +1, -1) in z's dtype and idx = sum_i 2^i [z_i > 0], one pass over BLOCK_N rows.
    Memory: reads N*d elements of z, writes N*d of q and 8N bytes of idx; nothing else."""
    rows, cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N), tl.arange(0, D_PAD)
    mask = (rows[:, None] < N) & (cols[None, :] < D)
    offs = _row_offsets(rows, cols, D)
    bits = (tl.load(z_ptr + offs, mask=mask, other=0.0) > 0) & mask
    tl.store(q_ptr + offs, tl.where(bits, 1.0, -1.0).to(q_ptr.dtype.element_ty), mask=mask)
    idx = tl.sum(bits.to(tl.int64) << cols[None, :].to(tl.int64), axis=1)  # bit i <- dimension i
    tl.store(idx_ptr + rows, idx, mask=rows < N)


@triton.jit
def _codes_kernel(idx_ptr, q_ptr, N, D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    """q_i = 2 * ((idx >> i) & 1) - 1, float32, for BLOCK_N indices. Memory: reads 8N bytes of idx, writes
    4*N*d bytes of q."""
    rows, cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N), tl.arange(0, D_PAD)
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
    """One half's softmax at a block of its codes: bits [FIRST, FIRST + BITS) of the index, 2^BITS codes:
        P[n, c] = exp(sum_{i in half} a_ni s_i(c) - sum_{i in half} log(2 cosh a_ni))     [BLOCK_N, BLOCK_C]
        S[c, i] = s_i(c) = 2 * bit i of (c << FIRST) - 1 for i in the half, 0 elsewhere    [BLOCK_C, D_PAD]
    The normaliser is the closed form, so a block needs no other block. Codes >= 2^BITS (the padding of a
    half with fewer than 16 codes) get P = 0. Returns (P, S)."""
    in_half = (cols >= FIRST) & (cols < FIRST + BITS)
    bits = ((codes[:, None] << FIRST) >> cols[None, :]) & 1
    signs = tl.where(in_half[None, :], bits.to(tl.float32) * 2 - 1, 0.0)
    log_norm = tl.sum(tl.where(in_half[None, :], log_cosh, 0.0), axis=1)
    logits = tl.dot(a, tl.trans(signs), input_precision="ieee")  # fp32 products: TF32 would ruin small T
    return tl.where(codes[None, :] < (1 << BITS), tl.exp(logits - log_norm[:, None]), 0.0), signs


@triton.jit
def _mass_fwd_kernel(z_ptr, partial_ptr, N, scale, D: tl.constexpr, D_LO: tl.constexpr, D_PAD: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_LO: tl.constexpr, BLOCK_HI: tl.constexpr):
    """partial[s, c_hi * K1 + c_lo] = sum_{n in split s} P_hi[n, c_hi] P_lo[n, c_lo] for one block of codes.
    Program (h, l, s) owns the block [h*BLOCK_HI, (h+1)*BLOCK_HI) x [l*BLOCK_LO, (l+1)*BLOCK_LO) of the
    [K2, K1] mass matrix (one block up to d = 14 on a GPU; d = 18, K1 = K2 = 512, has several) and every S-th
    tile of BLOCK_N samples (S splits on grid axis 2); the host sums the S partial rows: no atomics, a
    deterministic result. Memory: each program reads its N/S rows of z: 4*N*d*(K/(BLOCK_HI*BLOCK_LO)) bytes
    read in all, 4*S*K written. Work: 2*N*K flops in tl.dot + N*(K1 + K2) exp per code block's share."""
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
def _mass_bwd_kernel(z_ptr, g_ptr, dz_ptr, N, scale, D: tl.constexpr, D_LO: tl.constexpr, D_PAD: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_LO: tl.constexpr, BLOCK_HI: tl.constexpr):
    """dz for L(mass), given G = dL/dmass as [K2, K1], one program per BLOCK_N samples: the math of
    kernels/lfq.py's _mass_bwd_reference, with a half's sum_c P(c) dL/dP(c) s_i(c) as tl.dot(P*dL/dP, S). The
    low half loops over blocks of low codes, each summing over blocks of high codes (and the other way round),
    recomputing P_hi (P_lo) per block: one pass when a half fits a block, as up to d = 14 on a GPU. Memory:
    reads z and writes dz once (4*N*d bytes each), reads G twice per program (8*K*N/BLOCK_N bytes,
    L2-resident). Work: 4*N*K flops in tl.dot + N*(K1 + K2) exp times the number of code blocks of a half."""
    K_LO: tl.constexpr = 1 << D_LO
    K_HI: tl.constexpr = 1 << (D - D_LO)
    rows, cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N), tl.arange(0, D_PAD)
    a, log_cosh = _scaled_rows(z_ptr, rows, cols, N, scale, D)
    gbar, grad_codes = tl.zeros([BLOCK_N], dtype=tl.float32), tl.zeros([BLOCK_N, D_PAD], dtype=tl.float32)
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
# the GPU tiles compile for sm_80 and sm_90 with at most 12 bytes of register spill at the configs' d (10,
# 14), with 4 warps up to 2.4 KB; the backward at d = 12-13 (the sweep's only) spills 0.1-13 KB
# (bench/compile_lfq.py: ptxas from Triton's wheel, without a GPU; not timed on one).
TILES_GPU = (64, 64)
TILES_INTERPRETER = (512, 512)
WARPS_GPU = 8
BLOCK_ROWS = 1024 if INTERPRET else 128  # rows per program of the quantize and codes kernels
_d_pad = lambda d: max(16, triton.next_power_of_2(d))  # D_PAD (see the top)


def _tiles(d: int):
    """(D_PAD, BLOCK_N, BLOCK_LO, BLOCK_HI) of the entropy kernels for d bits."""
    block_n, block_codes = TILES_INTERPRETER if INTERPRET else TILES_GPU
    block_lo, block_hi = (max(16, min(block_codes, 2**bits)) for bits in (d // 2, d - d // 2))
    return _d_pad(d), block_n, block_lo, block_hi


def _on(t: torch.Tensor):  # launch on t's GPU, not the current one (a tensor on cuda:1 ran on GPU 0)
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def quantize(z: torch.Tensor):
    """z [N, d] -> (q [N, d] in {-1, +1}, idx [N] int64)."""
    n, d = z.shape
    q, idx = torch.empty_like(z), torch.empty(n, dtype=torch.int64, device=z.device)
    with _on(z):
        _quantize_kernel[(triton.cdiv(n, BLOCK_ROWS),)](z, q, idx, n, d, _d_pad(d), BLOCK_ROWS)
    return q, idx


def codes(idx: torch.Tensor, d: int) -> torch.Tensor:
    """idx [N] int64 -> codes [N, d] float32 in {-1, +1}."""
    n = idx.shape[0]
    q = torch.empty(n, d, dtype=torch.float32, device=idx.device)
    with _on(idx):
        _codes_kernel[(triton.cdiv(n, BLOCK_ROWS),)](idx, q, n, d, _d_pad(d), BLOCK_ROWS)
    return q


def mass_fwd(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """z [N, d] -> mass [K] = sum_n p_n, in float32."""
    n, d = z.shape
    d_pad, block_n, block_lo, block_hi = _tiles(d)
    code_blocks = (triton.cdiv(2 ** (d - d // 2), block_hi), triton.cdiv(2 ** (d // 2), block_lo))
    with _on(z):  # 4 programs per SM of z's GPU: sample splits fill what the code blocks leave
        programs = 4 if INTERPRET else 4 * torch.cuda.get_device_properties(z.device).multi_processor_count
        splits = max(1, min(triton.cdiv(n, block_n), programs // (code_blocks[0] * code_blocks[1])))
        partial = torch.empty(splits, 2**d, dtype=torch.float32, device=z.device)
        _mass_fwd_kernel[(*code_blocks, splits)](z, partial, n, 2.0 / temperature, d, d // 2, d_pad, block_n,
                                                 block_lo, block_hi, num_warps=WARPS_GPU)
    return partial.sum(0)


def mass_bwd(z: torch.Tensor, temperature: float, grad_mass: torch.Tensor) -> torch.Tensor:
    """dL/dz [N, d] from dL/dmass [K]."""
    n, d = z.shape
    d_pad, block_n, block_lo, block_hi = _tiles(d)
    dz = torch.empty_like(z)
    with _on(z):
        _mass_bwd_kernel[(triton.cdiv(n, block_n),)](z, grad_mass.float(), dz, n, 2.0 / temperature, d,
                                                     d // 2, d_pad, block_n, block_lo, block_hi,
                                                     num_warps=WARPS_GPU)
    return dz


def compile_specs(d: int):
    """{kernel name: (kernel, argument types, constexprs, num_warps)} as the wrappers above launch them for d
    bits (fp32 z), for compiling ahead of time (bench/compile_lfq.py: no GPU needed)."""
    d_pad, block_n, block_lo, block_hi = _tiles(d)
    rows = {"D": d, "D_PAD": d_pad, "BLOCK_N": BLOCK_ROWS}
    mass = {"D": d, "D_LO": d // 2, "D_PAD": d_pad, "BLOCK_N": block_n, "BLOCK_LO": block_lo,
            "BLOCK_HI": block_hi}
    quantize_args = {"z_ptr": "*fp32", "q_ptr": "*fp32", "idx_ptr": "*i64", "N": "i32"}
    return {"quantize": (_quantize_kernel, quantize_args, rows, 4),
            "codes": (_codes_kernel, {"idx_ptr": "*i64", "q_ptr": "*fp32", "N": "i32"}, rows, 4),
            "mass_fwd": (_mass_fwd_kernel, {"z_ptr": "*fp32", "partial_ptr": "*fp32", "N": "i32",
                                            "scale": "fp32"}, mass, WARPS_GPU),
            "mass_bwd": (_mass_bwd_kernel, {"z_ptr": "*fp32", "g_ptr": "*fp32", "dz_ptr": "*fp32", "N": "i32",
                                            "scale": "fp32"}, mass, WARPS_GPU)}
