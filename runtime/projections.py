"""Matmuls with the model's weight tensors, and the input projections of attention and of the
gated FFN from separate tensors or from the fused ones some architectures keep (phi3: attn_qkv
with rows Q, then K, then V; ffn_up holding the gate rows, then the up rows, and no ffn_gate).
llama.cpp splits them the same way (build_qkv; build_ffn with LLM_FFN_SWIGLU and no gate). An
ffn_up of n_ff rows and no ffn_gate is a plain MLP (build_ffn with LLM_FFN_SEQ)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Weights = Callable[[str], "torch.Tensor | None"]


def linear(x: torch.Tensor, w, b: torch.Tensor | None = None) -> torch.Tensor:
    """w: a tensor [out, in] (torch order of GGUF tensors) or a callable layer (T-MAC's LUT
    path, runtime.lut.LutLinear)."""
    if isinstance(w, torch.Tensor):
        return F.linear(x, w, b)
    y = w(x)
    return y + b if b is not None else y


def qkv(hp, get: Weights, p: str, x: torch.Tensor):
    """x: [T, n_embd] -> q [T, n_head*hd], k and v [T, n_kv_head*hd] (heads not yet split)."""
    w = get(p + "attn_qkv.weight")
    if w is None:
        return tuple(linear(x, get(f"{p}attn_{t}.weight"), get(f"{p}attn_{t}.bias"))
                     for t in "qkv")
    n_q, n_kv = hp.n_head * hp.head_dim, hp.n_kv_head * hp.head_dim
    return linear(x, w, get(p + "attn_qkv.bias")).split([n_q, n_kv, n_kv], dim=-1)


def gate_up(hp, get: Weights, p: str, x: torch.Tensor):
    """x: [T, n_embd] -> (gate, up), each [T, n_ff]; gate is None for a plain (ungated) MLP,
    whose ffn_up has n_ff rows and usually a bias (GPT-2, GPT-NeoX, Falcon, ...)."""
    up = linear(x, get(p + "ffn_up.weight"), get(p + "ffn_up.bias"))
    gate_w = get(p + "ffn_gate.weight")
    if gate_w is not None:
        return linear(x, gate_w, get(p + "ffn_gate.bias")), up
    if up.shape[-1] == hp.n_ff:
        return None, up
    if up.shape[-1] != 2 * hp.n_ff:
        raise ValueError(f"{p}ffn_up gives {up.shape[-1]} values and there is no ffn_gate: a "
                         f"plain MLP needs n_ff = {hp.n_ff}, a fused gate+up 2*n_ff")
    return up.chunk(2, dim=-1)            # gate first, as llama.cpp's swiglu and HF's chunk
