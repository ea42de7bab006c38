"""RoPE angle tables: plain, linear-scaled, per-frequency divisors from a tensor (llama3's
rope_freqs; LongRoPE's rope_factors_short/long) and YaRN (ramped blend of interpolated and
extrapolated frequencies, scaled cos/sin); cos/sin may also carry a fixed scale (LongRoPE's
rope.scaling.attn_factor)."""
from __future__ import annotations

import math

import torch


def _yarn(inv_freq: torch.Tensor, dim: int, base: float, s: dict) -> tuple[torch.Tensor, float]:
    factor = s["factor"]
    orig = s.get("original_max_position_embeddings") or 4096
    fast, slow = s.get("beta_fast") or 32.0, s.get("beta_slow") or 1.0

    def corr_dim(n_rot: float) -> float:   # dim index where a frequency turns n_rot times in orig
        return dim * math.log(orig / (n_rot * 2 * math.pi)) / (2 * math.log(base))
    low, high = corr_dim(fast), corr_dim(slow)
    if s.get("truncate", True):     # llama.cpp always; transformers unless truncate=false
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolate = 1 - ramp                  # 1: keep the original frequency, 0: interpolate
    inv_freq = inv_freq / factor * (1 - extrapolate) + inv_freq * extrapolate
    attn = s.get("attention_factor") or (0.1 * math.log(factor) + 1.0)
    return inv_freq, attn


def pick_freq_factors(get, n_ctx: int, n_ctx_orig: int | None) -> torch.Tensor | None:
    """llama.cpp's get_rope_factors: the file's rope_freqs if it has one; else LongRoPE's long
    factors when the context exceeds the original one and the short factors otherwise (None when
    the file has neither). llama.cpp measures its configured context, transformers the sequence
    so far; model.rope_tables passes a Model's fixed n_ctx, else the sequence so far."""
    if (f := get("rope_freqs.weight")) is not None:
        return f
    if n_ctx_orig and n_ctx > n_ctx_orig and (f := get("rope_factors_long.weight")) is not None:
        return f
    return get("rope_factors_short.weight")


def rope_cos_sin(positions: torch.Tensor, dim: int, base: float, scaling: dict,
                 freq_factors: torch.Tensor | None = None, *,
                 attn_factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: [T, dim/2] for the given integer positions, times attn_factor (and YaRN's own
    scale)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    mscale = attn_factor
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors.float()
    if scaling.get("type") == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif scaling.get("type") == "yarn":
        inv_freq, yarn_scale = _yarn(inv_freq, dim, base, scaling)
        mscale *= yarn_scale
    angles = positions.float()[:, None] * inv_freq[None, :]          # [T, dim/2]
    return angles.cos() * mscale, angles.sin() * mscale


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, neox: bool) -> torch.Tensor:
    """x: [T, H, D]; rotates the first 2*cos.shape[-1] dims. neox pairs (i, i + d/2);
    otherwise (llama.cpp's `llama`, weights already permuted) pairs (2i, 2i + 1)."""
    d = cos.shape[-1] * 2
    rot, rest = x[..., :d], x[..., d:]
    c, s = cos[:, None, :], sin[:, None, :]                         # [T, 1, d/2]
    if neox:
        a, b = rot[..., : d // 2], rot[..., d // 2:]
        out = torch.cat([a * c - b * s, b * c + a * s], dim=-1)
    else:
        a, b = rot[..., 0::2], rot[..., 1::2]
        out = torch.stack([a * c - b * s, b * c + a * s], dim=-1).flatten(-2)
    return torch.cat([out, rest], dim=-1) if rest.shape[-1] else out
