"""GGML tensor types: block layouts, quantize and dequantize of arrays. Knows nothing of files."""
from tinyconvert.quant import floats, kquants, legacy, q8_0  # noqa: F401  (register the types)
from tinyconvert.quant.registry import REGISTRY, QuantType, get_qtype, qtype_by_id

__all__ = ["REGISTRY", "QuantType", "get_qtype", "qtype_by_id"]
