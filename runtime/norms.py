"""Norms as llama.cpp's graphs apply them: RMSNorm (LLM_NORM_RMS) for the llama-like families,
LayerNorm with its optional bias (LLM_NORM: mean removed, divided by the standard deviation) for
GPT-2, GPT-NeoX, StarCoder2, Phi-2, StableLM and Falcon. Which one an architecture uses is a
property of its graph (runtime.hparams.Recipe.layer_norm), not of the file."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Weights = Callable[[str], "torch.Tensor | None"]


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def normed(hp, w: torch.Tensor, b: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """x [..., d] normalised over d, times w (and plus b): w may carry leading dims that
    broadcast against x's (per-head q/k norms: x [T, heads, hd], w [heads, hd])."""
    if not hp.layer_norm:
        return rms_norm(x, w, hp.rms_eps)
    y = F.layer_norm(x, (x.shape[-1],), eps=hp.rms_eps) * w
    return y + b if b is not None else y


def norm(hp, get: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    """The norm `name` (without .weight) of the file applied to x; x unchanged if the file has
    no such norm (OLMo 2's blocks have no pre-norms)."""
    w = get(name + ".weight")
    return x if w is None else normed(hp, w, get(name + ".bias"), x)
