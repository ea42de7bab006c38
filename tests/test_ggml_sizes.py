"""quant/sizes.py's table (kept so quantize and inspect start without importing gguf-py) says
what gguf-py's GGML_QUANT_SIZES and GGMLQuantizationType say, for every id."""
from __future__ import annotations

import gguf

from tinyconvert.quant.sizes import TYPES, block_info, type_name


def test_table_equals_gguf_py():
    theirs = {int(t): (t.name, *gguf.GGML_QUANT_SIZES[t]) for t in gguf.GGMLQuantizationType
              if t in gguf.GGML_QUANT_SIZES}
    assert TYPES == theirs
    for t in gguf.GGMLQuantizationType:
        assert type_name(int(t)) == t.name
    assert block_info(12) == (256, 144) and type_name(999) == "type999"
