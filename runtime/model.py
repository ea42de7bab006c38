"""The forward pass of the llama-like families (llama, mistral, qwen2 with q/k/v biases, qwen3
with q/k norms, gemma 1/2/3 with scaled embeddings, sandwich norms, GeGLU, sliding windows and
softcaps; phi3 with fused qkv and gate+up, partial rotary and LongRoPE; GQA; tied embeddings;
SiLU, GELU or ReLU gated FFN) and of the LayerNorm families (GPT-2 with learned positions,
GPT-NeoX, StarCoder2, Phi-2, StableLM, Falcon: norms with biases, plain MLPs with biases, parallel
attention + MLP) on weights named as in GGUF. The blocks are chosen by the hyperparameters (the
GGUF's keys) and the tensors the file has; files with ssm.* keys (Mamba, Mamba2) run
runtime.ssm's blocks instead, their state carried in place of the KV cache.

Weights come from a `get(name) -> tensor | None` callable, so a GGUF file (dequantized) and an HF
checkpoint (through the converter's architecture table) run the very same code. Two drivers:
`prefill_layers` streams one layer's weights at a time (memory-light, for verify) and `Model`
holds all weights with a KV cache (for generation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from tinyconvert.formats.errors import InputError
from tinyconvert.runtime import mla, ssm
from tinyconvert.runtime.activations import ffn_inner
from tinyconvert.runtime.hparams import Hparams
from tinyconvert.runtime.moe import moe_ffn
from tinyconvert.runtime.norms import norm, normed
from tinyconvert.runtime.parallel import ffn_input, is_parallel, parallel_block
from tinyconvert.runtime.projections import gate_up, linear, qkv
from tinyconvert.runtime.rope import apply_rope, pick_freq_factors, rope_cos_sin
from tinyconvert.runtime.sinks import sink_attention

Weights = Callable[[str], "torch.Tensor | None"]


@dataclass
class KVCache:
    k: list = field(default_factory=list)      # per layer: [S, n_kv_head, head_dim]
    v: list = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.k[0].shape[0] if self.k else 0

    def extend(self, i: int, k: torch.Tensor, v: torch.Tensor):
        """Appends layer i's new keys and values; returns all of layer i's so far."""
        if len(self.k) > i:
            self.k[i], self.v[i] = torch.cat([self.k[i], k]), torch.cat([self.v[i], v])
        else:
            self.k.append(k)
            self.v.append(v)
        return self.k[i], self.v[i]


def attention(hp: Hparams, get: Weights, i: int, x: torch.Tensor, cos, sin,
              cache: KVCache | None, pos0: int) -> torch.Tensor:
    """x: [T, n_embd] (already normed) -> [T, n_embd]."""
    p = f"blk.{i}."
    if get(p + "attn_kv_a_mqa.weight") is not None:      # DeepSeek's latent attention
        return mla.attention(hp, get, i, x, cos, sin, cache, pos0)
    T, hd = x.shape[0], hp.head_dim
    q, k, v = qkv(hp, get, p, x)                 # separate or fused (phi3's attn_qkv)
    v = v.reshape(T, hp.n_kv_head, hd)
    q, k = _qk_norm(hp, get, p, q, k)
    q, k = q.view(T, hp.n_head, hd), k.view(T, hp.n_kv_head, hd)
    if cos is not None:                  # None: a layer without RoPE (SmolLM3)
        q, k = apply_rope(q, cos, sin, hp.neox), apply_rope(k, cos, sin, hp.neox)
    if cache is not None:
        k, v = cache.extend(i, k, v)
    S, rep = k.shape[0], hp.n_head // hp.n_kv_head
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)   # [S, n_head, hd]
    q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))     # [1, n_head, T|S, hd]
    window = hp.n_swa if hp.is_swa(i) else 0
    if hp.attn_softcap:
        out = _softcapped(hp, q, k, v, _mask(T, S, pos0, window))
    elif (sinks := get(p + "attn_sinks.weight")) is not None:          # gpt-oss
        out = sink_attention(q, k, v, _mask(T, S, pos0, window), sinks,
                             hp.attn_scale if hp.attn_scale is not None else hd ** -0.5)
    elif S == T and not window:      # without a mask torch picks its fused CPU kernel
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=hp.attn_scale)[0]
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=_mask(T, S, pos0, window),
                                             scale=hp.attn_scale)[0]
    return linear(out.transpose(0, 1).reshape(T, hp.n_head * hd), get(p + "attn_output.weight"),
                  get(p + "attn_output.bias"))


def _qk_norm(hp: Hparams, get: Weights, p: str, q: torch.Tensor, k: torch.Tensor):
    """Norm of q and k ([T, heads * hd]), RMS or LayerNorm as the architecture's: per head where
    the weight has head_dim entries (qwen3, gemma3) or [heads, hd] (StableLM 2 12B: a weight per
    head), over the whole projection where it has heads * hd (olmo2)."""
    qn = get(p + "attn_q_norm.weight")
    if qn is None:
        return q, k
    kn, T = get(p + "attn_k_norm.weight"), q.shape[0]
    if qn.shape[-1] == q.shape[-1]:
        return normed(hp, qn, None, q), normed(hp, kn, None, k)
    hd = hp.head_dim
    return (normed(hp, qn, None, q.view(T, -1, hd)).reshape(T, -1),
            normed(hp, kn, None, k.view(T, -1, hd)).reshape(T, -1))


def _mask(T: int, S: int, pos0: int, window: int) -> torch.Tensor:
    """[T, S] bool: query t (at position pos0 + t) sees key s iff s <= pos0 + t, and, with a
    sliding window, pos0 + t - s < window (as llama.cpp and transformers count it)."""
    qpos, kpos = (pos0 + torch.arange(T))[:, None], torch.arange(S)[None, :]
    seen = kpos <= qpos
    return seen & (qpos - kpos < window) if window else seen


def _softcapped(hp: Hparams, q, k, v, mask) -> torch.Tensor:
    """Gemma 2: scores -> c * tanh(scores / c) before the mask and softmax."""
    scale = hp.attn_scale if hp.attn_scale is not None else hp.head_dim ** -0.5
    c = hp.attn_softcap
    scores = torch.tanh((q * scale) @ k.transpose(-1, -2) / c) * c     # [1, n_head, T, S]
    scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(-1) @ v)[0]


def ffn(hp: Hparams, get: Weights, i: int, x: torch.Tensor,
        keep: torch.Tensor | None = None, on_route=None,
        want_active: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [T, n_embd] (normed) -> (output [T, n_embd], active [T, n_ff] neurons with z != 0,
    or None unless want_active). keep [T, n_ff]: PowerInfer's predicted neurons; the others
    contribute nothing. on_route(i, ids [T, k]): the experts an MoE layer chose for each token."""
    p = f"blk.{i}."
    if hp.n_expert and i >= hp.n_dense_lead:     # mixture of experts: no neuron-level view
        return moe_ffn(hp, get, i, x, on_route), None
    gate, up = gate_up(hp, get, p, x)    # separate, fused (phi3's ffn_up) or no gate (plain MLP)
    z = ffn_inner(hp.act, gate, up)
    active = z != 0 if want_active else None
    if keep is not None:
        z = z * keep
    down = get(p + "ffn_down.weight")
    out = linear(z, down, get(p + "ffn_down.bias")) if down is not None \
        else linear_t(z, get(p + "ffn_down_t.weight"), get(p + "ffn_down_t.bias"))
    return out, active


