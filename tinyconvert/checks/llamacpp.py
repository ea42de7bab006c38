"""Loading a GGUF into llama.cpp (llama-cpp-python) the same way on every CPU.

llama.cpp's CPU backend loads quantized weights through "extra buffer types" by default: the AMX
path and the repacking paths, which re-lay Q4_0/Q4_K/Q8_0/IQ4_NL blocks for the CPU's matmul
kernels. On CPUs with AMX (amx_tile/amx_int8/amx_bf16) those paths crash while loading or
evaluating quantized files. They only change where and how the weights are laid out in memory, not
what the model computes, so every llama.cpp load here turns them off: the logits are the ones the
plain CPU kernels give, on any CPU. Quantizing through llama_model_quantize is not affected.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

_LOCK = threading.Lock()


@contextmanager
def _no_extra_buffer_types():
    """`Llama` builds its model parameters from llama_model_default_params() and takes no
    use_extra_bufts argument: while it is constructed, the defaults it reads have them off."""
    import llama_cpp.llama_cpp as lib
    original = lib.llama_model_default_params

    def defaults():
        params = original()
        params.use_extra_bufts = False
        return params
    with _LOCK:
        lib.llama_model_default_params = defaults
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def open_llama(path: Path, **kwargs):
    """llama_cpp.Llama(path, **kwargs) with the extra buffer types off (see the module doc)."""
    from llama_cpp import Llama
    with _no_extra_buffer_types():
        llm = Llama(str(path), **kwargs)
    if llm.model_params.use_extra_bufts:        # a llama-cpp-python that builds them elsewhere
        llm.close()
        raise RuntimeError("could not turn off llama.cpp's extra buffer types")
    return llm
