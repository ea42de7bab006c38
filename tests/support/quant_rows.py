"""Seeded weight rows and importance matrices for per-tensor byte tests: rows of realistic scale
(std ~0.05) with outliers, heavy tails, zero, tiny, denormal, constant and one-signed blocks, and
f16-rounded values with many ties; matrices log-normal, with zero columns, or constant."""
from __future__ import annotations

import numpy as np

F = np.float32


def spiced_rows(n_rows: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n_rows, k)) * 0.05).astype(F)
    x[1::4] = (rng.standard_t(3, (len(x[1::4]), k)) * 0.03).astype(F)      # heavy tails
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, max(4, flat.size // 500))] *= 40.0      # outliers
    if n_rows >= 8:
        x[2, :32] = 0.0                                                     # a zero block
        x[2, 32:64] = (rng.standard_normal(32) * 1e-39).astype(F)          # denormals
        x[3, :32] = 0.25                                                    # constant block
        x[3, 32:64] = -rng.random(32).astype(F) * 0.1                       # one-signed block
        x[4] = x[4].astype(np.float16).astype(F)                            # f16 ties
        x[5] = (np.round(x[5] * 64) / 64).astype(F)                         # many exact ties
        x[6, :k // 2] = (rng.standard_normal(k // 2) * 1e-9).astype(F)     # tiny blocks
        x[7, :] = 0.0                                                       # a zero row
    if n_rows >= 12:            # few distinct values, +-0 mixed: IQ1's sort must keep ties stable
        x[8] = (rng.integers(-2, 3, k) * 0.02).astype(F)
        x[8, rng.random(k) < 0.1] = -0.0
    return x


def imatrix(kind: str, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1000)
    if kind == "lognormal":
        return rng.lognormal(0.0, 1.5, k).astype(F)
    if kind == "zero_cols":
        qw = rng.lognormal(0.0, 1.0, k).astype(F)
        qw[rng.random(k) < 0.2] = 0.0
        return qw
    if kind == "constant":
        return np.full(k, 0.37, dtype=F)
    raise ValueError(kind)


IMATRIX_KINDS = ("lognormal", "zero_cols", "constant")
