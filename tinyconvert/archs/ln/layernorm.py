"""What the LayerNorm families (gpt2, gptneox, starcoder2, phi2, stablelm, falcon) share: their
configs under the common names, the GELU forms llama.cpp's graphs accept, the keys llama.cpp's
converter writes for them, and refusals of configs llama.cpp would compute differently.

llama.cpp's converter writes each family's keys by hand and leaves out some it could have
written (no head_count_kv for gpt2 / gptneox, no rope.freq_base for most). We write the same keys,
and a key it leaves out only where the config's value differs from llama.cpp's default (RoPE base
10000), so that such a config still computes the model it describes."""
from __future__ import annotations

import gguf

from tinyconvert.formats.errors import InputError

# What llama.cpp's LLM_FFN_GELU computes is the tanh form; the exact (erf) form differs from it by
# under 1e-3 per activation, as close as llama.cpp's f16 GELU table gets to either
GELU = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast")
DEFAULT_THETA = 10000.0


def filled(raw: dict, **names) -> dict:
    """raw with common key k set from raw[v] (v a family key name, or a callable of raw) where
    raw does not already have k."""
    out = dict(raw)
    for key, source in names.items():
        if out.get(key) is None:
            out[key] = source(raw) if callable(source) else raw.get(source)
    return out


def refuse_unless(c, ok: bool, what: str) -> None:
    if not ok:
        raise InputError(f"{c.hf_class}: config.json has {what}, which llama.cpp's "
                         f"{c.arch.arch_name} does not compute; the GGUF would compute a "
                         f"different model")


def eps(c, *keys: str) -> float:
    value = next((c.raw[k] for k in keys if c.raw.get(k) is not None), None)
    if value is None:
        raise InputError(f"{c.hf_class}: config.json has none of {', '.join(keys)}")
    return value


def partial_rotary(c) -> float:
    """The rotated fraction of each head: rope_parameters' partial_rotary_factor (transformers 5)
    or the older top-level names."""
    for source in (c.rope, c.raw):
        for key in ("partial_rotary_factor", "rotary_pct", "rope_pct"):
            if source.get(key) is not None:
                return float(source[key])
    return 1.0


def add_theta(w: gguf.GGUFWriter, c) -> None:
    """rope.freq_base only where it is not llama.cpp's default (the converter never writes it)."""
    if c.rope_theta != DEFAULT_THETA:
        w.add_rope_freq_base(c.rope_theta)


def no_rope_scaling(c) -> None:
    refuse_unless(c, c.rope["rope_type"] is None, f"rope scaling {c.rope['rope_type']!r}")
