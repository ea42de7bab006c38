"""The compiled Q8_0 / Q4_0 / Q5_0 block kernels (quant/legacy_numba.py) write the bytes of the
vectorised numpy ports they replace, on weights built to hit every edge: exact halves after
scaling (C's roundf rounds them away from zero), ties on the largest magnitude (the first wins),
zero, constant, one-signed, denormal and huge blocks. test_quant_exact holds the compiled path to
llama.cpp's own bytes."""
from __future__ import annotations

import numpy as np
import pytest

from tinyconvert.quant import legacy, q8_0
from tinyconvert.quant.kernels import compiled

TYPES = {"q8_0": (q8_0, "quantize"), "q4_0": (legacy, "quantize_q4_0"),
         "q5_0": (legacy, "quantize_q5_0")}


def edge_rows() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 256)).astype(np.float32)
    flat = x.reshape(-1, 32)
    flat[0] = 0
    flat[1] = 0.25
    flat[2] = -rng.random(32)
    flat[3] *= 1e-39
    flat[4] *= 1e30
    flat[5] = np.arange(-16, 16) + 0.5                 # q8_0: d = 1, so exact halves
    flat[5, 0] = -127.0
    flat[6] = np.linspace(-8, 8, 32)                   # -8 and 8: the first largest wins
    flat[7] = np.where(np.arange(32) % 2, 3.0, -3.0)
    flat[8:16] *= rng.integers(1, 1000, (8, 1)).astype(np.float32)
    return x


@pytest.mark.parametrize("name", sorted(TYPES))
def test_compiled_blocks_equal_numpy(name, monkeypatch):
    assert compiled("legacy_numba") is not None        # numba is a dependency
    mod, fn = TYPES[name]
    x = edge_rows()
    fast = getattr(mod, fn)(x)
    monkeypatch.setattr(mod, "compiled", lambda *a: None)
    slow = getattr(mod, fn)(x)
    assert fast.shape == slow.shape and fast.dtype == slow.dtype == np.uint8
    bad = np.flatnonzero((fast != slow).any(1))
    assert bad.size == 0, f"{name}: rows {bad[:5]} differ"
