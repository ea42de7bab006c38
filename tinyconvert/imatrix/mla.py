"""The two matmuls of DeepSeek's latent attention that llama.cpp runs and our runtime does not.

llama.cpp computes MLA in its absorbed form (src/models/deepseek2.cpp, build_attn_mla):
attn_k_b ([n_head, kv_lora, nope] in torch order) multiplies each head's q_nope, and attn_v_b
([n_head, v, kv_lora]) multiplies each head's attention output in the latent space,
softmax(q k^T) @ c_kv. Both are dense MUL_MATs over a 3-D weight: llama-imatrix keeps n_head * ne0
values and a single count (tokens per call), so the entry is one flat vector, head h at
[h * ne0, (h + 1) * ne0). The runtime decompresses keys and values instead (the same attention),
so these inputs are recomputed here, from the layer's normed input, with the runtime's own
pieces; weights come through `plain` so nothing else is recorded twice."""
from __future__ import annotations

import torch

from tinyconvert.runtime import mla
from tinyconvert.runtime.projections import linear
from tinyconvert.runtime.rope import apply_rope


def is_mla(get, i: int) -> bool:
    return get(f"blk.{i}.attn_kv_a_mqa.weight") is not None


def latent_inputs(hp, plain, i: int, xn: torch.Tensor, cos, sin):
    """xn [T, n_embd] (after attn_norm) -> (q_nope [T, H, nope], latent out [T, H, kv_lora])."""
    p, m, T, rope = f"blk.{i}.", hp.mla, xn.shape[0], hp.rope_dim
    q = mla._query(hp, plain, p, xn).view(T, hp.n_head, m["k_mla"])
    q_nope, q_pe = q[..., :-rope], apply_rope(q[..., -rope:], cos, sin, neox=False)
    c_kv, k_pe = linear(xn, plain(p + "attn_kv_a_mqa.weight")).split([m["kv_lora"], rope], -1)
    c_kv = mla._rms(c_kv, plain(p + "attn_kv_a_norm.weight"), hp.rms_eps)
    k_pe = apply_rope(k_pe[:, None, :], cos, sin, neox=False)[:, 0]              # [T, rope]
    q_lat = torch.einsum("thn,hcn->thc", q_nope, plain(p + "attn_k_b.weight"))  # absorbed q
    scores = (torch.einsum("thc,sc->hts", q_lat, c_kv)
              + torch.einsum("thr,sr->hts", q_pe, k_pe)) * mla.kq_scale(hp)      # [H, T, S]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    return q_nope, (probs @ c_kv).transpose(0, 1)


def record(sums, hp, plain, i: int, xn: torch.Tensor, cos, sin) -> None:
    q_nope, latent = latent_inputs(hp, plain, i, xn, cos, sin)
    for name, x in ((f"blk.{i}.attn_k_b.weight", q_nope), (f"blk.{i}.attn_v_b.weight", latent)):
        sums.add(name, x.reshape(x.shape[0], -1), 1, 0)       # heads side by side, one count
