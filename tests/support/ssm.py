"""Tiny seeded state-space checkpoints (Mamba, Falcon-Mamba, Mamba2) with SmolLM2's real
byte-level BPE tokenizer. transformers' own initialisation already gives the SSM parameters
their real shape (A_log = log 1..N, dt biases from softplus^-1 of [1e-3, 0.1], D = 1); the
projections get std 0.08, the norms and D are perturbed, and the output rows are sharpened so
that logits are peaked as a real model's."""
from __future__ import annotations

import shutil
from pathlib import Path

CLASSES = {"mamba": ("MambaConfig", "MambaForCausalLM"),
           "falcon_mamba": ("FalconMambaConfig", "FalconMambaForCausalLM"),
           "mamba2": ("Mamba2Config", "Mamba2ForCausalLM")}
BASE = {"mamba": dict(hidden_size=64, intermediate_size=128, state_size=16, time_step_rank=8),
        "falcon_mamba": dict(hidden_size=64, intermediate_size=128, state_size=16,
                             time_step_rank=8),
        "mamba2": dict(hidden_size=64, expand=2, head_dim=16, num_heads=8, n_groups=2,
                       state_size=16, chunk_size=16)}
N_VOCAB = 49152          # SmolLM2's tokenizer: a multiple of 8 and 16, so nothing is padded


def build_ssm(folder: Path, smollm2_hf: Path, kind: str, *, seed: int = 0,
              dtype: str = "float32", tie: bool = False, sharpen: float = 5.0, **extra) -> None:
    import torch
    import transformers
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smollm2_hf / name, folder / name)
    cfg_cls, model_cls = (getattr(transformers, n) for n in CLASSES[kind])
    kw = dict(vocab_size=N_VOCAB, num_hidden_layers=2, conv_kernel=4, layer_norm_epsilon=1e-5,
              tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2, pad_token_id=0,
              **BASE[kind])
    kw.update(extra)
    torch.manual_seed(seed)
    model = model_cls(cfg_cls(**kw))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".D"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith(("in_proj.weight", "x_proj.weight", "out_proj.weight",
                                "embeddings.weight", "lm_head.weight")):
                p.copy_(0.08 * torch.randn_like(p))
            elif name.endswith("conv1d.bias"):
                p.copy_(0.1 * torch.randn_like(p))
        model.get_output_embeddings().weight.mul_(sharpen)
    model.to(getattr(torch, dtype)).save_pretrained(folder)
