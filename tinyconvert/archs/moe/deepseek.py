"""DeepSeek-V2 / V2-Lite / V3 (llama.cpp's `deepseek2`): multi-head latent attention (MLA) and,
after `first_k_dense_replace` dense blocks, a mixture of experts with shared experts.

MLA keeps one compressed latent c_kv [kv_lora] per token. llama.cpp runs it "absorbed", as MQA
over [c_kv, k_pe] heads of kv_lora + rope dims, so it wants kv_b_proj ([n_head * (nope + v),
kv_lora], per head the nope key rows then the v rows) split in two: attn_k_b [n_head, kv_lora,
nope] (each head's key rows, transposed) and attn_v_b [n_head, v, kv_lora]. The rope dims are
stored interleaved already (HF's complex / interleave rope), so there is no Q/K permute.

The router differs by class: V2 softmax over all experts, V3 sigmoid with a selection bias
(`e_score_correction_bias`, GGUF exp_probs_b) inside the best `topk_group` of `n_group` groups.
transformers' configs have no `scoring_func`, and llama.cpp's converter then writes no gating
key, so its loader falls back to softmax: we write sigmoid for V3. Configs that transformers
and llama.cpp would route differently are refused."""
from __future__ import annotations

import re

import gguf
import numpy as np

from tinyconvert.archs.base import Arch
from tinyconvert.archs.yarn_checks import check_deepseek_yarn
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord

MLA = ("attn_norm", "attn_kv_a_mqa", "attn_kv_a_norm", "attn_k_b", "attn_v_b", "attn_output",
       "ffn_norm")
Q_LORA = ("attn_q_a", "attn_q_a_norm", "attn_q_b")      # q_lora_rank set (V2, V3)
Q_FULL = ("attn_q",)                                     # q_lora_rank null (V2-Lite)
DENSE = ("ffn_gate", "ffn_up", "ffn_down")
EXPERTS = ("ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")
SHARED = ("ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp")
GATING = {"DeepseekV2ForCausalLM": "softmax", "DeepseekV3ForCausalLM": "sigmoid"}
GATING_TYPE = {"softmax": gguf.ExpertGatingFuncType.SOFTMAX,
               "sigmoid": gguf.ExpertGatingFuncType.SIGMOID}
LAYER = re.compile(r"^model\.layers\.(\d+)\.")


def _dense_lead(c) -> int:
    """llama.cpp's converter: first_k_dense_replace, else every layer dense without experts."""
    k = c.raw.get("first_k_dense_replace")
    if k is not None:
        return k
    return c.n_layer if c.raw.get("n_routed_experts") is None else 0


def layer_tensors(c, i: int) -> tuple[str, ...]:
    q = Q_LORA if c.raw.get("q_lora_rank") else Q_FULL
    if i < _dense_lead(c):
        return MLA + q + DENSE
    return MLA + q + EXPERTS + (SHARED if c.raw.get("n_shared_experts") else ())


def _need(c, key: str):
    if c.raw.get(key) is None:
        raise InputError(f"{c.hf_class}: config.json has no {key!r}")
    return c.raw[key]


def _check_routing(c, gating: str) -> None:
    r = c.raw
    if c.n_kv_head != c.n_head:
        raise InputError(f"config.json has {c.n_kv_head} key/value heads for {c.n_head} heads; "
                         f"MLA decompresses one latent into every head, and llama.cpp's "
                         f"converter splits kv_b_proj by num_key_value_heads: they must be equal")
    said = r.get("scoring_func")
    if said is not None and said != gating:
        raise InputError(f"config.json has scoring_func={said!r}, but transformers' "
                         f"{c.hf_class} routes with {gating}")
    if gating == "softmax" and r.get("norm_topk_prob"):
        raise InputError("config.json has norm_topk_prob=True, which transformers' "
                         "DeepseekV2ForCausalLM ignores and llama.cpp would apply; the GGUF "
                         "would compute a different model")
    groups, used = r.get("n_group") or 1, r.get("topk_group") or r.get("n_group") or 1
    if gating == "softmax" and groups > 1 and used < groups:
        raise InputError(f"config.json limits routing to {used} of {groups} expert groups "
                         f"(topk_method {r.get('topk_method')!r}); llama.cpp scores groups by "
                         f"the sum of their top two, transformers' V2 by the max or not at all")
    if r.get("n_routed_experts") and groups > 1 and r["n_routed_experts"] % groups:
        raise InputError(f"config.json has {r['n_routed_experts']} experts in {groups} groups")
    if r.get("moe_layer_freq", 1) != 1:
        raise InputError("config.json has moe_layer_freq != 1; llama.cpp's deepseek2 puts "
                         "experts in every layer after first_k_dense_replace")
    check_deepseek_yarn(c)
    if r.get("rope_interleave") is False:
        raise InputError("config.json has rope_interleave=false (rotate-half rope); llama.cpp's "
                         "deepseek2 rotates interleaved pairs of the unpermuted weights")


