"""Architecture table: HF class names to GGUF architectures, names and per-tensor transforms.

Tensor names come from gguf-py's TensorNameMap (the well-kept HF -> GGUF alias table); a tensor that
is neither mapped nor deliberately ignored is an error that names it.
"""
from __future__ import annotations

from dataclasses import dataclass

import gguf

from tinyconvert.formats.errors import InputError


@dataclass(frozen=True)
class Arch:
    gguf_arch: gguf.MODEL_ARCH
    permute_qk: bool          # llama.cpp's `llama` arch runs interleaved RoPE; HF stores rotate-half
    name: str | None = None   # general.architecture when it is not gguf-py's name (bamboo)


ARCHITECTURES: dict[str, Arch] = {
    "LlamaForCausalLM": Arch(gguf.MODEL_ARCH.LLAMA, permute_qk=True),
    "MistralForCausalLM": Arch(gguf.MODEL_ARCH.LLAMA, permute_qk=True),
    "Qwen2ForCausalLM": Arch(gguf.MODEL_ARCH.QWEN2, permute_qk=False),
    "Qwen3ForCausalLM": Arch(gguf.MODEL_ARCH.QWEN3, permute_qk=False),
    # ReLU models for PowerInfer (their FFN activation is checked separately)
    "SparseLlamaForCausalLM": Arch(gguf.MODEL_ARCH.LLAMA, permute_qk=True),
    "BambooForCausalLM": Arch(gguf.MODEL_ARCH.LLAMA, permute_qk=True, name="bamboo"),
}

# Buffers some checkpoints carry that hold nothing a GGUF needs.
IGNORED_SUFFIXES = (".rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")


def arch_for(config: dict) -> tuple[str, Arch]:
    names = config.get("architectures") or []
    for name in names:
        if name in ARCHITECTURES:
            return name, ARCHITECTURES[name]
    shown = ", ".join(names) if names else f"(none; model_type {config.get('model_type')!r})"
    raise InputError(f"unsupported architecture {shown}; supported: {', '.join(ARCHITECTURES)}")


def gguf_arch_name(arch: Arch) -> str:
    return arch.name or gguf.MODEL_ARCH_NAMES[arch.gguf_arch]


def permute_qk(w, n_head: int):
    """Undo HF's rotate-half row order per head: rows [h, 2, hd/2] -> [h, hd/2, 2] (any trailing dims).
    Within head h: new row h*hd + 2i = old row h*hd + i; new row h*hd + 2i + 1 = old h*hd + hd/2 + i."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


class NameMapper:
    def __init__(self, arch: Arch, n_layer: int, hf_class: str):
        self.arch, self.hf_class = arch, hf_class
        self.table = gguf.get_tensor_name_map(arch.gguf_arch, n_layer)

    def gguf_name(self, hf_name: str) -> str:
        name = self.table.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise InputError(f"cannot map tensor {hf_name!r} of {self.hf_class} to a GGUF name "
                             f"(not a tensor llama.cpp knows for this architecture)")
        return name

    def permute_heads(self, hf_name: str, n_head: int, n_kv_head: int) -> int | None:
        """The head count to permute this tensor by, or None."""
        if not self.arch.permute_qk:
            return None
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            return n_head
        if hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            return n_kv_head
        return None
