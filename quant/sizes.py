"""Block geometry of every GGML tensor type id: (weights per block, bytes per block).
gguf-py's GGML_QUANT_SIZES is the source for the upstream ids."""
from __future__ import annotations

import gguf

_SIZES = {int(t): v for t, v in gguf.GGML_QUANT_SIZES.items()}


def block_info(ggml_type: int) -> tuple[int, int]:
    """KeyError for an unknown id."""
    return _SIZES[int(ggml_type)]


def type_name(ggml_type: int) -> str:
    try:
        return gguf.GGMLQuantizationType(ggml_type).name
    except ValueError:
        return f"type{ggml_type}"
