"""What an architecture family declares, as data: HF class names, GGUF architecture, pre-renames
before gguf-py's TensorNameMap (the well-kept HF -> GGUF alias table), per-tensor transforms, the
tensors every layer must have, and the keys beyond the common ones. A tensor that is neither
mapped nor deliberately ignored is an error that names it."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import gguf

from tinyconvert.formats.errors import InputError

LLAMA_LAYER = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
               "ffn_up", "ffn_down")
# Buffers some checkpoints carry that hold nothing a GGUF needs.
IGNORED_SUFFIXES = (".rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")


@dataclass(frozen=True)
class Arch:
    hf_classes: tuple[str, ...]
    gguf_arch: gguf.MODEL_ARCH
    permute_qk: bool = False          # llama.cpp's `llama` runs interleaved RoPE; HF rotate-half
    name: str | None = None           # general.architecture when it is not gguf-py's (bamboo)
    acts: tuple[str, ...] = ("silu",)     # FFN activations llama.cpp's graph for it computes
    act_key: str = "hidden_act"       # the config key that names the activation
    norm_shift: float = 0.0           # added to every *norm.weight (Gemma: HF computes x*(1+w))
    renames: tuple[tuple[str, str], ...] = ()   # (regex, replacement) on HF names, in order
    skip: tuple[str, ...] = ()        # regexes of HF names that are deliberately not converted
    layer_tensors: tuple[str, ...] | Callable = LLAMA_LAYER   # what every block must have, or
                                      # layer_tensors(cfg, i) where blocks differ (dense-first MoE)
    drop_output: bool = False         # llama.cpp always reuses token_embd as the output
    omit_defaults: dict = field(default_factory=dict)   # keys llama.cpp's converter leaves out
                                                        # when they hold llama.cpp's default
    keys: Callable | None = None      # keys(writer, cfg): family keys beyond the common ones
    own_rope: bool = False            # keys() writes the rope scaling itself (phi3's LongRoPE)
    extra: Callable | None = None     # extra(cfg) -> [(GGUF name, float32 array)]: tensors the
                                      # converter makes, not the checkpoint (LongRoPE factors)
    records: Callable | None = None   # records(cfg, records) -> records: checkpoint tensors the
                                      # family reshapes or drops before naming (DeepSeek's kv_b)
    prepare: Callable | None = None   # prepare(config dict, path) -> the dict read_config reads:
                                      # common names filled from the family's own (GPT-2's n_embd;
                                      # SSMs: no heads, padded vocab)
    reference: Callable | None = None   # reference(cfg, hparams) -> hparams: what transformers
                                        # computes that no GGUF key says (for the HF reference)
    names: tuple[tuple[str, str], ...] = ()   # (regex, GGUF name) tried before gguf-py's table,
                                      # for classes it has no table for (PowerInfer's OPT)
    common_keys: bool = True          # False: keys() writes every hparam key itself, as llama.cpp's
                                      # converter writes them for the family (the LayerNorm ones)

    @property
    def arch_name(self) -> str:
        return self.name or gguf.MODEL_ARCH_NAMES[self.gguf_arch]

    def layer_needs(self, cfg, i: int) -> tuple[str, ...]:
        """The tensors block i must have."""
        if callable(self.layer_tensors):
            return self.layer_tensors(cfg, i)
        return self.layer_tensors


def gguf_arch_name(arch: Arch) -> str:
    return arch.arch_name


def permute_qk(w, n_head: int):
    """Undo HF's rotate-half row order per head: rows [h, 2, hd/2] -> [h, hd/2, 2] (any trailing dims).
    Within head h: new row h*hd + 2i = old row h*hd + i; new row h*hd + 2i + 1 = old h*hd + hd/2 + i."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


class NameMapper:
    def __init__(self, arch: Arch, n_layer: int, hf_class: str):
        self.arch, self.hf_class = arch, hf_class
        self.table = gguf.get_tensor_name_map(arch.gguf_arch, n_layer)
        self.renames = [(re.compile(a), b) for a, b in arch.renames]
        self.skips = [re.compile(s) for s in arch.skip]
        self.names = [(re.compile(a), b) for a, b in arch.names]

    def skipped(self, hf_name: str) -> bool:
        return hf_name.endswith(IGNORED_SUFFIXES) or any(s.search(hf_name) for s in self.skips)

    def gguf_name(self, hf_name: str) -> str:
        for pattern, name in self.names:
            if m := pattern.fullmatch(hf_name):
                return m.expand(name)
        renamed = hf_name
        for pattern, repl in self.renames:
            renamed = pattern.sub(repl, renamed)
        name = self.table.get_name(renamed, try_suffixes=(".weight", ".bias"))
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

    def shift(self, gguf_name: str) -> float:
        return self.arch.norm_shift if gguf_name.endswith("norm.weight") else 0.0
