"""One tiny seeded checkpoint per registered HF class, for the LoRA tests over every family
(tests/test_lora_families.py): the family tests' own builders and configs, with a small
byte-level BPE vocabulary (a few hundred tokens) so that each model costs little, and the
linear layers a PEFT LoRA targets in that family: attention and MLP. In transformers 5 MoE
experts are one fused parameter, not linear layers, and PEFT 0.21 turns MLP targets of
DeepSeek into LoRA on those parameters (target_parameters), so the MoE cases target attention
(Qwen2-MoE also its shared expert). PEFT refuses Mamba's out_proj."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.support import layernorm_models as lm
from tests.support import tiny

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
MLA_ATTN = ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "o_proj")
NEOX = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")
GEMMA = dict(head_dim=16, query_pre_attn_scalar=16, hidden_activation="gelu_pytorch_tanh")
ROUTER = {".gate.weight": 6.0, ".router.weight": 6.0}
MLA = dict(n_kv_head=4, q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16,
           qk_rope_head_dim=8, v_head_dim=16, moe_intermediate_size=32, first_k_dense_replace=1,
           n_shared_experts=1, norm_topk_prob=False)
SSM = dict(num_hidden_layers=2, conv_kernel=4, layer_norm_epsilon=1e-5, bos_token_id=1,
           eos_token_id=2, pad_token_id=0)


@dataclass(frozen=True)
class Family:
    hf_class: str
    kind: str                          # tiny | layernorm | ssm | gemma3-mm
    arch: str                          # the builder's key for that kind
    targets: tuple[str, ...]
    kw: dict = field(default_factory=dict)
    alpha: float = 12.0                # lora_alpha (r is 4): large enough that the change shows


def _f(hf_class, kind, arch, targets, alpha: float = 12.0, **kw) -> Family:
    return Family(hf_class, kind, arch, tuple(targets), kw, alpha)


FAMILIES = [
    _f("LlamaForCausalLM", "tiny", "llama", ATTN + MLP),
    _f("MistralForCausalLM", "tiny", "mistral", ATTN + MLP),
    _f("SmolLM3ForCausalLM", "tiny", "smollm3", ATTN + MLP, num_hidden_layers=4,
       pad_token_id=2),
    _f("Qwen2ForCausalLM", "tiny", "qwen2", ATTN + MLP),
    _f("Qwen3ForCausalLM", "tiny", "qwen3", ATTN + MLP, head_dim=16),
    _f("GemmaForCausalLM", "tiny", "gemma", ATTN + MLP, **GEMMA, tie=True, alpha=400),
    _f("Gemma2ForCausalLM", "tiny", "gemma2", ATTN + MLP, **GEMMA, sliding_window=8,
       attn_logit_softcapping=50.0, final_logit_softcapping=30.0, attn_implementation="eager",
       tie=True),
    _f("Gemma3ForCausalLM", "tiny", "gemma3", ATTN + MLP, **GEMMA, sliding_window=8),
    _f("Gemma3ForConditionalGeneration", "gemma3-mm", "gemma3", ATTN + MLP),
    _f("Olmo2ForCausalLM", "tiny", "olmo2", ATTN + MLP),
    _f("Olmo3ForCausalLM", "tiny", "olmo3", ATTN + MLP, sliding_window=8),
    _f("GraniteForCausalLM", "tiny", "granite", ATTN + MLP, alpha=32, embedding_multiplier=3.0,
       residual_multiplier=0.4, attention_multiplier=0.2, logits_scaling=2.5),
    _f("Phi3ForCausalLM", "tiny", "phi3", ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
       pad_token_id=0),
    _f("MixtralForCausalLM", "tiny", "mixtral", ATTN, num_local_experts=4,
       num_experts_per_tok=2, scales=ROUTER),
    _f("Qwen3MoeForCausalLM", "tiny", "qwen3moe", ATTN, num_experts=4, num_experts_per_tok=2,
       moe_intermediate_size=64, head_dim=16, norm_topk_prob=True, scales=ROUTER),
    _f("Qwen2MoeForCausalLM", "tiny", "qwen2moe", ATTN + MLP, num_experts=4,
       num_experts_per_tok=2, moe_intermediate_size=64, shared_expert_intermediate_size=96,
       scales=ROUTER),
    _f("OlmoeForCausalLM", "tiny", "olmoe", ATTN, num_experts=4, num_experts_per_tok=2,
       n_kv_head=4, scales=ROUTER),
    _f("DeepseekV2ForCausalLM", "tiny", "deepseek_v2", MLA_ATTN + ("kv_b_proj",), **MLA, n_routed_experts=4,
       num_experts_per_tok=2, routed_scaling_factor=1.0, scales=ROUTER),
    _f("DeepseekV3ForCausalLM", "tiny", "deepseek_v3", MLA_ATTN, **MLA, n_routed_experts=4,
       num_experts_per_tok=2, n_group=2, topk_group=1, routed_scaling_factor=2.5,
       scales={".gate.weight": 3.0}),
    _f("GptOssForCausalLM", "tiny", "gpt_oss", ATTN, num_local_experts=4,
       num_experts_per_tok=2, head_dim=16, sliding_window=8, scales=ROUTER),
    _f("GPT2LMHeadModel", "layernorm", "gpt2", ("c_attn", "c_proj", "c_fc"), alpha=48),
    _f("Starcoder2ForCausalLM", "layernorm", "starcoder2", ATTN + ("c_fc", "c_proj")),
    _f("GPTNeoXForCausalLM", "layernorm", "gptneox", NEOX, hidden_act="gelu_pytorch_tanh"),
    _f("PhiForCausalLM", "layernorm", "phi2", ("q_proj", "k_proj", "v_proj", "dense", "fc1",
                                                "fc2")),
    _f("StableLmForCausalLM", "layernorm", "stablelm", ATTN + MLP),
    _f("FalconForCausalLM", "layernorm", "falcon", NEOX),
    _f("MambaForCausalLM", "ssm", "mamba", ("in_proj", "x_proj", "dt_proj"), alpha=200),
    _f("FalconMambaForCausalLM", "ssm", "falcon_mamba", ("in_proj", "x_proj", "dt_proj"),
       alpha=200),
    _f("Mamba2ForCausalLM", "ssm", "mamba2", ("in_proj",)),
]
# Registered classes with no tiny model here: transformers has no class for them (configs of
# the first, remote-code releases; the converter reads them as the class above them), so
# PEFT has nothing to load an adapter onto.
NO_TRANSFORMERS_CLASS = {"StableLMEpochForCausalLM": "StableLmForCausalLM",
                         "RWForCausalLM": "FalconForCausalLM"}


def build(folder: Path, fam: Family) -> None:
    """The seeded checkpoint with a small byte-level BPE tokenizer (gpt-2 pre-tokenizer)."""
    from tests.test_tiny_models import make_tokenizer
    if fam.kind == "gemma3-mm":
        from tests.test_gemma import build_multimodal
        return build_multimodal(folder)
    make_tokenizer(folder, "gpt-2")
    n_vocab = tiny.vocab_size(folder)
    if fam.kind == "tiny":
        return tiny.build_model(folder, fam.arch, sharpen=5.0, **fam.kw)
    import torch
    import transformers
    if fam.kind == "layernorm":
        cfg_name, model_name, kw = lm.BASE[fam.arch]
        config = getattr(transformers, cfg_name)(**{**kw, **fam.kw}, vocab_size=n_vocab,
                                                 initializer_range=0.08, bos_token_id=1,
                                                 eos_token_id=2)
        torch.manual_seed(0)
        model = getattr(transformers, model_name)(config)
        tiny.perturb(model, sharpen=5.0, norm_names=lm.NORMS)
        return model.save_pretrained(folder)
    _build_ssm(folder, fam, n_vocab)


def _build_ssm(folder: Path, fam: Family, n_vocab: int) -> None:
    """tests.support.ssm's recipe with the small vocabulary."""
    import torch
    import transformers

    from tests.support import ssm
    cfg_cls, model_cls = (getattr(transformers, n) for n in ssm.CLASSES[fam.arch])
    torch.manual_seed(0)
    model = model_cls(cfg_cls(vocab_size=n_vocab, **SSM, **ssm.BASE[fam.arch]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".D"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith(("in_proj.weight", "x_proj.weight", "out_proj.weight",
                                "embeddings.weight", "lm_head.weight")):
                p.copy_(0.08 * torch.randn_like(p))
        model.get_output_embeddings().weight.mul_(5.0)
    model.save_pretrained(folder)
