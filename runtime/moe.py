"""The mixture-of-experts FFN as llama.cpp's build_moe_ffn computes it: router probabilities
over all experts (softmax: Mixtral, Qwen2/3-MoE, OLMoE, DeepSeek-V2; sigmoid: DeepSeek-V3), the
top k kept, renormalised where the architecture does, optionally scaled; each expert runs only
on the tokens routed to it. DeepSeek-V3 chooses on the probabilities plus a selection bias
(exp_probs_b) within its best expert groups, but weights by the unbiased probabilities.
Qwen2-MoE adds a shared expert gated by sigmoid(x . ffn_gate_inp_shexp); DeepSeek an ungated
one. gpt-oss: a router bias, experts chosen on the raw logits and weighted by the softmax of the
chosen ones only (softmax_weight), expert biases and the clamped swiglu_oai."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from tinyconvert.runtime.projections import Weights, linear


# llama.cpp's build_moe_ffn LLM_FFN_SWIGLU_OAI_MOE (transformers: swiglu_alpha, swiglu_limit)
OAI_ALPHA, OAI_LIMIT = 1.702, 7.0


def _swiglu(x: torch.Tensor, gate, up, down, biases=(None, None, None),
            act: str = "silu") -> torch.Tensor:
    g, u = linear(x, gate, biases[0]), linear(x, up, biases[1])
    if act == "swiglu_oai":     # clamp(g, max=L) * sigmoid(a*g) * (clamp(u, -L, L) + 1)
        g = g.clamp(max=OAI_LIMIT)
        z = g * torch.sigmoid(OAI_ALPHA * g) * (u.clamp(-OAI_LIMIT, OAI_LIMIT) + 1)
    else:
        z = F.silu(g) * u
    return linear(z, down, biases[2])


def selection(hp, logits: torch.Tensor, bias: torch.Tensor | None = None):
    """logits [T, n_expert] -> (probabilities, the scores experts are chosen by), both
    [T, n_expert]; experts outside the chosen groups score -inf."""
    if hp.expert_gating == "softmax_weight":        # chosen on the logits, weighted later
        return logits, logits
    probs = logits.sigmoid() if hp.expert_gating == "sigmoid" else logits.softmax(-1)
    choice = probs if bias is None else probs + bias
    if hp.n_expert_groups > 1:
        # a group scores the sum of its top two; the best n_group_used groups stay
        groups = choice.view(choice.shape[0], hp.n_expert_groups, -1)       # [T, G, E/G]
        best = groups.topk(2, dim=-1).values.sum(-1).topk(hp.n_group_used, dim=-1).indices
        keep = torch.zeros_like(groups[..., 0], dtype=torch.bool).scatter_(1, best, True)
        choice = groups.masked_fill(~keep[..., None], float("-inf")).view_as(choice)
    return probs, choice


def route(hp, logits: torch.Tensor,
          bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [T, n_expert] -> (weights [T, k], expert ids [T, k])."""
    probs, choice = selection(hp, logits, bias)
    ids = choice.topk(hp.n_expert_used, dim=-1).indices
    weights = probs.gather(-1, ids)
    if hp.expert_gating == "softmax_weight":
        weights = weights.softmax(-1)
    if hp.expert_norm:
        weights = weights / weights.sum(-1, keepdim=True).clamp(min=6.103515625e-5)  # as ggml
    if hp.expert_weights_scale:
        weights = weights * hp.expert_weights_scale
    return weights, ids


def moe_ffn(hp, get: Weights, i: int, x: torch.Tensor,
            on_route: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """x: [T, n_embd] (normed) -> [T, n_embd]. on_route(i, ids [T, k]) sees the choices."""
    p = f"blk.{i}."
    weights, ids = route(hp, linear(x, get(p + "ffn_gate_inp.weight"), get(p + "ffn_gate_inp.bias")),
                         get(p + "exp_probs_b.bias"))
    if on_route is not None:
        on_route(i, ids)
    gate, up, down = (get(f"{p}ffn_{w}_exps.weight") for w in ("gate", "up", "down"))
    biases = [get(f"{p}ffn_{w}_exps.bias") for w in ("gate", "up", "down")]     # [E, rows]
    out = torch.zeros_like(x)
    for e in ids.unique().tolist():                     # [E, rows, cols] tensors, one slice each
        tok, slot = (ids == e).nonzero(as_tuple=True)
        y = _swiglu(x[tok], gate[e], up[e], down[e], [b if b is None else b[e] for b in biases],
                    hp.act)
        out.index_add_(0, tok, y * weights[tok, slot, None])
    if (shared_up := get(p + "ffn_up_shexp.weight")) is not None:
        y = _swiglu(x, get(p + "ffn_gate_shexp.weight"), shared_up, get(p + "ffn_down_shexp.weight"))
        if (g := get(p + "ffn_gate_inp_shexp.weight")) is not None:
            y = y * torch.sigmoid(linear(x, g))
        out = out + y
    return out
