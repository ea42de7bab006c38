"""Peak memory of converting a mixture of experts: a synthetic one-layer Qwen3-MoE checkpoint with
8 experts against the same with 64 (a layer of several hundred MB), converted by tinyconvert and
by llama.cpp's converter, side by side in one run. tinyconvert stacks experts while streaming row
chunks, so its peak should not grow with the expert count.

    python tests/benchmarks/bench_moe_memory.py [--dim 1024]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.measure import measure  # noqa: E402


def write_checkpoint(folder: Path, n_expert: int, dim: int, vocab: int = 49152) -> int:
    """A one-layer Qwen3-MoE in bf16 (random bits of a sane range); returns its size in bytes."""
    import torch
    from safetensors.torch import save_file
    from tests.support.smollm2 import build
    torch.manual_seed(0)

    def bf16(*shape):
        return (torch.randn(shape) * 0.05).to(torch.bfloat16)
    hd, heads = 64, dim // 64
    t = {"model.embed_tokens.weight": bf16(vocab, dim), "model.norm.weight": bf16(dim),
         "lm_head.weight": bf16(vocab, dim)}
    p = "model.layers.0."
    t.update({p + "input_layernorm.weight": bf16(dim), p + "post_attention_layernorm.weight": bf16(dim),
              p + "self_attn.q_proj.weight": bf16(heads * hd, dim),
              p + "self_attn.k_proj.weight": bf16(hd, dim), p + "self_attn.v_proj.weight": bf16(hd, dim),
              p + "self_attn.o_proj.weight": bf16(dim, heads * hd),
              p + "self_attn.q_norm.weight": bf16(hd), p + "self_attn.k_norm.weight": bf16(hd),
              p + "mlp.gate.weight": bf16(n_expert, dim)})
    for e in range(n_expert):
        for w, shape in (("gate_proj", (dim, dim)), ("up_proj", (dim, dim)), ("down_proj", (dim, dim))):
            t[f"{p}mlp.experts.{e}.{w}.weight"] = bf16(*shape)
    save_file(t, str(folder / "model.safetensors"))
    cfg = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": dim,
           "intermediate_size": dim, "moe_intermediate_size": dim, "num_hidden_layers": 1,
           "num_attention_heads": heads, "num_key_value_heads": 1, "head_dim": hd,
           "num_experts": n_expert, "num_experts_per_tok": 2, "norm_topk_prob": True,
           "vocab_size": vocab, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
           "rope_theta": 1e6, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    (folder / "config.json").write_text(json.dumps(cfg))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(build() / name, folder / name)
    return (folder / "model.safetensors").stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=1024)
    args = ap.parse_args()
    from tests.support.llamacpp_src import llamacpp_dir
    root = llamacpp_dir()
    env = dict(os.environ, PYTHONPATH=str(root / "gguf-py"))
    (REPO / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=REPO / ".cache") as tmp:
        rows = []
        for n_expert in (8, 64):
            folder = Path(tmp) / f"moe{n_expert}"
            folder.mkdir()
            size = write_checkpoint(folder, n_expert, args.dim)
            layer = 3 * n_expert * args.dim * args.dim * 2
            _, ours = measure([sys.executable, "-m", "tinyconvert", "hf2gguf", str(folder), "-o",
                               str(Path(tmp) / "a.gguf"), "--outtype", "bf16", "-q", "--no-verify"])
            _, theirs = measure([sys.executable, str(root / "convert_hf_to_gguf.py"), str(folder),
                                 "--outfile", str(Path(tmp) / "b.gguf"), "--outtype", "bf16"], env)
            rows.append((n_expert, ours, theirs))
            print(f"{n_expert:3d} experts: checkpoint {size / 2**20:6.0f} MiB (expert layer "
                  f"{layer / 2**20:5.0f} MiB)  peak RSS tinyconvert {ours:6.0f} MiB  "
                  f"llama.cpp {theirs:6.0f} MiB")
            shutil.rmtree(folder)
        (e8, o8, t8), (e64, o64, t64) = rows
        print(f"peak RSS growth from 8 to 64 experts: tinyconvert x{o64 / o8:.2f}, "
              f"llama.cpp x{t64 / t8:.2f} (goal: tinyconvert ~x1)")


if __name__ == "__main__":
    main()
