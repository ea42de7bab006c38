"""GGML tensor types: block layouts, quantize and dequantize of arrays. Knows nothing of files."""
from tinyconvert.quant import (floats, kquants, kquants_low, legacy,  # noqa: F401
                               mxfp4, q8_0, ternary_iq4)
from tinyconvert.quant.iq import iq4_xs, iq_types  # noqa: F401
from tinyconvert.quant.registry import REGISTRY, QuantType, get_qtype, qtype_by_id

__all__ = ["REGISTRY", "QuantType", "get_qtype", "qtype_by_id"]
