"""The state-space blocks llama.cpp runs for `mamba` (Mamba, Falcon-Mamba) and `mamba2`, on
weights named as in GGUF; which one runs is decided by the file's keys (hp.ssm, from ssm.*).

Each block is h + mixer(rms_norm(h)). The mixer keeps two states per layer, carried across calls
instead of a KV cache: the last d_conv - 1 inputs of its causal depthwise conv, and the SSM
state h ([d_inner, d_state] for Mamba, [n_head, head_dim, d_state] for Mamba2).

    Mamba:  x, z = in_proj(u);  x = silu(conv(x) + b);  dt, B, C = x_proj(x)
            (Falcon-Mamba: dt, B, C RMS-normalised without weights)
            dt = softplus(dt_proj(dt) + b);  h = exp(dt*A) h + dt*B*x;  y = C.h + D*x
            out_proj(y * silu(z))
    Mamba2: z, xBC, dt = in_proj(u);  xBC = silu(conv(xBC) + b);  x, B, C = xBC
            one scalar A and dt per head, B and C shared by the heads of a group;
            y = C.h + D*x;  out_proj(grouped_rms_norm(y * silu(z)))

The scan runs token by token (sequential, exact in fp32; what ggml_ssm_scan computes)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from tinyconvert.runtime.projections import linear


@dataclass
class SsmState:
    conv: dict = field(default_factory=dict)     # layer -> [d_conv - 1, channels]
    ssm: dict = field(default_factory=dict)      # layer -> the scan state
    length: int = 0                              # tokens seen


def _rms(x: torch.Tensor, eps: float, w: torch.Tensor | None = None) -> torch.Tensor:
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x if w is None else x * w


def causal_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, prev: torch.Tensor | None):
    """x [T, C], w [C, k] (GGUF ssm_conv1d), prev [k - 1, C] the inputs before x (zeros at the
    start). Returns (silu(conv + b) [T, C], the last k - 1 inputs)."""
    k = w.shape[-1]
    if prev is None:
        prev = x.new_zeros(k - 1, x.shape[1])
    xp = torch.cat([prev, x])                       # [T + k - 1, C]
    y = (xp.unfold(0, k, 1) * w).sum(-1) + b        # windows [T, C, k]
    return F.silu(y), xp[xp.shape[0] - (k - 1):]


def _scan1(x, dt, A, B, C, h):
    """Mamba: x, dt [T, d_inner], A [d_inner, d_state], B, C [T, d_state], h [d_inner, d_state]."""
    ys = []
    for t in range(x.shape[0]):
        h = torch.exp(dt[t, :, None] * A) * h + (dt[t] * x[t])[:, None] * B[t][None, :]
        ys.append(h @ C[t])
    return torch.stack(ys), h


def _scan2(x, dt, A, B, C, h):
    """Mamba2: x [T, n_head, head_dim], dt [T, n_head], A [n_head], B, C [T, n_head, d_state]
    (already repeated per head), h [n_head, head_dim, d_state]."""
    ys = []
    for t in range(x.shape[0]):
        decay = torch.exp(dt[t] * A)[:, None, None]
        h = decay * h + (dt[t][:, None] * x[t])[:, :, None] * B[t][:, None, :]
        ys.append((h * C[t][:, None, :]).sum(-1))
    return torch.stack(ys), h


def mamba1_mixer(hp, get, i: int, u: torch.Tensor, state: SsmState | None) -> torch.Tensor:
    p, s = f"blk.{i}.", hp.ssm
    d_inner, d_state, dt_rank = s["d_inner"], s["d_state"], s["dt_rank"]
    x, z = linear(u, get(p + "ssm_in.weight")).split([d_inner, d_inner], -1)
    prev = state.conv.get(i) if state is not None else None
    x, conv = causal_conv(x, get(p + "ssm_conv1d.weight"), get(p + "ssm_conv1d.bias"), prev)
    dt, B, C = linear(x, get(p + "ssm_x.weight")).split([dt_rank, d_state, d_state], -1)
    if s["dt_b_c_rms"]:
        dt, B, C = (_rms(t, s["bcdt_eps"]) for t in (dt, B, C))
    dt = F.softplus(linear(dt, get(p + "ssm_dt.weight"), get(p + "ssm_dt.bias")))
    A = get(p + "ssm_a")
    h = state.ssm.get(i) if state is not None else None
    y, h = _scan1(x, dt, A, B, C, h if h is not None else x.new_zeros(A.shape))
    if state is not None:
        state.conv[i], state.ssm[i] = conv, h
    y = (y + x * get(p + "ssm_d")) * F.silu(z)
    return linear(y, get(p + "ssm_out.weight"))


def mamba2_mixer(hp, get, i: int, u: torch.Tensor, state: SsmState | None) -> torch.Tensor:
    p, s, T = f"blk.{i}.", hp.ssm, u.shape[0]
    d_inner, d_state, n_head, n_group = s["d_inner"], s["d_state"], s["dt_rank"], s["n_group"]
    gs = n_group * d_state
    z, xBC, dt = linear(u, get(p + "ssm_in.weight")).split([d_inner, d_inner + 2 * gs, n_head], -1)
    prev = state.conv.get(i) if state is not None else None
    xBC, conv = causal_conv(xBC, get(p + "ssm_conv1d.weight"), get(p + "ssm_conv1d.bias"), prev)
    x, B, C = xBC.split([d_inner, gs, gs], -1)
    x = x.reshape(T, n_head, d_inner // n_head)
    rep = n_head // n_group                       # head h reads group h // rep
    B, C = (t.reshape(T, n_group, d_state).repeat_interleave(rep, 1) for t in (B, C))
    dt = F.softplus(dt + get(p + "ssm_dt.bias"))
    h = state.ssm.get(i) if state is not None else None
    if h is None:
        h = x.new_zeros(n_head, d_inner // n_head, d_state)
    y, h = _scan2(x, dt, get(p + "ssm_a").reshape(n_head), B, C, h)
    if state is not None:
        state.conv[i], state.ssm[i] = conv, h
    y = (y + x * get(p + "ssm_d").reshape(n_head, 1)).reshape(T, d_inner) * F.silu(z)
    norm = get(p + "ssm_norm.weight").reshape(n_group, d_inner // n_group)
    y = _rms(y.reshape(T, n_group, -1), hp.rms_eps, norm).reshape(T, d_inner)
    return linear(y, get(p + "ssm_out.weight"))


MIXERS = {"mamba": mamba1_mixer, "mamba2": mamba2_mixer}


def block(hp, get, i: int, h: torch.Tensor, state: SsmState | None = None) -> torch.Tensor:
    mixer = MIXERS[hp.arch]
    return h + mixer(hp, get, i, _rms(h, hp.rms_eps, get(f"blk.{i}.attn_norm.weight")), state)


@torch.no_grad()
def run_layers(hp, get, h: torch.Tensor, state: SsmState) -> torch.Tensor:
    """The blocks over embeddings h [T, n_embd], continuing from the state where it stopped."""
    for i in range(hp.n_layer):
        h = block(hp, get, i, h, state)
    state.length += h.shape[0]
    return h
