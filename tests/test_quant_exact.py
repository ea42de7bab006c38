"""Our quantizers produce the bytes llama.cpp's own quantizer (llama_model_quantize, pure mode,
no importance matrix) writes, tensor by tensor, on weights with outliers, zero blocks and
denormals. Run on a tiny llama with 256-multiple rows so every block type applies."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support import tiny
from tests.support.compare import llamacpp_quantize
from tests.test_tiny_models import make_tokenizer
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.quant import get_qtype
from tinyconvert.quant.sizes import type_name
from tinyconvert.runtime.weights import dequantize

# llama.cpp file type number for a pure file of each tensor type
FTYPES = {"q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9, "q2_k": 10, "q3_k": 11,
          "q4_k": 14, "q5_k": 16, "q6_k": 18, "iq4_nl": 25, "iq4_xs": 30, "iq3_s": 26,
          "tq1_0": 36, "tq2_0": 37, "mxfp4": 38}


def _spice(path) -> None:
    """Outliers, all-zero blocks, tiny and denormal values, a constant block."""
    from safetensors.numpy import load_file, save_file
    t = load_file(path)
    rng = np.random.default_rng(1)
    for i, name in enumerate(sorted(k for k, v in t.items() if v.ndim == 2)):
        w = t[name].copy()
        flat = w.reshape(-1)
        flat[rng.integers(0, flat.size, 20)] *= 40.0                       # outliers
        flat[:64] = 0.0                                                    # zero blocks
        flat[64:96] = rng.standard_normal(32).astype(np.float32) * 1e-39  # denormals
        flat[96:128] = 0.25                                                # constant block
        flat[128:160] = -rng.random(32).astype(np.float32)                # one-signed block
        t[name] = w
    save_file(t, path)


@pytest.fixture(scope="module")
def f32_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("qexact")
    make_tokenizer(d, "gpt-2")
    tiny.build_model(d, "llama", hidden_size=256, intermediate_size=512, num_attention_heads=4,
                     n_kv_head=2)
    _spice(d / "model.safetensors")
    hf2gguf(str(d), d / "f32.gguf", outtype="f32", quiet=True)
    return d / "f32.gguf"


@pytest.mark.parametrize("qname", sorted(FTYPES))
def test_bytes_equal_llamacpp(f32_model, tmp_path, qname):
    out = tmp_path / f"{qname}.gguf"
    llamacpp_quantize(f32_model, out, FTYPES[qname], pure=True)
    src, ref = read_gguf(f32_model), read_gguf(out)
    src_t = {t.name: t for t in src.tensors}
    qtype = get_qtype(qname)
    checked = 0
    for t in ref.tensors:
        if t.ggml_type != qtype.ggml_id:
            continue
        rows = dequantize(src, src_t[t.name]).reshape(-1, t.ne[0])
        ours = qtype.quantize(rows)
        theirs = ref.tensor_bytes(t).reshape(ours.shape)
        assert np.array_equal(ours, theirs), f"{t.name} differs ({type_name(t.ggml_type)})"
        assert np.array_equal(qtype.dequantize(ours), dequantize(ref, t).reshape(rows.shape))
        checked += 1
    assert checked >= 14, f"only {checked} tensors were {qname} in llama.cpp's output"
