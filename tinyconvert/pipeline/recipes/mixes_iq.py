"""The IQ mixes of llama-quant.cpp's llama_tensor_get_type_impl (iq1_s .. iq3_m, iq4_xs, and
q2_k_s), and llama.cpp's refusal of a mix that needs an importance matrix when none is given
(tensor_requires_imatrix). mixes.py calls in here; the rules are llama.cpp's, in its order.
"""
from __future__ import annotations

from tinyconvert.formats.errors import InputError

# mix -> (llama.cpp LlamaFileType number, default tensor type)
IQ_RECIPES: dict[str, tuple[int, str]] = {
    "iq2_xxs": (19, "iq2_xxs"), "iq2_xs": (20, "iq2_xs"), "q2_k_s": (21, "q2_k"),
    "iq3_xs": (22, "iq3_s"), "iq3_xxs": (23, "iq3_xxs"), "iq1_s": (24, "iq1_s"),
    "iq3_s": (26, "iq3_s"), "iq3_m": (27, "iq3_s"), "iq2_s": (28, "iq2_xs"),
    "iq2_m": (29, "iq2_s"), "iq4_xs": (30, "iq4_xs"), "iq1_m": (31, "iq1_m"),
}
IQ_FALLBACK = {t: "iq4_nl" for t in ("iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs",
                                     "iq3_s", "iq4_xs")}
# the "very low" mixes, which have their own branch
VERY_LOW = ("iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq1_s", "iq1_m")
OUTPUT_Q5_K = ("iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq2_s", "iq2_m", "iq1_m")
EIGHT_EXPERT_ATTN_OUTPUT_Q5_K = ("iq3_xs", "iq3_xxs", "iq3_s", "iq3_m", "iq4_xs")
# tensor types for which llama.cpp insists on a matrix (not for token_embd / output)
REQUIRES_IMATRIX = ("iq3_xxs", "iq2_xxs", "iq2_xs", "iq2_s", "iq1_m", "iq1_s")


def token_embd(mix: str) -> str | None:
    """The untied token_embd's type for an IQ mix, or None for the default."""
    if mix in ("iq2_xxs", "iq2_xs", "iq1_s", "iq1_m"):
        return "q2_k"
    if mix in ("iq2_s", "iq2_m", "iq3_xxs"):
        return "iq3_s"
    return None


def very_low(st, mix: str, new: str, cat: str, shape) -> str:
    """The branch of the very-low mixes: attn_v up, a few first ffn_down up, attn_output."""
    two = mix in ("iq2_s", "iq2_m")
    if cat in ("attn_v", "attn_qkv", "attn_kv_b"):
        new = "q4_k" if shape.n_gqa >= 4 or shape.n_expert >= 4 else "iq3_s" if two else "q2_k"
        st.i_wv += 1
    elif cat == "attn_k" and shape.n_expert == 8:
        new = "q4_k"
    elif cat == "ffn_down":
        if st.i_down < st.n_down // 8:
            new = "iq3_s" if two else "q2_k"
        st.i_down += 1
    elif cat == "attn_output":
        if shape.n_expert == 8:
            new = "q5_k"
        elif mix in ("iq1_s", "iq1_m"):
            new = "iq2_xxs"
        elif two:
            new = "iq3_s"
    return new


def attn_v(mix: str, shape, has_imatrix: bool) -> str | None:
    if mix == "q2_k_s" and shape.n_gqa >= 4:
        return "q4_k"
    if mix == "iq3_xxs":
        return "q4_k" if shape.n_gqa >= 4 else "iq3_xxs" if has_imatrix else "iq3_s"
    if mix in ("iq3_xs", "iq3_s") and shape.n_gqa >= 4:
        return "q4_k"
    if mix == "iq3_m":
        return "q4_k"
    if mix == "iq4_xs" and shape.n_gqa >= 4:
        return "q5_k"
    return None


def attn_q_or_k(mix: str) -> str | None:
    return {"iq3_xs": "iq3_xxs", "iq3_xxs": "iq2_s"}.get(mix)


def ffn_down(mix: str, i: int, n: int, shape, has_imatrix: bool, more_bits: bool) -> str | None:
    """The IQ and imatrix-dependent ffn_down rules (layer i of n)."""
    if mix == "q2_k_s":
        return "q4_k" if i < n // 8 else None
    if mix == "iq3_xxs" and not has_imatrix:
        return "q4_k" if i < n // 8 else "q3_k"
    if mix == "iq3_m" and (i < n // 8 or (shape.n_expert == 8 and more_bits)):
        return "q4_k"
    if mix in ("iq4_nl", "iq4_xs") and not has_imatrix and i < n // 8:
        return "q5_k"
    if mix in ("q4_0", "q5_0") and has_imatrix and i < n // 8:
        return "q4_1" if mix == "q4_0" else "q5_1"
    return None


def attn_output(mix: str) -> str | None:
    return {"iq3_xxs": "iq3_s", "iq3_m": "q4_k"}.get(mix)


def gate_or_up(mix: str, i: int, n: int) -> str | None:
    return "iq3_xxs" if mix == "iq3_xs" and n // 8 <= i < 7 * n // 8 else None


def check_requires_imatrix(types: dict, mix: str, has_imatrix: bool) -> None:
    """llama.cpp refuses (before writing anything) a file in which some tensor other than
    token_embd / output would get a type that needs a matrix, when none is given."""
    if has_imatrix:
        return
    for name, (qtype, _) in types.items():
        if name in ("token_embd.weight", "per_layer_token_embd.weight", "output.weight"):
            continue
        if qtype in REQUIRES_IMATRIX or (qtype == "q2_k" and mix == "q2_k_s"):
            raise InputError(f"{mix} needs an importance matrix: {name} would be {qtype}, which "
                             f"llama.cpp refuses to make without one; pass --imatrix FILE")
