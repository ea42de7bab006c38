"""The importance-matrix paths of our quantizers produce llama.cpp's bytes: each registry type's
quantize(rows, imatrix) against ggml_quantize_chunk (libggml-base from llama-cpp-python) on
seeded spiced rows, several row widths and several kinds of matrix, and the dequantized values
against gguf-py's dequantizer."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.ggml_chunk import quantize_chunk, requires_imatrix
from tests.support.quant_rows import IMATRIX_KINDS, imatrix, spiced_rows
from tinyconvert.quant import get_qtype
from tinyconvert.quant.iq.iq_types import NEEDS_IMATRIX

LEGACY = ("q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl")
KQUANTS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")
IQ = ("iq4_xs", "iq3_s", "iq3_xxs", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s")
# types llama.cpp quantizes without a matrix (ggml_quantize_requires_imatrix is false)
IQ_NO_MATRIX = ("iq4_xs", "iq3_s", "iq3_xxs", "iq2_s", "iq1_m")
WIDTHS = {**{t: (96, 256, 1536) for t in LEGACY}, **{t: (256, 512, 1536) for t in KQUANTS + IQ}}


def _check(qname, rows, qw, label):
    qtype = get_qtype(qname)
    ours = qtype.quantize(rows, imatrix=qw)
    theirs = quantize_chunk(qtype.ggml_id, rows, qw)
    bad = np.flatnonzero((ours != theirs).any(1))
    assert bad.size == 0, f"{qname} {label}: rows {bad.tolist()} differ"
    return ours


@pytest.mark.parametrize("kind", IMATRIX_KINDS)
@pytest.mark.parametrize("qname", LEGACY + KQUANTS + IQ)
def test_imatrix_bytes_equal_llamacpp(qname, kind):
    for seed, k in enumerate(WIDTHS[qname]):
        rows = spiced_rows(12, k, seed)
        ours = _check(qname, rows, imatrix(kind, k, seed), f"k={k} {kind}")
        # the matrix changes the result (else this would only re-test the ref path)
        if kind == "lognormal" and qname not in NEEDS_IMATRIX:
            assert not np.array_equal(ours, get_qtype(qname).quantize(rows)), \
                f"{qname} ignored the matrix"


@pytest.mark.parametrize("qname", IQ_NO_MATRIX)
def test_no_imatrix_bytes_equal_llamacpp(qname):
    for seed, k in enumerate(WIDTHS[qname]):
        _check(qname, spiced_rows(12, k, seed), None, f"k={k} no matrix")


@pytest.mark.parametrize("qname", IQ)
def test_iq_dequantize_roundtrip(qname):
    """gguf-py's dequantizer (written independently of llama.cpp's quantizer) reads our blocks
    back close to the input: the layout is the one the format defines."""
    qtype = get_qtype(qname)
    rows = (np.random.default_rng(7).standard_normal((16, 512)) * 0.05).astype(np.float32)
    qw = imatrix("lognormal", 512, 7)
    back = qtype.dequantize(qtype.quantize(rows, imatrix=qw))
    rel = np.linalg.norm(back - rows) / np.linalg.norm(rows)
    bound = {"iq4_xs": 0.15, "iq3_s": 0.25, "iq3_xxs": 0.3, "iq2_s": 0.4, "iq2_xs": 0.45,
             "iq2_xxs": 0.5, "iq1_m": 0.6, "iq1_s": 0.65}[qname]
    assert rel < bound, f"{qname}: relative error {rel:.3f} >= {bound}"


def test_which_types_need_a_matrix():
    """Our refusals are llama.cpp's: ggml_quantize_requires_imatrix for every registered type,
    and a type that needs one raises a one-line error instead of aborting."""
    from tinyconvert.quant.registry import REGISTRY
    assert {n for n, q in REGISTRY.items() if requires_imatrix(q.ggml_id)} == set(NEEDS_IMATRIX)
    rows = spiced_rows(2, 256, 0)
    for qname in NEEDS_IMATRIX:
        with pytest.raises(ValueError, match="needs an importance matrix"):
            get_qtype(qname).quantize(rows)
