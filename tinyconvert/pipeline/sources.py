"""Models as the runtime sees them: hyperparameters plus a "GGUF tensor name -> float32 tensor"
getter, from an HF checkpoint (through the converter's own architecture table and plan, so the
reference and the candidate run identical code) or from a GGUF file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tinyconvert.archs.base import gguf_arch_name
from tinyconvert.pipeline.encode import to_f32
from tinyconvert.formats.checkpoint import open_checkpoint
from tinyconvert.formats.errors import InputError
from tinyconvert.archs.config import RUNTIME_ACTS, ModelConfig, read_config
from tinyconvert.io.hub import resolve_model
from tinyconvert.pipeline.plan import extra_tensors, plan_tensors
from tinyconvert.runtime.hparams import Hparams, from_gguf_fields


@dataclass
class ModelSource:
    kind: str                       # "hf" or "gguf"
    path: Path
    hparams: Hparams
    get: Callable                   # name -> torch.Tensor | None
    names: list[str]                # every tensor name get() knows
    fields: dict | None = None      # GGUF metadata (gguf sources only)


def hparams_from_config(c: ModelConfig) -> Hparams:
    kind = c.rope["rope_type"]
    scaling = {}
    if kind in ("linear", "yarn"):
        scaling = {"type": kind, **{k: c.rope.get(k) for k in (
            "factor", "original_max_position_embeddings", "attention_factor", "beta_fast",
            "beta_slow")}}
    act = c.raw.get("hidden_act", "silu")
    act = "drelu" if c.arch.name == "bamboo" else "relu" if act in ("relu", "fatrelu") else act
    return Hparams(arch=gguf_arch_name(c.arch), n_layer=c.n_layer, n_embd=c.n_embd,
                   n_head=c.n_head, n_kv_head=c.n_kv_head, head_dim=c.head_dim, n_ff=c.n_ff,
                   n_vocab=c.n_vocab or 0, rms_eps=c.rms_eps, rope_theta=c.rope_theta,
                   rope_scaling=scaling, act=act)


def hf_source(folder: Path) -> ModelSource:
    import torch
    cfg = read_config(folder, acts=RUNTIME_ACTS)
    records = open_checkpoint(folder, cfg.raw.get("quantization_config"))
    planned = {p.name: p for p in extra_tensors(cfg) + plan_tensors(cfg, records, "f32")}

    def get(name: str):
        p = planned.get(name)
        if p is None:
            return None
        rows = p.read_rows(0, p.n_rows)
        if p.src_dtype == "TMAC":         # GPTQ: the checkpoint's own dequantized weights
            return torch.from_numpy(rows.dequantize())
        return torch.from_numpy(to_f32(rows, p.src_dtype).reshape(p.shape))
    return ModelSource("hf", folder, hparams_from_config(cfg), get, list(planned))


def gguf_source(path: Path) -> ModelSource:
    from tinyconvert.runtime.weights import GgufWeights
    if not Path(path).is_file():
        raise InputError(f"{path}: no such GGUF file")
    w = GgufWeights(path)
    try:
        hp = from_gguf_fields(w.fields, w.magic)
    except (KeyError, TypeError) as e:
        raise InputError(f"{path}: GGUF metadata lacks {e} needed to run the model") from None
    return ModelSource("gguf", Path(path), hp, w, w.names, w.fields)


def open_source(model: str | Path) -> ModelSource:
    p = Path(model)
    if p.is_file():
        return gguf_source(p)
    return hf_source(resolve_model(str(model)))
