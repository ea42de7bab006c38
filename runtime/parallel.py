"""Parallel attention + MLP blocks: both sublayers read the block's input and their outputs are
added to it together, x + attn(n_a(x)) + mlp(n_f(x)).

Which norms feed them, as llama.cpp's graphs pick them from the tensors a layer has:
- GPT-NeoX: attn_norm feeds attention, ffn_norm the MLP (two norms);
- Phi-2, Falcon-7B, StableLM 2 12B: no ffn_norm, the attn_norm output feeds both (one norm);
- Falcon-40B/180B: attn_norm_2 (HF ln_attn) feeds attention, attn_norm (ln_mlp) the MLP.

When a block is parallel is the architecture's rule (runtime.hparams.Recipe.parallel): always
(phi2, falcon), by the use_parallel_residual key (gptneox), or where the layer has no ffn_norm
(stablelm, whose graph ignores the key)."""
from __future__ import annotations

from typing import Callable

import torch

from tinyconvert.runtime.norms import norm

Weights = Callable[[str], "torch.Tensor | None"]


def is_parallel(hp, get: Weights, i: int) -> bool:
    if hp.parallel == "always":
        return True
    return hp.parallel == "no_ffn_norm" and get(f"blk.{i}.ffn_norm.weight") is None


def parallel_block(hp, get: Weights, i: int, h: torch.Tensor, attention, ffn) -> torch.Tensor:
    """attention(x) and ffn(x): the block's sublayers on already normed [T, n_embd] inputs."""
    p = f"blk.{i}."
    x_attn = norm(hp, get, p + "attn_norm_2", h) if get(p + "attn_norm_2.weight") is not None \
        else norm(hp, get, p + "attn_norm", h)
    return h + attention(x_attn) + ffn(ffn_input(hp, get, i, h))


def ffn_input(hp, get: Weights, i: int, h: torch.Tensor) -> torch.Tensor:
    """What the MLP of parallel block i reads: ffn_norm(h) where the layer has one, else
    attn_norm(h)."""
    p = f"blk.{i}."
    name = p + "ffn_norm" if get(p + "ffn_norm.weight") is not None else p + "attn_norm"
    return norm(hp, get, name, h)
