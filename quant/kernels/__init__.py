"""Compiled kernels (numba) shared by the quant types, and where they are loaded from."""
