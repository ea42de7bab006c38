"""The reference as llama.cpp's quantizer would make it at the candidate's own tensor types: the
yardstick verify judges a quantized file by when its drift is above what the type usually costs.

Our quantizers write llama.cpp's bytes, so a file that is exactly what llama-quantize makes of the
reference drifts exactly as much as this; a broken file (a wrong permutation, swapped tensors, a
wrong key) drifts far more, whatever the type's own cost on this model. A float file is its own
type's yardstick too: f32 costs only what llama.cpp computes differently from transformers."""
from __future__ import annotations

from dataclasses import replace

from tinyconvert.pipeline.sources import ModelSource


def requantized(ref: ModelSource, cand: ModelSource) -> ModelSource | None:
    """ref with every weight the candidate stores quantized put through that type and back, and
    computed as llama.cpp computes it from the converter's keys (its tanh GELU, its YaRN: what
    transformers does differently is a cost of any GGUF, not a fault of this one); or None when
    a type cannot be reproduced here (T-MAC, grouped INT8, types we only read, and the IQ types
    that exist only with the importance matrix the file was made with, which it does not hold)."""
    import torch

    from tinyconvert.quant import qtype_by_id
    from tinyconvert.quant.int8_grouped import GROUP_KEY
    from tinyconvert.quant.iq.iq_types import NEEDS_IMATRIX
    from tinyconvert.quant.tmac.tmac_types import BITS_KEY
    weights = cand.get
    if cand.kind != "gguf" or BITS_KEY in cand.fields or cand.fields.get(GROUP_KEY):
        return None
    try:
        types = {name: qtype_by_id(t.ggml_type) for name, t in weights.tensors.items()}
    except KeyError:
        return None
    if any(q.name in NEEDS_IMATRIX for q in types.values()):
        return None

    def get(name: str):
        x = ref.get(name)
        q = types.get(name)
        if x is None or q is None or q.name == "f32" or not q.fits(x.shape[-1]):
            return x
        rows = x.reshape(-1, x.shape[-1]).float().contiguous().numpy()
        return torch.from_numpy(q.dequantize(q.quantize(rows)).reshape(tuple(x.shape)).copy())
    return replace(ref, get=get, hparams=ref.as_llamacpp or ref.hparams)
