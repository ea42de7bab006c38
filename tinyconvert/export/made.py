"""Tensors hf2gguf computes from config.json rather than copies (llama 3's `rope_freqs`): the
export writes the config values that make them, and proves it by computing them again with
hf2gguf's own code (tinyconvert.pipeline.plan.extra_tensors) and comparing with the file's.

llama 3's per-frequency divisors come from four numbers; `factor` is their largest value, and the
other three are tried from the released Llama 3.1 / 3.2 configurations."""
from __future__ import annotations

import numpy as np

from tinyconvert.formats.errors import InputError

ROPE_FREQS = "rope_freqs.weight"
LONG, SHORT = "rope_factors_long.weight", "rope_factors_short.weight"   # Phi-3's LongRoPE
LLAMA3_RELEASED = ({"low_freq_factor": 1.0, "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192},)


def llama3_candidates(freqs: np.ndarray, rope: dict) -> list[dict]:
    """rope_parameters that could have made freqs (checked later, never trusted)."""
    factor = float(np.float32(freqs.max()))
    return [{**rope, "rope_type": "llama3", "factor": factor, **r} for r in LLAMA3_RELEASED]


def longrope_parameters(load, rope: dict, keys: dict) -> dict:
    """Phi-3's LongRoPE divisors back into rope_parameters (as f32 values' shortest decimals,
    which hf2gguf turns into the same f32 tensors; check_made proves it)."""
    def plain(name):
        return [float(str(np.float32(x))) for x in load(name).reshape(-1)]
    orig = int(keys["rope.scaling.original_context_length"])
    return {**rope, "rope_type": "longrope", "original_max_position_embeddings": orig,
            "long_factor": plain(LONG), "short_factor": plain(SHORT)}


def check_made(cfg, load, present: set[str]) -> set[str]:
    """Every converter-made tensor in the file equals what hf2gguf makes from the exported
    config, and the config makes no tensor the file lacks. Returns their names."""
    from tinyconvert.pipeline.plan import extra_tensors
    made = {p.name: p for p in extra_tensors(cfg)}
    for name in sorted(set(made) ^ (present & (set(made) | {ROPE_FREQS}))):
        raise InputError(f"{'the file has' if name in present else 'the config makes'} "
                         f"{name!r} and the other side does not")
    for name, p in made.items():
        ours = np.asarray(p.read_rows(0, p.n_rows), dtype=np.float32).reshape(-1)
        if not np.array_equal(ours, load(name).reshape(-1)):
            raise InputError(f"GGUF tensor {name!r} is not what any config.json gguf2hf can "
                             f"write makes (rope scaling parameters it cannot recover)")
    return set(made)
