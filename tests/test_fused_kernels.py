"""The whole-row compiled kernels, C (quant/kernels/ckernels.c) and numba
(quant/kernels/fused_*_numba.py), each write llama.cpp's bytes: ggml's own
ggml_quantize_chunk (libggml-base from llama-cpp-python) is the oracle, on weights built to hit
every edge: exact halves after scaling (C's roundf rounds them away from zero), ties on the
largest magnitude (the first wins), zero, constant, one-signed, denormal, huge (1e30: squares
overflow to inf and the searches see NaN) blocks. Sources in fp16 and bf16 are converted inside
the kernel; they must give the bytes of the same values in float32. The vectorised numpy ports
(the fallback without numba) are held to the same bytes."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.ggml_chunk import quantize_chunk
from tinyconvert.quant import get_qtype
from tinyconvert.quant.kernels import cload, fused, loader
from tinyconvert.quant import kquants, legacy, q8_0
from tinyconvert.quant.floats import bf16_bits_to_f32

NUMPY_PORTS = {"q8_0": (q8_0, "quantize"), "q4_0": (legacy, "quantize_q4_0"),
               "q5_0": (legacy, "quantize_q5_0"), "q4_k": (kquants, "quantize_q4_k"),
               "q5_k": (kquants, "quantize_q5_k"), "q6_k": (kquants, "quantize_q6_k")}


def edge_rows() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 512)).astype(np.float32)
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
    flat[16:24] = 0                                    # a whole zero super-block
    flat[24, :16] = 1e30                               # one huge Q6_K sub-block
    flat[32, 5] = 3e38
    flat[40:] *= 0.02                                  # ordinary weights
    return x


@pytest.fixture(scope="module")
def rows():
    return edge_rows()


def backend_kernel(backend: str, name: str):
    if backend == "c":
        return cload.row_kernel(name)
    module, fn = fused.FUSED[name][:2]
    return getattr(loader.compiled(module), fn)


def test_c_library_is_built():
    """pip install builds quant/kernels/ckernels.c where a C compiler exists (it is optional so
    that a machine without one still installs); the test machines have one (llama-cpp-python
    compiles from source), so a missing library here is a broken build, not a fallback."""
    assert cload.library() is not None, "the C kernels were not built: reinstall with pip -e ."
    assert fused.kernel("q8_0").__module__ == cload.__name__      # and they are the ones used


@pytest.mark.parametrize("backend", ["c", "numba"])
@pytest.mark.parametrize("name", sorted(fused.FUSED))
def test_kernels_write_ggml_bytes(rows, name, backend):
    qtype = get_qtype(name)
    theirs = quantize_chunk(qtype.ggml_id, rows)
    kernel = backend_kernel(backend, name)
    for src_dtype, src, values in _sources(rows):
        ours = loader.run_rows(kernel, src, src_dtype, *fused.FUSED[name][2:])
        want = theirs if src_dtype == "F32" else quantize_chunk(qtype.ggml_id, values)
        bad = np.flatnonzero((ours != want).any(1))
        assert ours.shape == want.shape and bad.size == 0, \
            f"{backend} {name} from {src_dtype}: rows {bad[:5]}"


@pytest.mark.parametrize("name", ["q4_0", "q5_0", "q4_k", "q5_k", "q6_k"])
def test_c_kernels_on_many_random_blocks(name):
    """Ordinary weights of many scales, ~100k blocks: a rounding or order slip that the edge
    rows miss shows here."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((256, 4096)) * rng.lognormal(-3, 1.5, (256, 1))).astype(np.float32)
    ours = loader.run_rows(cload.row_kernel(name), x, "F32", *fused.FUSED[name][2:])
    want = quantize_chunk(get_qtype(name).ggml_id, x)
    assert np.array_equal(ours, want)


def test_c_kernel_refuses_a_ragged_row():
    with pytest.raises(ValueError, match="C kernel refused"):
        cload.row_kernel("q4_k")(np.zeros((1, 100), np.float32), 0, loader.half_table(),
                                 np.zeros((1, 100), np.uint8))


def _sources(x):
    half = x.astype(np.float16)
    bf = (x.view(np.uint32) >> 16).astype(np.uint16)       # truncated: any bf16 bits will do
    return [("F32", x, x), ("F16", half, half.astype(np.float32)),
            ("BF16", bf, bf16_bits_to_f32(bf).reshape(x.shape))]


@pytest.mark.parametrize("name", sorted(NUMPY_PORTS))
def test_numpy_ports_write_the_same_bytes(rows, name, monkeypatch):
    mod, fn = NUMPY_PORTS[name]
    fast = getattr(mod, fn)(rows)
    monkeypatch.setattr(mod, "quantize_rows", lambda *a: None)
    slow = getattr(mod, fn)(rows)
    assert fast.dtype == slow.dtype == np.uint8
    bad = np.flatnonzero((fast != slow).any(1))
    assert fast.shape == slow.shape and bad.size == 0, f"{name}: rows {bad[:5]} differ"


def test_fp16_rounding_equals_numpy():
    """The kernels' own float32 -> fp16 rounding (numba's and C's) against numpy's on every exponent, the
    rounding boundaries around each, overflow, subnormals, inf and NaN."""
    from tinyconvert.quant.kernels.numba_rows import f16_bits_array
    rng = np.random.default_rng(3)
    exps = np.arange(256, dtype=np.uint32) << 23
    mant = np.concatenate([rng.integers(0, 1 << 23, 2000, dtype=np.uint32),
                           np.array([0, 1, 0xFFF, 0x1000, 0x1001, 0x2FFF, 0x3000, 0x7FFFFF],
                                    dtype=np.uint32)])
    bits = (exps[:, None] | mant[None, :]).ravel()
    bits = np.concatenate([bits, bits | 0x80000000])
    v = bits.view(np.float32)
    theirs = v.astype(np.float16).view(np.uint16)
    for backend, ours in (("numba", f16_bits_array(v)), ("c", cload.f16_bits(v))):
        bad = np.flatnonzero(ours != theirs)
        assert v.size > 1_000_000 and bad.size == 0, \
            f"{backend}: {bad.size} values differ, e.g. {v[bad[:3]]}"
