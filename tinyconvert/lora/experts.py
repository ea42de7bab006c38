"""LoRA on MoE experts in a GGUF adapter. Adapters trained on per-expert linear layers (PEFT on
transformers 4: `...experts.{e}.gate_proj`, Mixtral's `...experts.{e}.w1`) carry one pair per
expert; llama.cpp stores the experts stacked ([n_expert, rows, cols], ffn_*_exps) and applies an
adapter on them through build_lora_mm_id with the factors stacked the same way: lora_a
[n_expert, r, in], lora_b [n_expert, out, r] (llama.cpp's convert_lora_to_gguf.py stacks them
so). Each expert's B is folded by its own PEFT scaling, as for a plain weight; the experts must
share one rank (llama.cpp reads r from the tensor) and all be there (one stacked tensor).
transformers 5's fused experts are parameters, and PEFT's LoRA on parameters
(target_parameters) is refused when the adapter is read."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.lora.adapter import LoraPair
from tinyconvert.pipeline.write.encode import to_f32
from tinyconvert.pipeline.experts import PER_EXPERT


@dataclass(frozen=True)
class ExpertStack:
    key: str                         # the stacked tensor's checkpoint name, ...experts.{w}.weight
    pairs: tuple[LoraPair, ...]      # by expert


def split_experts(pairs: dict[str, LoraPair], n_expert: int
                  ) -> tuple[dict[str, LoraPair], list[ExpertStack]]:
    """(pairs on plain weights, stacks of per-expert pairs); n_expert: the base's count."""
    plain: dict[str, LoraPair] = {}
    groups: dict[str, dict[int, LoraPair]] = {}
    for target, pair in pairs.items():
        m = PER_EXPERT.match(target)
        if m is None or m["kind"] != "weight":
            plain[target] = pair
        else:
            groups.setdefault(f"{m['pre']}.{m['w']}.weight", {})[int(m["e"])] = pair
    return plain, [_stack(key, group, n_expert) for key, group in sorted(groups.items())]


def _stack(key: str, group: dict[int, LoraPair], n_expert: int) -> ExpertStack:
    if sorted(group) != list(range(n_expert)):
        missing = min(set(range(n_expert)) - set(group), default=max(group))
        raise InputError(f"{key}: the adapter has LoRA on some experts but not on expert "
                         f"{missing} (of {n_expert}); a GGUF adapter stacks all experts of a "
                         f"layer")
    pairs = tuple(group[e] for e in range(len(group)))
    first = pairs[0]
    for p in pairs[1:]:
        if (p.a.shape, p.b.shape) != (first.a.shape, first.b.shape):
            raise InputError(f"{p.target}: LoRA factors {p.a.shape} and {p.b.shape} differ "
                             f"from expert 0's {first.a.shape} and {first.b.shape}; a GGUF "
                             f"adapter stacks the experts with one rank")
    return ExpertStack(key, pairs)


def stacked_rows(stack: ExpertStack, which: str, alpha: float):
    """Rows of the stacked factor ([n_expert * r, in] for "a", [n_expert * out, r] for "b"),
    B folded by each expert's scaling * r / alpha (llama.cpp applies alpha / r)."""
    held: dict = {}

    def rows(r0: int, r1: int) -> np.ndarray:
        if "w" not in held:
            held["w"] = np.concatenate([_factor(p, which, alpha) for p in stack.pairs])
        return np.ascontiguousarray(held["w"][r0:r1])
    return rows


def _factor(pair: LoraPair, which: str, alpha: float) -> np.ndarray:
    rec = pair.a if which == "a" else pair.b
    w = to_f32(rec.load().reshape(rec.n_rows, -1), rec.dtype).reshape(rec.shape)
    if which == "b":
        w = (w.astype(np.float64) * (pair.scaling * pair.rank / alpha)).astype(np.float32)
    return w


def stacked_shape(stack: ExpertStack, which: str) -> tuple[int, ...]:
    rec = stack.pairs[0].a if which == "a" else stack.pairs[0].b
    return (len(stack.pairs), *rec.shape)
