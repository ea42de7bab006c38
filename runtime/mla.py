"""DeepSeek's multi-head latent attention (MLA), as llama.cpp's deepseek2 graph computes it,
decompressed per head (llama.cpp absorbs k_b into q and v_b after the softmax instead; the same
products in another order):

    q            = q_b(rms(q_a x))  or  q x                  [T, n_head, nope + rope]
    [c_kv, k_pe] = kv_a_mqa x                                [T, kv_lora], [T, rope]
    c_kv         = rms(c_kv)
    k_nope       = k_b . c_kv,  v = v_b . c_kv               per head
    k            = [k_nope, rope(k_pe)] (k_pe shared by every head), q = [q_nope, rope(q_pe)]

RoPE is llama.cpp's NORM kind (interleaved pairs) on the rope dims only; the scores scale is
mscale^2 / sqrt(nope + rope), mscale carrying YaRN's log multiplier where the file has one."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tinyconvert.runtime.projections import linear
from tinyconvert.runtime.rope import apply_rope


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _get_mscale(factor: float, m: float) -> float:
    return 1.0 if factor <= 1.0 else 0.1 * m * math.log(factor) + 1.0


def kq_scale(hp) -> float:
    """llama.cpp's deepseek2 kq_scale: its context's yarn_attn_factor (llama_context: mscale
    over mscale_all_dim, which is 1 for deepseek2, over YaRN's own 1 + 0.1 ln s) times
    rope.scaling.attn_factor, re-multiplied by 1 + 0.1 ln s and by 1 + 0.1 log_mul ln s."""
    s, log_mul = hp.rope_scaling, hp.mla["yarn_log_mul"]
    factor = s.get("factor", 1.0) if s else 1.0          # 1 / freq_scale
    attn = 1.0
    if s.get("type") == "yarn":
        attn = 1.0 if log_mul else _get_mscale(factor, 1.0)
        attn /= 1.0 + 0.1 * math.log(factor)
    attn *= hp.rope_attn_factor
    mscale = attn * (1.0 + 0.1 * math.log(factor)) * (1.0 + 0.1 * log_mul * math.log(factor))
    return mscale * mscale / math.sqrt(hp.mla["k_mla"])


def _query(hp, get, p: str, x: torch.Tensor) -> torch.Tensor:
    if (w := get(p + "attn_q.weight")) is not None:          # V2-Lite: no q compression
        return linear(x, w)
    q = _rms(linear(x, get(p + "attn_q_a.weight")), get(p + "attn_q_a_norm.weight"), hp.rms_eps)
    return linear(q, get(p + "attn_q_b.weight"))


def _keys_values(hp, get, p: str, x: torch.Tensor, cos, sin):
    """k [T, n_head, nope + rope], v [T, n_head, v] from the shared latent."""
    m, T, rope = hp.mla, x.shape[0], hp.rope_dim
    c_kv, k_pe = linear(x, get(p + "attn_kv_a_mqa.weight")).split([m["kv_lora"], rope], -1)
    c_kv = _rms(c_kv, get(p + "attn_kv_a_norm.weight"), hp.rms_eps)
    k_pe = apply_rope(k_pe[:, None, :], cos, sin, neox=False)           # [T, 1, rope]
    k_nope = torch.einsum("tc,hcn->thn", c_kv, get(p + "attn_k_b.weight"))  # k_b [H, kv, nope]
    v = torch.einsum("tc,hvc->thv", c_kv, get(p + "attn_v_b.weight"))       # v_b [H, v, kv]
    return torch.cat([k_nope, k_pe.expand(T, hp.n_head, rope)], -1), v


def attention(hp, get, i: int, x: torch.Tensor, cos, sin, cache, pos0: int) -> torch.Tensor:
    """x: [T, n_embd] (normed) -> [T, n_embd]. cache: runtime.model.KVCache (decompressed
    per-head keys and values)."""
    p, T, rope = f"blk.{i}.", x.shape[0], hp.rope_dim
    q = _query(hp, get, p, x).view(T, hp.n_head, hp.mla["k_mla"])
    q = torch.cat([q[..., :-rope], apply_rope(q[..., -rope:], cos, sin, neox=False)], -1)
    k, v = _keys_values(hp, get, p, x, cos, sin)
    if cache is not None:
        k, v = cache.extend(i, k, v)
    S = k.shape[0]
    q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))     # [1, n_head, T|S, d]
    mask = torch.arange(S)[None, :] <= (pos0 + torch.arange(T))[:, None]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=kq_scale(hp))[0]
    return linear(out.transpose(0, 1).reshape(T, -1), get(p + "attn_output.weight"))
