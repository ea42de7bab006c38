"""Qwen 2 / 2.5 (q/k/v biases) and Qwen 3 (per-head q/k RMSNorm): rotate-half RoPE, no permute."""
from __future__ import annotations

import gguf

from tinyconvert.archs.base import Arch

FAMILIES = [
    Arch(("Qwen2ForCausalLM",), gguf.MODEL_ARCH.QWEN2),
    Arch(("Qwen3ForCausalLM",), gguf.MODEL_ARCH.QWEN3),
]
