"""Experiments around the pipeline: the paper's claims, the codebook sweep, the choices of defaults."""
