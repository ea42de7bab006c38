"""The one value transform hf2gguf applies that tracing cannot undo (export/traced.py moves
elements only): the state-space families' A = -exp(A_log), computed by torch in f32.

A_log is recovered as the f32 value whose -exp, computed the same way, is the file's A: the
nearest f32 to log(-A) and its neighbours are tried. Where exp is steep enough that one f32 A
comes from one f32 A_log (|A_log| above about 1, and A_log = 0 as transformers initialises
log 1), that is the checkpoint's value exactly; where several A_log give the same A, the
one nearest log(-A) is kept, and the exported model still computes the file's A bit for bit."""
from __future__ import annotations

import numpy as np

NEIGHBOURS = 3          # f32 steps either side of log(-A) that are tried
SUFFIX = ".A_log"
ARCHS = ("mamba", "mamba2")


def neg_exp_f32(x: np.ndarray) -> np.ndarray:
    """-exp(x) as hf2gguf computes it for an f32 checkpoint (reshape.neg_exp)."""
    import torch
    return (-torch.exp(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))).numpy()


def a_log_from_a(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    near = np.log(-a.astype(np.float64))
    best = near.astype(np.float32)
    found = neg_exp_f32(best) == a
    dist = np.where(found, np.abs(best - near), np.inf)
    for step in range(1, NEIGHBOURS + 1):
        for direction in (np.inf, -np.inf):
            cand = near.astype(np.float32)
            for _ in range(step):
                cand = np.nextafter(cand, np.float32(direction))
            ok = (neg_exp_f32(cand) == a) & (np.abs(cand - near) < dist)
            best, dist = np.where(ok, cand, best), np.where(ok, np.abs(cand - near), dist)
    return best


def a_log_names(arch_name: str, names) -> list[str]:
    return [n for n in names if arch_name in ARCHS and n.endswith(SUFFIX)]
