"""The llama family: Llama 1/2/3, Mistral, SmolLM (llama.cpp's `llama`), and the ReLU models
PowerInfer runs (ReLU-LLaMA / ProSparse as `llama`, Bamboo as its own `bamboo`)."""
from __future__ import annotations

import gguf

from tinyconvert.archs.base import Arch


def llama_keys(w: gguf.GGUFWriter, c) -> None:
    """llama.cpp's converter writes these for `llama` only."""
    if c.n_vocab is not None:
        w.add_vocab_size(c.n_vocab)
    w.add_rope_dimension_count(c.head_dim)


FAMILIES = [
    Arch(("LlamaForCausalLM", "MistralForCausalLM"), gguf.MODEL_ARCH.LLAMA, permute_qk=True,
         keys=llama_keys),
    # ReLU models for PowerInfer (hf2gguf accepts their activation only for PowerInfer outputs)
    Arch(("SparseLlamaForCausalLM",), gguf.MODEL_ARCH.LLAMA, permute_qk=True, keys=llama_keys),
    Arch(("BambooForCausalLM",), gguf.MODEL_ARCH.LLAMA, permute_qk=True, name="bamboo",
         keys=llama_keys),
]
