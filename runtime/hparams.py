"""Hyperparameters as the runtime needs them, read from GGUF metadata (the keys llama.cpp reads,
with llama.cpp's defaults for the keys a file may lack) or given directly. An HF checkpoint gets
here through the very keys the converter would write, so both sources run one code path."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from tinyconvert.formats.errors import InputError


@dataclass(frozen=True)
class Recipe:
    """What llama.cpp's graph for one GGUF architecture hard-codes (src/models/<arch>.cpp)."""
    neox: bool = False               # rotate-half RoPE pairs (i, i+d/2); else interleaved (2i, 2i+1)
    act: str = "silu"                # gated FFN activation: silu | gelu_tanh
    embed_scale: bool = False        # token embeddings times sqrt(n_embd)
    swa_period: int = 0              # default SWA layer pattern when the file has no array
    attn_scale_27b: int | None = None  # Gemma: at this many layers scale by 1/sqrt(n_embd/n_head)
    n_swa: int = 0                   # sliding window when the file has no key (Gemma 2: 4096)
    swa_theta_is_base: bool = False  # SWA layers default to rope.freq_base (else 10000)
    swa_theta_key: bool = True       # olmo2's graph ignores rope.freq_base_swa
    softcaps: tuple = (None, None)   # (attention, final) when the file has no keys (Gemma 2)
    no_rope_step: int = 0            # SmolLM3: layer i has no RoPE iff (i + 1) % step == 0
    expert_norm: bool = False        # MoE: renormalise the top-k router weights
    no_swa: bool = False             # the file's window is ignored (phi3: llama.cpp's loader
                                     # says "Phi SWA is currently disabled")
    gating: str = "softmax"          # router when the file has no expert_gating_func key
    swa_rope_scaled: bool = False    # SWA layers keep the rope scaling (gpt-oss: YaRN everywhere)
    ffn_norm: str = "ffn_norm"       # the pre-FFN norm (gpt-oss: post_attention_norm)
    layer_norm: bool = False         # LayerNorm (with bias) instead of RMSNorm, eps from
                                     # attention.layer_norm_epsilon
    parallel: str = ""               # parallel attention + MLP: always | key (the
                                     # use_parallel_residual key) | no_ffn_norm (runtime.parallel)
    rope: bool = True                # False: no RoPE at all (GPT-2's learned positions)
    pos_offset: int = 0              # rows of the position table before position 0 (OPT: 2)


RECIPES: dict[str, Recipe] = {
    "llama": Recipe(expert_norm=True),                  # Mixtral: renormalised top-k
    "qwen3moe": Recipe(neox=True, expert_norm=True),
    "qwen2moe": Recipe(neox=True),
    "olmoe": Recipe(neox=True),
    "bamboo": Recipe(),
    "qwen2": Recipe(neox=True),
    "qwen3": Recipe(neox=True),
    "gemma": Recipe(neox=True, act="gelu_tanh", embed_scale=True),
    "gemma2": Recipe(neox=True, act="gelu_tanh", embed_scale=True, swa_period=2,
                     attn_scale_27b=46, n_swa=4096, swa_theta_is_base=True, softcaps=(50.0, 30.0)),
    "gemma3": Recipe(neox=True, act="gelu_tanh", embed_scale=True, swa_period=6,
                     attn_scale_27b=62),
    "olmo2": Recipe(neox=True, swa_period=4, swa_theta_is_base=True, swa_theta_key=False),
    "smollm3": Recipe(no_rope_step=4),
    "granite": Recipe(),
    "phi3": Recipe(neox=True, no_swa=True),
    "deepseek2": Recipe(),             # MLA (runtime.mla); routing read from the file's keys
    "gpt-oss": Recipe(neox=True, act="swiglu_oai", swa_period=2, swa_theta_is_base=True,
                      gating="softmax_weight", swa_rope_scaled=True,
                      ffn_norm="post_attention_norm"),
    "mamba": Recipe(),                 # state-space blocks (runtime.ssm), sized by ssm.* keys
    "mamba2": Recipe(),
    # LayerNorm families; llama.cpp's LLM_FFN_GELU is always the tanh form (runtime.activations)
    "gpt2": Recipe(act="gelu_tanh", layer_norm=True, rope=False),
    "gptneox": Recipe(neox=True, act="gelu_tanh", layer_norm=True, parallel="key"),
    "starcoder2": Recipe(neox=True, act="gelu_tanh", layer_norm=True),
    "phi2": Recipe(neox=True, act="gelu_tanh", layer_norm=True, parallel="always"),
    "stablelm": Recipe(neox=True, layer_norm=True, parallel="no_ffn_norm"),
    "falcon": Recipe(neox=True, act="gelu_tanh", layer_norm=True, parallel="always"),
    "opt": Recipe(act="relu", layer_norm=True, rope=False, pos_offset=2),   # PowerInfer's only
}
# llama.cpp's llama_expert_gating_func_type (softmax_weight: softmax over the top-k logits only)
GATING = {1: "softmax", 2: "sigmoid", 3: "softmax_weight"}


