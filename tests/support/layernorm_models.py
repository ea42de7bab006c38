"""Tiny seeded checkpoints of the LayerNorm families (GPT-2, GPT-NeoX, StarCoder2, Phi-2,
StableLM, Falcon) with transformers' own classes and SmolLM2's real byte-level BPE tokenizer
(one llama.cpp's converter recognises), and config.json rewritten as the released checkpoints
ship it where llama.cpp's converter reads older names."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support import tiny

N_VOCAB = 49152
NORMS = ("norm", "ln_")          # GPT-2's ln_1/ln_2/ln_f, Falcon's ln_attn/ln_mlp
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=256)
BASE = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             dict(n_embd=64, n_layer=2, n_head=4, n_positions=128,
                  activation_function="gelu_new")),
    "gptneox": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                dict(SMALL, intermediate_size=160, hidden_act="gelu",
                     use_parallel_residual=True,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                      "partial_rotary_factor": 0.25})),
    "starcoder2": ("Starcoder2Config", "Starcoder2ForCausalLM",
                   dict(SMALL, intermediate_size=160, num_key_value_heads=2,
                        hidden_act="gelu_pytorch_tanh", sliding_window=None,
                        tie_word_embeddings=False)),
    "phi2": ("PhiConfig", "PhiForCausalLM",
             dict(SMALL, intermediate_size=256, hidden_act="gelu_new",
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                   "partial_rotary_factor": 0.5})),
    "stablelm": ("StableLmConfig", "StableLmForCausalLM",
                 dict(SMALL, intermediate_size=160, num_key_value_heads=2,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                       "partial_rotary_factor": 0.25})),
    "falcon": ("FalconConfig", "FalconForCausalLM",
               dict(SMALL, activation="gelu", ffn_hidden_size=256, bias=False, alibi=False,
                    parallel_attn=True, max_position_embeddings=2048)),
}


def copy_tokenizer(folder: Path, smollm2_hf: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smollm2_hf / name, folder / name)


def build(folder: Path, family: str, smollm2_hf: Path, *, seed: int = 0, sharpen: float = 5.0,
          **over) -> None:
    """Saves the seeded model (fp32, weights std 0.08, norms and biases perturbed) next to the
    tokenizer. over: config values on top of the family's tiny ones."""
    import torch
    import transformers
    cfg_name, model_name, kw = BASE[family]
    copy_tokenizer(folder, smollm2_hf)
    config = getattr(transformers, cfg_name)(**{**kw, **over}, vocab_size=N_VOCAB,
                                             initializer_range=0.08, bos_token_id=1,
                                             eos_token_id=2)
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config)
    tiny.perturb(model, sharpen=sharpen, norm_names=NORMS)
    model.to(torch.float32).save_pretrained(folder)


def edit_config(folder: Path, **changes) -> None:
    """config.json with keys set (a value of None deletes the key)."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path.write_text(json.dumps(cfg, indent=2))
