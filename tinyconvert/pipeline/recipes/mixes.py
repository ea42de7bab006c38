"""Quantization recipes ("mixes"): which type each tensor of a model gets, as llama.cpp's
llama-quant.cpp decides it (llama_tensor_get_type and its _impl, tensor_type_fallback) for the
mixes tinyconvert offers. Tensors are visited in llama.cpp's order (layer, then name), because
its per-layer counters (attn_v, ffn_down) depend on that order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from tinyconvert.formats.errors import InputError
from tinyconvert.pipeline.recipes import mixes_iq as iq
from tinyconvert.quant import get_qtype

# name -> (llama.cpp LlamaFileType number, default tensor type)
RECIPES: dict[str, tuple[int, str]] = {
    "f32": (0, "f32"), "f16": (1, "f16"), "bf16": (32, "bf16"),
    "q8_0": (7, "q8_0"), "q4_0": (2, "q4_0"), "q4_1": (3, "q4_1"),
    "q5_0": (8, "q5_0"), "q5_1": (9, "q5_1"),
    "q2_k": (10, "q2_k"), "q3_k_s": (11, "q3_k"), "q3_k_m": (12, "q3_k"), "q3_k_l": (13, "q3_k"),
    "q4_k_s": (14, "q4_k"), "q4_k_m": (15, "q4_k"), "q5_k_s": (16, "q5_k"), "q5_k_m": (17, "q5_k"),
    "q6_k": (18, "q6_k"), "iq4_nl": (25, "iq4_nl"), "tq1_0": (36, "tq1_0"), "tq2_0": (37, "tq2_0"),
    "mxfp4_moe": (38, "mxfp4"),
}
RECIPES.update(iq.IQ_RECIPES)
ALIASES = {"q3_k": "q3_k_m", "q4_k": "q4_k_m", "q5_k": "q5_k_m"}     # as llama-quantize has them
FALLBACK = {"q2_k": "q4_0", "q3_k": "q4_0", "tq1_0": "q4_0", "tq2_0": "q4_0", "q4_k": "q5_0",
            "q5_k": "q5_1", "q6_k": "q8_0", **iq.IQ_FALLBACK}
FLOATS = ("f32", "f16", "bf16")
LAYERS_70B = {"qwen2": 80, "olmo": 80, "deci": 80, "jais2": 68}


def recipe(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in RECIPES:
        raise InputError(f"unknown type {name!r}; valid: {', '.join(sorted(RECIPES))} "
                         f"(and aliases {', '.join(ALIASES)})")
    return key


@dataclass(frozen=True)
class ModelShape:
    n_layer: int
    n_head: int
    n_kv_head: int
    arch: str = "llama"
    n_expert: int = 0

    @property
    def n_gqa(self) -> int:
        return self.n_head // max(1, self.n_kv_head)

    @property
    def is_70b(self) -> bool:
        """llama.cpp's LLM_TYPE_70B, which its loader sets by layer count (src/models/*.cpp):
        llama at 80 layers with GQA (without GQA it is the 65B), qwen2/olmo/deci at 80, jais2
        at 68."""
        if self.arch == "llama":
            return self.n_layer == 80 and self.n_head != self.n_kv_head
        return LAYERS_70B.get(self.arch) == self.n_layer


@dataclass(frozen=True)
class Options:
    pure: bool = False
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None
    leave_output_tensor: bool = False
    tensor_types: tuple[tuple[str, str], ...] = ()     # (regex, type), first match wins
    has_imatrix: bool = False          # llama.cpp's qs.has_imatrix: a non-empty matrix is given


# llama-quant.cpp: the mixes whose attn_output an eight-expert model bumps to Q5_K
EIGHT_EXPERT_ATTN_OUTPUT_Q5_K = ("q2_k", "q3_k_s", "q3_k_m", "iq4_nl", "q4_k_s", "q4_k_m",
                                 *iq.EIGHT_EXPERT_ATTN_OUTPUT_Q5_K)


def layer_of(name: str) -> int:
    m = re.match(r"blk\.(\d+)\.", name)
    if m is None:
        raise InputError(f"cannot read the layer of expert tensor {name!r}")
    return int(m.group(1))


def llama_order(name: str) -> tuple[int, str]:
    m = re.match(r"blk\.(\d+)\.", name)
    return (int(m.group(1)) if m else -1, name)


def category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for key, cat in (("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"),
                     ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"),
                     ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
                     ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


def allows_quantization(name: str, n_dims: int, opts: Options) -> bool:
    return (n_dims >= 2 and name.endswith("weight") and "_norm.weight" not in name
            and not (opts.leave_output_tensor and name == "output.weight")
            and "ffn_gate_inp.weight" not in name and "ssm_conv1d" not in name
            and name not in ("position_embd.weight", "token_types.weight"))


def use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


class _State:
    def __init__(self, n_attention_wv: int, n_layer: int, tied: bool):
        self.n_wv, self.i_wv = n_attention_wv, 0
        self.n_down, self.i_down = n_layer, 0
        self.i_gate = self.i_up = 0
        self.tied = tied


def _impl(st: _State, mix: str, new: str, name: str, row: int, shape: ModelShape,
          opts: Options) -> str:
    """llama_tensor_get_type_impl for the mixes above (dense models, no importance matrix)."""
    cat = category(name)
    falcon = shape.arch == "falcon"          # llama-quant.cpp's LLM_ARCH_FALCON exceptions
    if cat == "output" or (st.tied and cat == "token_embd"):
        if opts.output_tensor_type:
            return opts.output_tensor_type
        if falcon or row % get_qtype(new).block_size:
            return "q8_0"
        if mix in iq.OUTPUT_Q5_K:
            return "q5_k"
        return "q6_k" if new != "q8_0" else new
    if cat == "token_embd":
        if opts.token_embedding_type:
            return opts.token_embedding_type
        return "q4_k" if mix in ("tq1_0", "tq2_0") else iq.token_embd(mix) or new
    if mix in iq.VERY_LOW:
        return iq.very_low(st, mix, new, cat, shape)
    if cat in ("attn_v", "attn_qkv", "attn_kv_b"):
        if (t := iq.attn_v(mix, shape, opts.has_imatrix)) is not None:
            new = t
        elif mix == "q2_k":
            new = "q4_k" if shape.n_gqa >= 4 else "q3_k"
        elif mix == "q3_k_m":
            new = "q5_k" if st.i_wv < 2 else "q4_k"
        elif mix == "q3_k_l":
            new = "q5_k"
        elif mix == "iq4_nl" and shape.n_gqa >= 4:
            new = "q5_k"
        elif mix in ("q4_k_m", "q5_k_m") and use_more_bits(st.i_wv, st.n_wv):
            new = "q6_k"
        elif mix == "q4_k_s" and st.i_wv < 4:
            new = "q5_k"
        if shape.is_70b and new in ("q3_k", "q4_k"):
            new = "q5_k"
        if shape.n_expert == 8:             # Mixtral: attention is small next to the experts
            new = "q8_0"
        st.i_wv += 1
    elif cat == "attn_k" and shape.n_expert == 8:
        new = "q8_0"
    elif cat in ("attn_k", "attn_q"):
        new = iq.attn_q_or_k(mix) or new
    elif cat in ("ffn_gate", "ffn_up"):
        i = layer_of(name) if shape.n_expert > 1 else getattr(st, f"i_{cat[4:]}")
        new = iq.gate_or_up(mix, i, st.n_down) or new
        setattr(st, f"i_{cat[4:]}", getattr(st, f"i_{cat[4:]}") + 1)
    elif cat == "ffn_down":
        # with experts llama.cpp reads the layer from the name (expert and shared-expert tensors
        # share the layer); the counter still advances
        i, n = (layer_of(name) if shape.n_expert > 1 else st.i_down), st.n_down
        if (t := iq.ffn_down(mix, i, n, shape, opts.has_imatrix, use_more_bits(i, n))) is not None:
            new = t
        elif mix == "q2_k":
            new = "q3_k"
        elif mix == "q3_k_m":
            new = ("q5_k" if i < n // 16 else
                   "q4_k" if not falcon or use_more_bits(i, n) else "q3_k")
        elif mix == "q3_k_l":
            new = "q4_k" if falcon else "q5_k"
        elif mix == "q4_k_m" and falcon:
            new = "q6_k" if i < n // 16 else "q5_k" if use_more_bits(i, n) else "q4_k"
        elif mix == "q4_k_m":
            new = "q6_k" if use_more_bits(i, n) else new
        elif mix == "q5_k_m" and use_more_bits(i, n):
            new = "q6_k"
        elif mix == "q4_k_s" and not falcon and i < n // 8:
            new = "q5_k"
        elif mix in ("q4_0", "q5_0") and opts.has_imatrix and i < n // 8:
            new = "q4_1" if mix == "q4_0" else "q5_1"     # llama.cpp's guard, imatrix only
        st.i_down += 1
    elif cat == "attn_output" and falcon:
        new = "q4_k" if mix == "q3_k_l" else new
    elif cat == "attn_output" and shape.n_expert == 8:
        new = "q5_k" if mix in EIGHT_EXPERT_ATTN_OUTPUT_Q5_K else new
    elif cat == "attn_output":
        new = {"q2_k": "q3_k", "q3_k_m": "q4_k", "q3_k_l": "q5_k"}.get(mix) or \
            iq.attn_output(mix) or new
    return new


def mxfp4_moe_type(dims: tuple[int, ...]) -> str:
    """llama-quant.cpp's MXFP4_MOE: stacked expert tensors (ne[2] > 1) MXFP4, every other
    quantizable tensor Q8_0, the output included (its branch comes first and says Q8_0 too)."""
    return "mxfp4" if len(dims) >= 3 and dims[-3] > 1 else "q8_0"


def fallback(qtype: str, row: int) -> str:
    """tensor_type_fallback: a type whose block does not divide the row length."""
    if row % get_qtype(qtype).block_size == 0:
        return qtype
    out = FALLBACK.get(qtype, qtype)
    return out if row % get_qtype(out).block_size == 0 else "f16"


def choose_types(tensors: list[tuple[str, tuple[int, ...], str]], mix: str, shape: ModelShape,
                 opts: Options = Options()) -> dict[str, tuple[str, str | None]]:
    """tensors: (GGUF name, shape in torch order, current type name). Returns name ->
    (type to write, the type that did not fit the row length or None)."""
    default = RECIPES[mix][1]
    names = [t[0] for t in tensors]
    st = _State(sum(category(n) in ("attn_v", "attn_qkv", "attn_kv_b") for n in names),
                shape.n_layer, "output.weight" not in names)
    patterns = [(re.compile(p), t) for p, t in opts.tensor_types]
    out: dict[str, tuple[str, str | None]] = {}
    for name, dims, current in sorted(tensors, key=lambda t: llama_order(t[0])):
        if not allows_quantization(name, len(dims), opts):
            out[name] = (current, None)
            continue
        cat = category(name)
        if opts.token_embedding_type and cat == "token_embd":
            out[name] = (opts.token_embedding_type, None)
            continue
        if opts.output_tensor_type and cat == "output":
            out[name] = (opts.output_tensor_type, None)
            continue
        new = default
        if default not in FLOATS:
            manual = next((t for p, t in patterns if p.search(name)), None)
            if manual is not None:
                new = manual
            elif not opts.pure and mix == "mxfp4_moe":
                new = mxfp4_moe_type(dims)
            elif not opts.pure:
                new = _impl(st, mix, new, name, dims[-1], shape, opts)
            fitted = fallback(new, dims[-1])
            out[name] = (fitted, new if fitted != new else None)
        else:
            out[name] = (new, None)
    iq.check_requires_imatrix(out, mix, opts.has_imatrix)
    return out
