"""GPU kernels (Triton) with their PyTorch references."""

from kernels.lfq import lfq_codes, lfq_entropy, lfq_quantize

__all__ = ["lfq_codes", "lfq_entropy", "lfq_quantize"]
