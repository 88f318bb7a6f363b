"""GPU kernels (Triton) with their PyTorch references."""
