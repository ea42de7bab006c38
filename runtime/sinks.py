"""Attention with sinks (gpt-oss): each head has one learned logit that joins the softmax
denominator and attends to nothing, so a head can put weight "nowhere". llama.cpp's
ggml_soft_max_add_sinks and transformers' eager gpt-oss attention both append it as an extra
column before the softmax and drop that column afterwards."""
from __future__ import annotations

import torch


def sink_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                   sinks: torch.Tensor, scale: float) -> torch.Tensor:
    """q [1, H, T, hd], k and v [1, H, S, hd], mask [T, S] bool, sinks [H] -> [H, T, hd]."""
    scores = (q * scale) @ k.transpose(-1, -2)                        # [1, H, T, S]
    scores = scores.masked_fill(~mask, float("-inf"))
    sink = sinks.to(scores.dtype).view(1, -1, 1, 1).expand(*scores.shape[:-1], 1)
    probs = torch.cat([scores, sink], dim=-1).softmax(-1)[..., :-1]    # [1, H, T, S]
    return (probs @ v)[0]
