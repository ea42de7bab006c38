"""The llama family: Llama 1/2/3, Mistral, SmolLM (llama.cpp's `llama`), SmolLM3 (llama with no
RoPE on every 4th layer), and the ReLU models PowerInfer runs (ReLU-LLaMA / ProSparse as `llama`,
Bamboo as its own `bamboo`)."""
from __future__ import annotations

import gguf

from tinyconvert.archs.base import Arch
from tinyconvert.formats.errors import InputError

NO_ROPE_STEP = 4      # llama.cpp's smollm3 hard-codes it: layer i has no RoPE iff (i + 1) % 4 == 0


def llama_keys(w: gguf.GGUFWriter, c) -> None:
    """llama.cpp's converter writes these for `llama` only."""
    if c.n_vocab is not None:
        w.add_vocab_size(c.n_vocab)
    w.add_rope_dimension_count(c.head_dim)


def smollm3_keys(w: gguf.GGUFWriter, c) -> None:
    llama_keys(w, c)
    want = [int((i + 1) % NO_ROPE_STEP != 0) for i in range(c.n_layer)]
    given = c.raw.get("no_rope_layers")
    if given is not None and [int(x) for x in given[:c.n_layer]] != want:
        raise InputError(f"config.json's no_rope_layers {given} differ from llama.cpp's fixed "
                         f"pattern (no RoPE on every {NO_ROPE_STEP}th layer): the GGUF would "
                         f"compute a different model")


FAMILIES = [
    Arch(("LlamaForCausalLM", "MistralForCausalLM"), gguf.MODEL_ARCH.LLAMA, permute_qk=True,
         keys=llama_keys),
    Arch(("SmolLM3ForCausalLM",), gguf.MODEL_ARCH.SMOLLM3, permute_qk=True, keys=smollm3_keys),
    # ReLU models for PowerInfer (hf2gguf accepts their activation only for PowerInfer outputs)
    Arch(("SparseLlamaForCausalLM",), gguf.MODEL_ARCH.LLAMA, permute_qk=True, keys=llama_keys),
    Arch(("BambooForCausalLM",), gguf.MODEL_ARCH.LLAMA, permute_qk=True, name="bamboo",
         keys=llama_keys),
]
