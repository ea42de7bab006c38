"""Hyperparameters of a llama-family model as the runtime needs them, read from GGUF metadata
(the same keys llama.cpp reads) or given directly."""
from __future__ import annotations

from dataclasses import dataclass, field

NEOX_ARCHS = ("qwen2", "qwen3")       # rotate-half RoPE; llama uses interleaved pairs


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
    act: str = "silu"                      # "silu", "relu" (ReGLU) or "drelu" (relu(gate)*relu(up))
    sparse_threshold: float | None = None  # PowerInfer: compute neuron j iff predictor score >= this

    @property
    def neox(self) -> bool:
        return self.arch in NEOX_ARCHS


def from_gguf_fields(fields: dict, magic: bytes = b"GGUF") -> Hparams:
    """fields: GGUF key -> python value. A PowerInfer file (magic PWRI) is a ReLU model run
    sparsely; a dense ReLU file of ours records its activation in tinyconvert.ffn_act."""
    arch = fields["general.architecture"]

    def get(key, default=None):
        return fields.get(f"{arch}.{key}", default)
    n_embd, n_head = get("embedding_length"), get("attention.head_count")
    head_dim = get("attention.key_length") or n_embd // n_head
    tokens = fields.get("tokenizer.ggml.tokens")
    scaling = {}
    kind = get("rope.scaling.type")
    if kind in ("linear", "yarn"):
        scaling = {"type": kind, "factor": get("rope.scaling.factor", 1.0),
                   "original_max_position_embeddings": get("rope.scaling.original_context_length"),
                   "attention_factor": get("rope.scaling.yarn_attn_factor"),
                   "beta_fast": get("rope.scaling.yarn_beta_fast"),
                   "beta_slow": get("rope.scaling.yarn_beta_slow")}
    return Hparams(
        arch=arch, n_layer=get("block_count"), n_embd=n_embd, n_head=n_head,
        n_kv_head=get("attention.head_count_kv") or n_head, head_dim=head_dim,
        n_ff=get("feed_forward_length"),
        n_vocab=get("vocab_size") or (len(tokens) if tokens is not None else 0),
        rms_eps=get("attention.layer_norm_rms_epsilon", 1e-5),
        rope_theta=get("rope.freq_base", 10000.0), rope_dim=get("rope.dimension_count"),
        rope_scaling=scaling, act=_act(fields, arch, magic),
        sparse_threshold=(float(fields.get("powerinfer.sparse_threshold", 0.0))
                          if magic == b"PWRI" else None))


def _act(fields: dict, arch: str, magic: bytes) -> str:
    if magic == b"PWRI":
        return "drelu" if arch == "bamboo" else "relu"
    return fields.get("tinyconvert.ffn_act", "silu")
