"""GGUF files as "tensor name -> float32 torch tensor" sources, dequantizing on demand: our own
decoders where tinyconvert.quant has the type, gguf-py's for the rest (K-quants, IQ types)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tinyconvert.formats.gguf_file import GgufFile, TensorInfo
from tinyconvert.formats.gguf_model import GgufModel, open_gguf
from tinyconvert.quant import qtype_by_id
from tinyconvert.quant.int8_grouped import GROUP_KEY, SCALE_SUFFIX
from tinyconvert.quant.int8_grouped import dequantize as int8_dequantize
from tinyconvert.quant.sizes import block_info
from tinyconvert.quant.tmac.tmac_lut import LutWeights
from tinyconvert.runtime.lut import LutLinear


class GgufWeights:
    """get(name) dequantizes one tensor when asked; only the token embeddings are kept (they are
    used twice when the output is tied)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file: GgufModel = open_gguf(self.path)      # a split model: all its shards
        self.tensors = {t.name: t for t in self.file.tensors}
        self.fields = self.file.values()
        self.magic = self.file.magic
        self._keep: dict[str, torch.Tensor] = {}
        self.int8_group = self.fields.get(GROUP_KEY)
        if self.int8_group:          # companion scale tensors are not model tensors
            self.names = [n for n in self.tensors if not n.endswith(SCALE_SUFFIX)]
        else:
            self.names = list(self.tensors)

    def __call__(self, name: str) -> torch.Tensor | None:
        if name in self._keep:
            return self._keep[name]
        t = self.tensors.get(name)
        if t is None:
            return None
        if (tt := self.file.types.tmac(t.ggml_type)) is not None:   # LUT path, no dequantizing
            return LutLinear(LutWeights.from_tmac(tt.unpack(self.file.tensor_bytes(t), t.shape)))
        scale = self.tensors.get(name + SCALE_SUFFIX) if self.int8_group else None
        if scale is not None:        # tinyconvert's grouped INT8: codes times per-group scales
            codes = self.file.tensor_bytes(t).view(np.int8).reshape(-1, t.ne[0])
            s = dequantize(self.file, scale).reshape(codes.shape[0], -1)
            out = torch.from_numpy(int8_dequantize(codes, s).reshape(t.shape))
        else:
            out = torch.from_numpy(dequantize(self.file, t))
        if name == "token_embd.weight":
            self._keep[name] = out
        return out

    def all(self) -> dict[str, torch.Tensor]:
        return {name: self(name) for name in self.names}


def dequantize(f: GgufFile | GgufModel, t: TensorInfo) -> np.ndarray:
    """float32 in torch order (outermost dimension first), a fresh writable array."""
    if (tt := f.types.tmac(t.ggml_type)) is not None:
        return tt.unpack(f.tensor_bytes(t), t.shape).dequantize()
    block, type_size = block_info(t.ggml_type)
    n_rows = t.n_elements // t.ne[0]
    raw = f.tensor_bytes(t).reshape(n_rows, t.ne[0] // block * type_size)
    try:
        rows = qtype_by_id(t.ggml_type).dequantize(raw)
    except KeyError:                 # types we only read (IQ*, ...): gguf-py's dequantizers
        import gguf
        rows = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(t.ggml_type))
    return np.array(rows, dtype=np.float32, copy=True).reshape(t.shape)
