"""OPT (`OPTForCausalLM`) for PowerInfer only: llama.cpp has no OPT architecture, PowerInfer's
fork has `opt` (shared/specs/powerinfer.md §1, §4.3). Pre-norm blocks with LayerNorms and
biases everywhere, separate q/k/v, no RoPE but learned positions whose table has two rows before
position 0 (PowerInfer's graph adds 2 to every position; the whole table is written), a plain
ReLU MLP (fc1 -> ffn_up, fc2 -> ffn_down), and the output always tied to token_embd (PowerInfer
loads no output tensor).

Keys as PowerInfer's converter writes them (context_length = the position table's rows, 2050 for
the released models), plus the LayerNorm epsilon (1e-5, torch's default that OPT uses; no config
has it)."""
from __future__ import annotations

import gguf

from tinyconvert.archs.base import Arch
from tinyconvert.archs.ln.layernorm import filled, refuse_unless

LAYER = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_up",
         "ffn_down")
POSITION_OFFSET = 2          # OPTLearnedPositionalEmbedding's offset
LAYER_NORM_EPS = 1e-5
_P = r"(?:model\.)?decoder\."
_L = _P + r"layers\.(\d+)\."
_WB = r"\.(weight|bias)"
NAMES = (
    (_P + r"embed_tokens\.weight", "token_embd.weight"),
    (_P + r"embed_positions\.weight", "position_embd.weight"),
    (_P + r"final_layer_norm" + _WB, r"output_norm.\1"),
    (_L + r"self_attn_layer_norm" + _WB, r"blk.\1.attn_norm.\2"),
    (_L + r"self_attn\.q_proj" + _WB, r"blk.\1.attn_q.\2"),
    (_L + r"self_attn\.k_proj" + _WB, r"blk.\1.attn_k.\2"),
    (_L + r"self_attn\.v_proj" + _WB, r"blk.\1.attn_v.\2"),
    (_L + r"self_attn\.out_proj" + _WB, r"blk.\1.attn_output.\2"),
    (_L + r"final_layer_norm" + _WB, r"blk.\1.ffn_norm.\2"),
    (_L + r"fc1" + _WB, r"blk.\1.ffn_up.\2"),
    (_L + r"fc2" + _WB, r"blk.\1.ffn_down.\2"),
)


def opt_config(raw: dict, path=None) -> dict:
    raw = filled({"tie_word_embeddings": True, **raw}, intermediate_size="ffn_dim")
    return {**raw, "num_key_value_heads": raw.get("num_attention_heads")}


def opt_keys(w: gguf.GGUFWriter, c) -> None:
    r = c.raw
    refuse_unless(c, r.get("do_layer_norm_before", True), "do_layer_norm_before=false")
    refuse_unless(c, r.get("word_embed_proj_dim", c.n_embd) == c.n_embd,
                  "word_embed_proj_dim != hidden_size (project_in/out)")
    refuse_unless(c, r.get("enable_bias", True), "enable_bias=false")
    refuse_unless(c, r.get("layer_norm_elementwise_affine", True),
                  "layer_norm_elementwise_affine=false")
    refuse_unless(c, c.tied, "tie_word_embeddings=false (its output is always token_embd)")
    w.add_context_length(c.n_ctx + POSITION_OFFSET)
    w.add_embedding_length(c.n_embd)
    w.add_block_count(c.n_layer)
    w.add_feed_forward_length(c.n_ff)
    w.add_head_count(c.n_head)
    w.add_layer_norm_eps(LAYER_NORM_EPS)


FAMILIES = [
    Arch(("OPTForCausalLM",), gguf.MODEL_ARCH.GPT2, name="opt", acts=("relu",),
         act_key="activation_function", layer_tensors=LAYER, prepare=opt_config,
         common_keys=False, keys=opt_keys, names=NAMES),
]