@dataclass(frozen=True)
class Hparams:
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_kv_head: int
    head_dim: int
    n_ff: int
    n_vocab: int
    rms_eps: float
    rope_theta: float = 10000.0
    rope_dim: int | None = None            # rotated dims per head (default head_dim)
    rope_scaling: dict = field(default_factory=dict)   # {"type": linear|yarn, factor, ...}
    act: str = "silu"                      # silu, gelu_tanh, relu (ReGLU), drelu (relu(g)*relu(u))
    sparse_threshold: float | None = None  # PowerInfer: compute neuron j iff predictor score >= this
    neox: bool = False
    embed_scale: float | None = None       # multiply token embeddings by this
    attn_scale: float | None = None        # scores scale (default 1/sqrt(head_dim))
    attn_softcap: float | None = None      # scores -> c*tanh(scores/c)
    final_softcap: float | None = None     # logits -> c*tanh(logits/c)
    n_swa: int = 0                         # sliding window: key visible iff q - k < n_swa
    swa_layers: tuple[bool, ...] = ()      # per layer: sliding-window attention
    rope_theta_swa: float = 10000.0        # RoPE base (and no scaling) on sliding-window layers
    nope_layers: tuple[bool, ...] = ()     # per layer: no RoPE at all (SmolLM3)
    n_expert: int = 0                      # mixture of experts (0: dense FFN)
    n_expert_used: int = 0
    expert_norm: bool = False              # renormalise the top-k weights (llama.cpp's norm_w)
    expert_weights_scale: float | None = None
    residual_scale: float | None = None    # Granite: sublayer outputs times this before the add
    logit_scale: float | None = None       # Granite: logits divided by this
    rope_attn_factor: float = 1.0          # cos/sin times this (rope.scaling.attn_factor: LongRoPE)
    n_ctx_orig: int | None = None          # LongRoPE: long factors for contexts beyond this
    expert_gating: str = "softmax"         # router probabilities: softmax | sigmoid |
                                           # softmax_weight (of the chosen logits only)
    swa_rope_scaled: bool = False          # sliding-window layers keep the rope scaling
    ffn_norm: str = "ffn_norm"             # the norm in front of the FFN
    n_expert_groups: int = 0               # DeepSeek-V3: experts chosen within the best
    n_group_used: int = 0                  # n_group_used of n_expert_groups groups
    n_dense_lead: int = 0                  # DeepSeek: the first blocks have a dense FFN
    mla: dict = field(default_factory=dict)   # DeepSeek MLA: kv_lora, q_lora, k_mla, v_mla,
                                              # yarn_log_mul (empty: not MLA)
    ssm: dict = field(default_factory=dict)   # state-space blocks: d_conv, d_inner, d_state,
                                              # dt_rank, n_group, dt_b_c_rms, bcdt_eps
                                              # (empty: attention blocks)
    layer_norm: bool = False               # LayerNorm with bias (rms_eps is then its epsilon)
    parallel: str = ""                     # "", always, no_ffn_norm (runtime.parallel)
    pos_offset: int = 0                    # learned positions: row of position 0 (OPT: 2)

    def has_rope(self, i: int) -> bool:
        return not (self.nope_layers and self.nope_layers[i])

    def is_swa(self, i: int) -> bool:
        return self.n_swa > 0 and bool(self.swa_layers) and self.swa_layers[i]