def _replace(w: gguf.GGUFWriter, add, key: str, value) -> None:
    """Sets a key the common code already wrote (head_count_kv, key_length) without gguf-py's
    duplicate-key warning."""
    w.kv_data[0].pop(f"{w.arch}.{key}", None)
    add(value)


def deepseek_keys(w: gguf.GGUFWriter, c) -> None:
    gating = GATING[c.hf_class]
    _check_routing(c, gating)
    r = c.raw
    kv_lora, rope = r.get("kv_lora_rank", 512), _need(c, "qk_rope_head_dim")
    nope, v = _need(c, "qk_nope_head_dim"), _need(c, "v_head_dim")
    _replace(w, w.add_head_count_kv, "attention.head_count_kv", 1)   # MLA runs as MQA
    w.add_leading_dense_block_count(_dense_lead(c))
    w.add_vocab_size(_need(c, "vocab_size"))
    if r.get("q_lora_rank") is not None:
        w.add_q_lora_rank(r["q_lora_rank"])
    w.add_kv_lora_rank(kv_lora)
    _replace(w, w.add_key_length, "attention.key_length", kv_lora + rope)
    _replace(w, w.add_value_length, "attention.value_length", kv_lora)
    w.add_key_length_mla(nope + rope)
    w.add_value_length_mla(v)
    w.add_expert_feed_forward_length(r.get("moe_intermediate_size") or c.n_ff)
    w.add_expert_shared_count(r.get("n_shared_experts") or 0)
    if r.get("routed_scaling_factor") is not None:
        w.add_expert_weights_scale(r["routed_scaling_factor"])
    if r.get("norm_topk_prob"):
        w.add_expert_weights_norm(True)
    if gating == "sigmoid" or r.get("scoring_func") is not None:   # V2 without: llama.cpp's
        w.add_expert_gating_func(GATING_TYPE[gating])               # default, as its converter
    if r.get("n_group") is not None:
        w.add_expert_group_count(r["n_group"])
    if r.get("topk_group") is not None:
        w.add_expert_group_used_count(r["topk_group"])
    w.add_rope_dimension_count(rope)
    if c.rope.get("mscale_all_dim") is not None:    # llama.cpp's loader divides by 0.1 again
        w.add_rope_scaling_yarn_log_mul(0.1 * c.rope["mscale_all_dim"])


def _head_rows(rec: TensorRecord, per_head: int, start: int, n: int, transpose: bool):
    """Reader of rows [r0, r1) of a per-head slice of rec: per head h, source rows
    h * per_head + start .. + n, [n, kv_lora], transposed to [kv_lora, n] when asked."""
    rows_per_head = rec.shape[-1] if transpose else n

    def read(r0: int, r1: int) -> np.ndarray:
        out = []
        for h in range(r0 // rows_per_head, (r1 - 1) // rows_per_head + 1):
            block = rec.read_rows(h * per_head + start, h * per_head + start + n)
            block = np.ascontiguousarray(block.T) if transpose else block
            lo, hi = max(r0 - h * rows_per_head, 0), min(r1 - h * rows_per_head, rows_per_head)
            out.append(block[lo:hi])
        return out[0] if len(out) == 1 else np.concatenate(out)
    return read


def _split_kv_b(c, rec: TensorRecord) -> list[TensorRecord]:
    nope, v, n_head = c.raw["qk_nope_head_dim"], c.raw["v_head_dim"], c.n_head
    kv_lora = rec.shape[-1]
    if rec.shape != (n_head * (nope + v), kv_lora):
        raise InputError(f"{rec.name!r} has shape {rec.shape}; expected [n_head * (nope + v), "
                         f"kv_lora] = [{n_head * (nope + v)}, {kv_lora}]")
    k_b = TensorRecord(rec.name.replace("kv_b_proj", "k_b_proj"), (n_head, kv_lora, nope),
                       rec.dtype, _head_rows(rec, nope + v, 0, nope, True), rec.source)
    v_b = TensorRecord(rec.name.replace("kv_b_proj", "v_b_proj"), (n_head, v, kv_lora),
                       rec.dtype, _head_rows(rec, nope + v, nope, v, False), rec.source)
    return [k_b, v_b]


def deepseek_records(c, records: list[TensorRecord]) -> list[TensorRecord]:
    """kv_b_proj split into k_b and v_b; multi-token-prediction layers (numbered from
    num_hidden_layers on) dropped, as llama.cpp's converter drops them."""
    out: list[TensorRecord] = []
    for rec in records:
        if (m := LAYER.match(rec.name)) and int(m[1]) >= c.n_layer:
            continue
        out.extend(_split_kv_b(c, rec) if rec.name.endswith("kv_b_proj.weight") else [rec])
    return out


_COMMON = dict(keys=deepseek_keys, records=deepseek_records, layer_tensors=layer_tensors,
               renames=((r"\.e_score_correction_bias$", ".e_score_correction.bias"),))
FAMILIES = [
    Arch(("DeepseekV2ForCausalLM",), gguf.MODEL_ARCH.DEEPSEEK2, **_COMMON),
    Arch(("DeepseekV3ForCausalLM",), gguf.MODEL_ARCH.DEEPSEEK2, **_COMMON),
]
