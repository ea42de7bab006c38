"""FFN activations: gated (act(gate) * up: SwiGLU, GeGLU, ReGLU, and Bamboo's dReLU) or plain
(act(up): the ungated MLPs of GPT-2, GPT-NeoX, StarCoder2, Phi-2 and Falcon).

GELU comes in two forms: exact (erf; HF's "gelu") and the tanh approximation (HF's "gelu_new",
"gelu_pytorch_tanh"). llama.cpp's GELU graphs always compute the tanh form (ggml_gelu), so a GGUF
runs gelu_tanh, while an HF checkpoint runs what its config says (runtime.hparams, sources)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tinyconvert.runtime.act_names import HF_ACTS  # noqa: F401 (its old home)


def act(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "silu":
        return F.silu(x)
    if name == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if name == "gelu_erf":
        return F.gelu(x)
    if name in ("relu", "drelu"):
        return F.relu(x)
    raise ValueError(f"unknown FFN activation {name!r}")


def ffn_inner(name: str, gate: torch.Tensor | None, up: torch.Tensor) -> torch.Tensor:
    """[T, n_ff] before the down projection; gate None: a plain MLP."""
    if gate is None:
        return act(name, up)
    if name == "drelu":                   # Bamboo: relu(gate) * relu(up)
        return F.relu(gate) * F.relu(up)
    return act(name, gate) * up