def _swa_layers(recipe: Recipe, n_layer: int, pattern) -> tuple[bool, ...]:
    """llama.cpp's load_swa_pattern: a bool array if the file has one, else a period n (layer i
    slides unless i % n == n - 1; n = 0 means every layer)."""
    if pattern is not None and not isinstance(pattern, (int, float)):     # an array
        return tuple(bool(x) for x in list(pattern)[:n_layer])
    n = recipe.swa_period if pattern is None else int(pattern)
    return tuple(n == 0 or i % n < n - 1 for i in range(n_layer))


def from_gguf_fields(fields: dict, magic: bytes = b"GGUF", *, n_vocab: int | None = None) -> Hparams:
    """fields: GGUF key -> python value. A PowerInfer file (magic PWRI) is a ReLU model run
    sparsely; a dense ReLU file of ours records its activation in tinyconvert.ffn_act."""
    arch = fields["general.architecture"]
    if arch not in RECIPES:
        raise InputError(f"the runtime does not run architecture {arch!r} (it runs: "
                         f"{', '.join(RECIPES)})")
    recipe = RECIPES[arch]

    def get(key, default=None):
        return fields.get(f"{arch}.{key}", default)
    n_embd, n_head, n_layer = get("embedding_length"), get("attention.head_count"), get("block_count")
    head_dim = get("attention.key_length") or (n_embd // n_head if n_head else 0)
    tokens = fields.get("tokenizer.ggml.tokens")
    n_swa = 0 if recipe.no_swa else get("attention.sliding_window", recipe.n_swa) or 0
    theta = get("rope.freq_base", 10000.0)
    return Hparams(
        arch=arch, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
        n_kv_head=get("attention.head_count_kv") or n_head, head_dim=head_dim,
        n_ff=get("feed_forward_length"),
        n_vocab=n_vocab or get("vocab_size") or (len(tokens) if tokens is not None else 0),
        rms_eps=get("attention.layer_norm_epsilon" if recipe.layer_norm
                    else "attention.layer_norm_rms_epsilon", 1e-5),
        layer_norm=recipe.layer_norm, parallel=_parallel(recipe, get),
        pos_offset=recipe.pos_offset,
        rope_theta=theta, rope_dim=get("rope.dimension_count"),
        rope_attn_factor=get("rope.scaling.attn_factor", 1.0),
        n_ctx_orig=get("rope.scaling.original_context_length") or get("context_length"),
        rope_scaling=_rope_scaling(get, arch), act=_act(fields, arch, magic, recipe),
        sparse_threshold=(float(fields.get("powerinfer.sparse_threshold", 0.0))
                          if magic == b"PWRI" else None),
        neox=recipe.neox,
        embed_scale=get("embedding_scale") or (math.sqrt(n_embd) if recipe.embed_scale else None),
        attn_scale=get("attention.scale") or _attn_scale(recipe, n_layer, n_embd, n_head),
        residual_scale=get("residual_scale") or None, logit_scale=get("logit_scale") or None,
        n_expert=get("expert_count", 0) or 0, n_expert_used=get("expert_used_count", 0) or 0,
        expert_norm=recipe.expert_norm or bool(get("expert_weights_norm", False)),
        expert_gating=GATING.get(get("expert_gating_func", 0), recipe.gating),
        swa_rope_scaled=recipe.swa_rope_scaled, ffn_norm=recipe.ffn_norm,
        n_expert_groups=get("expert_group_count", 0) or 0,
        n_group_used=get("expert_group_used_count", 0) or 0,
        n_dense_lead=get("leading_dense_block_count", 0) or 0, mla=_mla(get), ssm=_ssm(get),
        expert_weights_scale=get("expert_weights_scale") or None,
        nope_layers=tuple(not recipe.rope or (recipe.no_rope_step > 0
                                              and (i + 1) % recipe.no_rope_step == 0)
                          for i in range(n_layer)),
        attn_softcap=get("attn_logit_softcapping", recipe.softcaps[0]),
        final_softcap=get("final_logit_softcapping", recipe.softcaps[1]),
        n_swa=n_swa,
        swa_layers=_swa_layers(recipe, n_layer, get("attention.sliding_window_pattern"))
        if n_swa else (),
        rope_theta_swa=_swa_theta(recipe, get, theta))


def _mla(get) -> dict:
    """DeepSeek's latent attention sizes (llama.cpp's n_lora_kv, n_lora_q, n_embd_head_k_mla,
    n_embd_head_v_mla), and the YaRN log multiplier its converter stores times 0.1."""
    if not get("attention.kv_lora_rank"):
        return {}
    return {"kv_lora": get("attention.kv_lora_rank"), "q_lora": get("attention.q_lora_rank", 0),
            "k_mla": get("attention.key_length_mla"), "v_mla": get("attention.value_length_mla"),
            "yarn_log_mul": get("rope.scaling.yarn_log_multiplier", 0.0) / 0.1}


def _ssm(get) -> dict:
    """llama.cpp's ssm_* hparams; Falcon-Mamba's dt/B/C norms use the layers' RMS eps."""
    if not get("ssm.inner_size"):
        return {}
    return {"d_conv": get("ssm.conv_kernel"), "d_inner": get("ssm.inner_size"),
            "d_state": get("ssm.state_size"), "dt_rank": get("ssm.time_step_rank"),
            "n_group": get("ssm.group_count", 1) or 1,
            "dt_b_c_rms": bool(get("ssm.dt_b_c_rms", False)),
            "bcdt_eps": get("attention.layer_norm_rms_epsilon", 1e-5)}


def _parallel(recipe: Recipe, get) -> str:
    if recipe.parallel != "key":
        return recipe.parallel
    return "always" if get("use_parallel_residual", False) else ""


def _swa_theta(recipe: Recipe, get, theta: float) -> float:
    default = theta if recipe.swa_theta_is_base else 10000.0
    return get("rope.freq_base_swa", default) if recipe.swa_theta_key else default


def _rope_scaling(get, arch: str) -> dict:
    kind = get("rope.scaling.type")
    if kind not in ("linear", "yarn"):
        return {}
    if arch == "deepseek2" and get("rope.scaling.yarn_log_multiplier"):
        # llama_context sets the rope's own factor to mscale / mscale_all_dim, which it makes 1
        # for deepseek2 (runtime.mla.kq_scale carries the YaRN scale instead)
        return {"type": kind, "factor": get("rope.scaling.factor", 1.0), "attention_factor": 1.0,
                "original_max_position_embeddings": get("rope.scaling.original_context_length"),
                "beta_fast": get("rope.scaling.yarn_beta_fast"),
                "beta_slow": get("rope.scaling.yarn_beta_slow")}
    return {"type": kind, "factor": get("rope.scaling.factor", 1.0),
            "original_max_position_embeddings": get("rope.scaling.original_context_length"),
            "attention_factor": get("rope.scaling.yarn_attn_factor"),
            "beta_fast": get("rope.scaling.yarn_beta_fast"),
            "beta_slow": get("rope.scaling.yarn_beta_slow")}


def _attn_scale(recipe: Recipe, n_layer: int, n_embd: int, n_head: int) -> float | None:
    """llama.cpp's f_attention_scale: Gemma 2/3 27B scale by n_embd/n_head; every other model
    by head_dim (None: the attention kernel's own default)."""
    if recipe.attn_scale_27b is not None and n_layer == recipe.attn_scale_27b:
        return 1.0 / math.sqrt(n_embd // n_head)
    return None


def _act(fields: dict, arch: str, magic: bytes, recipe: Recipe) -> str:
    if magic == b"PWRI":
        return "drelu" if arch == "bamboo" else "relu"
    return fields.get("tinyconvert.ffn_act", recipe.act)
