"""StableLM, StableLM 2 (1.6B) and StableLM 2 12B (`StableLmForCausalLM`; llama.cpp's
`stablelm`): LayerNorms with biases, SwiGLU MLP, partial NeoX RoPE (0.25 of each head), optional
q/k/v biases; the 12B has parallel attention + MLP on one norm and a LayerNorm per head on q and k.

The per-head norms are one tensor per head in the checkpoint
(self_attn.q_layernorm.norms.{h}.weight); llama.cpp wants them stacked to [n_head, head_dim]
(and [n_kv_head, head_dim] for k). Its graph runs a block in parallel exactly when the layer has
no ffn_norm, which is how transformers builds the parallel model (no post_attention_layernorm).

StableLMEpochForCausalLM is the remote-code class of the first releases (stablelm-3b-4e1t, the
first stablelm-2-1_6b): the same tensors, with rope_pct and norm_eps for partial_rotary_factor and
layer_norm_eps."""
from __future__ import annotations

import re
from collections import defaultdict

import gguf

from tinyconvert.archs.base import LLAMA_LAYER, Arch
from tinyconvert.archs.ln.layernorm import add_theta, eps, no_rope_scaling, partial_rotary
from tinyconvert.archs.ln.transforms import stacked
from tinyconvert.formats.errors import InputError

HEAD_NORM = re.compile(r"^(?P<pre>.*\.self_attn\.[qk]_layernorm)\.norms\.(?P<h>\d+)\.weight$")


def stablelm_layer(c, i: int) -> tuple[str, ...]:
    names = LLAMA_LAYER
    if c.raw.get("use_parallel_residual"):
        names = tuple(n for n in names if n != "ffn_norm")
    if c.raw.get("qk_layernorm"):
        names += ("attn_q_norm", "attn_k_norm")
    return names


def stablelm_keys(w: gguf.GGUFWriter, c) -> None:
    no_rope_scaling(c)
    w.add_context_length(c.n_ctx)
    w.add_embedding_length(c.n_embd)
    w.add_block_count(c.n_layer)
    w.add_feed_forward_length(c.n_ff)
    w.add_rope_dimension_count(int(partial_rotary(c) * (c.n_embd // c.n_head)))
    w.add_head_count(c.n_head)
    w.add_head_count_kv(c.n_kv_head)
    w.add_parallel_residual(bool(c.raw.get("use_parallel_residual", False)))
    w.add_layer_norm_eps(eps(c, "layer_norm_eps", "norm_eps"))
    add_theta(w, c)


def stablelm_records(c, records):
    """Per-head q/k norms stacked in head order; everything else as it is."""
    heads, out = defaultdict(dict), []
    for rec in records:
        if m := HEAD_NORM.match(rec.name):
            heads[m["pre"]][int(m["h"])] = rec
        else:
            out.append(rec)
    for pre, per_head in heads.items():
        want = c.n_head if ".q_layernorm" in pre else c.n_kv_head
        if sorted(per_head) != list(range(want)):
            raise InputError(f"{pre}.norms has heads {sorted(per_head)}; expected 0..{want - 1}")
        out.append(stacked(pre + ".weight", [per_head[h] for h in range(want)]))
    return out


FAMILIES = [
    Arch(("StableLmForCausalLM", "StableLMEpochForCausalLM"), gguf.MODEL_ARCH.STABLELM,
         layer_tensors=stablelm_layer,
         common_keys=False, keys=stablelm_keys, records=stablelm_records),
]