def linear_t(z: torch.Tensor, w_t: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """PowerInfer's transposed down projection ([n_ff, n_embd]), with OPT's bias."""
    out = z @ w_t
    return out + b if b is not None else out


def predict(hp: Hparams, get: Weights, i: int, h: torch.Tensor) -> torch.Tensor:
    """PowerInfer's predictor on the pre-norm residual: keep neuron j iff
    fc2(relu(fc1(h)))_j >= threshold (raw scores, no sigmoid). [T, n_ff] bool."""
    p = f"blk.{i}."
    score = linear(F.relu(linear(h, get(p + "fc1.weight"))), get(p + "fc2.weight"))
    return score >= hp.sparse_threshold


def block(hp: Hparams, get: Weights, i: int, h: torch.Tensor, cos, sin,
          cache: KVCache | None = None, pos0: int = 0, observe=None,
          on_route=None) -> torch.Tensor:
    """Pre-norm residual blocks; a norm the file has after a sublayer (Gemma's sandwich
    post_attention_norm / post_ffw_norm) is applied to its output before the residual add.
    observe(i, keep, active): sparse runs report predicted vs truly active neurons.
    on_route(i, ids): MoE runs report the experts chosen per token."""
    if hp.ssm:                       # state-space blocks (Mamba, Mamba2); cache: their state
        return ssm.block(hp, get, i, h, cache)
    p = f"blk.{i}."
    watch = observe is not None and hp.sparse_threshold is not None   # active neurons wanted
    if is_parallel(hp, get, i):          # x + attn(n(x)) + mlp(n'(x)) (runtime.parallel)
        # PowerInfer's Falcon predicts from the layer input, before any norm
        keep = predict(hp, get, i, h) if hp.sparse_threshold is not None else None
        return parallel_block(hp, get, i, h,
                              lambda x: attention(hp, get, i, x, cos, sin, cache, pos0),
                              lambda x: _observed(ffn(hp, get, i, x, keep, on_route, watch),
                                                  i, keep, observe))
    y = attention(hp, get, i, norm(hp, get, p + "attn_norm", h), cos, sin, cache, pos0)
    if hp.ffn_norm != "post_attention_norm":
        y = norm(hp, get, p + "post_attention_norm", y)
    h = h + _scaled(hp, y)
    keep = predict(hp, get, i, h) if hp.sparse_threshold is not None else None
    y = _observed(ffn(hp, get, i, norm(hp, get, p + hp.ffn_norm, h), keep, on_route, watch), i,
                  keep, observe)
    return h + _scaled(hp, norm(hp, get, p + "post_ffw_norm", y))


def _observed(ffn_out: tuple, i: int, keep, observe) -> torch.Tensor:
    """The FFN's output; a sparse run reports its predicted and truly active neurons."""
    y, active = ffn_out
    if observe is not None and keep is not None:
        observe(i, keep, active)
    return y


def _scaled(hp: Hparams, y: torch.Tensor) -> torch.Tensor:
    return y * hp.residual_scale if hp.residual_scale else y


def rope_tables(hp: Hparams, get: Weights, pos0: int, T: int,
                n_ctx: int | None = None) -> list[tuple]:
    """(cos, sin) per layer: sliding-window layers may have their own base and no scaling.
    LongRoPE picks its factors by n_ctx, else the context so far, pos0 + T
    (rope.pick_freq_factors)."""
    if hp.ssm:
        return [(None, None)] * hp.n_layer
    positions = torch.arange(pos0, pos0 + T)
    dim = hp.rope_dim or hp.head_dim
    factors = pick_freq_factors(get, n_ctx or pos0 + T, hp.n_ctx_orig)
    full = rope_cos_sin(positions, dim, hp.rope_theta, hp.rope_scaling, factors,
                        attn_factor=hp.rope_attn_factor)
    swa = None
    if any(hp.is_swa(i) for i in range(hp.n_layer)):
        swa = rope_cos_sin(positions, dim, hp.rope_theta_swa,
                           hp.rope_scaling if hp.swa_rope_scaled else {}, factors,
                           attn_factor=hp.rope_attn_factor)
    return [(None, None) if not hp.has_rope(i) else swa if hp.is_swa(i) else full
            for i in range(hp.n_layer)]


def embed(hp: Hparams, get: Weights, ids: list[int], pos0: int = 0) -> torch.Tensor:
    """Token embeddings (scaled: Gemma), plus the learned position embeddings of positions
    pos0.. where the file has them (GPT-2)."""
    h = get("token_embd.weight")[torch.tensor(ids)]
    if hp.embed_scale:
        h = h * torch.tensor(hp.embed_scale, dtype=h.dtype)
    if (pos := get("position_embd.weight")) is not None:
        off = hp.pos_offset              # OPT's table starts two rows before position 0
        if off + pos0 + len(ids) > pos.shape[0]:
            raise InputError(f"the text reaches position {pos0 + len(ids) - 1}, beyond the "
                             f"model's {pos.shape[0] - off} learned positions (use fewer tokens)")
        h = h + pos[off + pos0:off + pos0 + len(ids)]
    return h


def output_logits(hp: Hparams, get: Weights, h: torch.Tensor) -> torch.Tensor:
    h = norm(hp, get, "output_norm", h)
    w = get("output.weight")
    logits = linear(h, w if w is not None else get("token_embd.weight"), get("output.bias"))
    if hp.logit_scale:
        logits = logits / hp.logit_scale
    if hp.final_softcap:
        logits = torch.tanh(logits / hp.final_softcap) * hp.final_softcap
    return logits


@torch.no_grad()
def prefill_layers(hp: Hparams, get: Weights, ids: list[int], *,
                   on_layer: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Logits [T, n_vocab] for one sequence starting at position 0. `get` may load each tensor
    when asked and forget it afterwards: only one layer's weights are needed at a time.
    on_layer(i, hidden) sees the hidden state after each layer (i = -1: the embeddings)."""
    h = embed(hp, get, ids)
    if on_layer:
        on_layer(-1, h)
    ropes = rope_tables(hp, get, 0, len(ids))
    for i in range(hp.n_layer):
        h = block(hp, get, i, h, *ropes[i])
        if on_layer:
            on_layer(i, h)
    return output_logits(hp, get, h)


class Model:
    """All weights in memory, with a KV cache: batched prefill, then one token at a time.
    n_ctx: the longest sequence it will run, fixed up front as llama.cpp's context is, so that
    LongRoPE's choice of factors cannot change under keys already cached."""

    def __init__(self, hp: Hparams, weights: dict[str, torch.Tensor], n_ctx: int | None = None):
        self.hp, self.weights, self.n_ctx = hp, weights, n_ctx
        self.reset()

    def get(self, name: str):
        return self.weights.get(name)

    def reset(self) -> None:
        self.cache = ssm.SsmState() if self.hp.ssm else KVCache()   # SSMs carry their state

    @torch.no_grad()
    def forward(self, ids: list[int]) -> torch.Tensor:
        """Appends ids to the cached sequence; returns their logits [T, n_vocab]."""
        pos0 = self.cache.length
        h = embed(self.hp, self.get, ids, pos0)
        if self.hp.ssm:
            return output_logits(self.hp, self.get, ssm.run_layers(self.hp, self.get, h, self.cache))
        ropes = rope_tables(self.hp, self.get, pos0, len(ids), self.n_ctx)
        for i in range(self.hp.n_layer):
            h = block(self.hp, self.get, i, h, *ropes[i], self.cache, pos0)
        return output_logits(self.hp, self.get, h)


@torch.no_grad()
def ffn_inputs(hp: Hparams, get: Weights, ids: list[int]):
    """Runs the model densely and yields, per layer, (i, x, active): x [T, n_embd] what
    PowerInfer's predictor sees (the residual entering the FFN, before its norm; in a parallel
    block, Falcon's, the layer input) and active [T, n_ff] the neurons whose activation is not
    zero (what a predictor should predict)."""
    h = embed(hp, get, ids)
    ropes = rope_tables(hp, get, 0, len(ids))
    for i in range(hp.n_layer):
        p = f"blk.{i}."
        if is_parallel(hp, get, i):
            yield i, h, ffn(hp, get, i, ffn_input(hp, get, i, h))[1]
            h = block(hp, get, i, h, *ropes[i])
            continue
        h = h + attention(hp, get, i, norm(hp, get, p + "attn_norm", h), *ropes[i], None, 0)
        y, active = ffn(hp, get, i, norm(hp, get, p + hp.ffn_norm, h))
        yield i, h, active
        h = h + y
