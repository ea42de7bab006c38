"""Phi-3, Phi-3.5, Phi-4 and Phi-4-mini (llama.cpp's `phi3`).

- Fused projections stay fused: qkv_proj -> attn_qkv (rows Q, then K, then V) and gate_up_proj ->
  ffn_up with 2*n_ff rows (gate rows first); gguf-py's name table already maps both.
- NeoX RoPE on the first rope_dim dims of each head: rope.dimension_count =
  int(partial_rotary_factor * n_embd) // n_head (Phi-4-mini: 0.75 -> 96 of 128).
- LongRoPE (Phi-3 128k, Phi-3.5, Phi-4-mini): per-frequency divisors for short and long contexts
  as f32 tensors rope_factors_short/long (rope_dim/2 values each), and a cos/sin scale
  rope.scaling.attn_factor = sqrt(1 + ln(s)/ln(orig)), s = max_position_embeddings / orig.
- attention.sliding_window is written (0 when null) though llama.cpp's loader ignores it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import gguf

from tinyconvert.archs.base import Arch
from tinyconvert.formats.errors import InputError

LAYER = ("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down")
LONGROPE = ("longrope", "su")    # "su": what the first Phi-3 128k configs called it
ORIG_CTX = 4096                  # transformers' Phi3Config default original_max_position_embeddings
FACTOR_NAMES = {kind: gguf.TENSOR_NAMES[t] + ".weight" for kind, t in (
    ("long", gguf.MODEL_TENSOR.ROPE_FACTORS_LONG), ("short", gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT))}


@dataclass(frozen=True)
class LongRope:
    long: list[float]
    short: list[float]
    attn_factor: float


def rope_dim(c) -> int:
    """Rotated dims per head, as llama.cpp's converter counts them; transformers counts
    int(head_dim * factor), which a config could make differ."""
    factor = c.rope.get("partial_rotary_factor", c.raw.get("partial_rotary_factor", 1.0))
    dim = int(factor * c.n_embd) // c.n_head
    if dim != int(c.head_dim * factor):
        raise InputError(f"partial_rotary_factor {factor}: llama.cpp rotates {dim} dims per head, "
                         f"transformers {int(c.head_dim * factor)}; the GGUF would compute a "
                         f"different model")
    return dim


def original_ctx(c) -> int:
    return (c.rope.get("original_max_position_embeddings")
            or c.raw.get("original_max_position_embeddings") or ORIG_CTX)


def _attn_factor(c, orig: int) -> float:
    """llama.cpp's converter ignores the config's factor / attention_factor; transformers would
    use them, so a config whose values disagree is refused."""
    s = (c.n_ctx or orig) / orig
    ours = math.sqrt(1 + math.log(s) / math.log(orig)) if s > 1.0 else 1.0
    hf_s = c.rope.get("factor") or s
    hf = c.rope.get("attention_factor") or (
        math.sqrt(1 + math.log(hf_s) / math.log(orig)) if hf_s > 1.0 else 1.0)
    if not math.isclose(ours, hf, rel_tol=1e-6):
        raise InputError(f"config.json's LongRoPE factor/attention_factor give a cos/sin scale of "
                         f"{hf:.6f}, but llama.cpp derives {ours:.6f} from max_position_embeddings"
                         f"/original_max_position_embeddings; the GGUF would compute a different "
                         f"model")
    return ours


def longrope(c) -> LongRope | None:
    """The LongRoPE factors and scale, or None for plain RoPE (Phi-3 4k, Phi-4)."""
    kind, r = c.rope["rope_type"], c.rope
    if kind is None and not r.get("long_factor"):
        return None
    if kind not in LONGROPE:
        raise InputError(f"rope scaling {kind!r} is not supported for {c.hf_class} (llama.cpp's "
                         f"phi3 runs plain RoPE or LongRoPE: longrope, su)")
    long, short, n = r.get("long_factor"), r.get("short_factor"), rope_dim(c) // 2
    if not long or not short or len(long) != n or len(short) != n:
        raise InputError(f"LongRoPE needs long_factor and short_factor of {n} values each "
                         f"(rope_dim/2); config.json has {len(long or [])} and "
                         f"{len(short or [])}")
    return LongRope(list(long), list(short), _attn_factor(c, original_ctx(c)))


def phi3_keys(w: gguf.GGUFWriter, c) -> None:
    w.add_rope_dimension_count(rope_dim(c))
    w.add_rope_scaling_orig_ctx_len(original_ctx(c))
    w.add_sliding_window(c.raw.get("sliding_window") or 0)
    if (lr := longrope(c)) is not None:
        w.add_rope_scaling_attn_factors(lr.attn_factor)


def phi3_factors(c) -> list[tuple[str, list[float]]]:
    lr = longrope(c)
    return [] if lr is None else [(FACTOR_NAMES["long"], lr.long),
                                  (FACTOR_NAMES["short"], lr.short)]


FAMILIES = [
    Arch(("Phi3ForCausalLM",), gguf.MODEL_ARCH.PHI3, layer_tensors=LAYER, keys=phi3_keys,
         own_rope=True, extra=phi3_factors),
]
