"""Models as the runtime sees them: hyperparameters plus a "GGUF tensor name -> float32 tensor"
getter, from an HF checkpoint (through the converter's own architecture table and plan, so the
reference and the candidate run identical code) or from a GGUF file."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from tinyconvert.pipeline.write.encode import to_f32
from tinyconvert.formats.checkpoint import open_checkpoint
from tinyconvert.formats.errors import InputError
from tinyconvert.archs.config import RELU_ACTS, ModelConfig, gguf_fields, read_config
from tinyconvert.io.hub import resolve_model
from tinyconvert.pipeline.gguf_checks import check_runnable
from tinyconvert.pipeline.plan import extra_tensors, plan_tensors
from tinyconvert.pipeline.planned import PlannedTensor
from tinyconvert.runtime.act_names import HF_ACTS
from tinyconvert.runtime.hparams import Hparams, from_gguf_fields


@dataclass
class ModelSource:
    kind: str                       # "hf" or "gguf"
    path: Path
    hparams: Hparams
    get: Callable                   # name -> torch.Tensor | None
    names: list[str]                # every tensor name get() knows
    fields: dict | None = None      # GGUF metadata (gguf sources only)
    as_llamacpp: Hparams | None = None  # HF sources: the hparams llama.cpp computes from the
                                        # converter's keys (tanh GELU, truncated YaRN, ...)


def hparams_from_config(c: ModelConfig, *, as_llamacpp: bool = False) -> Hparams:
    """The runtime reads an HF checkpoint through the keys hf2gguf would write for it, so an HF
    reference and its GGUF run under the very same hyperparameters. Where transformers computes
    something no key can say, the reference follows transformers, unless as_llamacpp: then it
    is what llama.cpp computes from those keys."""
    fields = gguf_fields(c)
    act = c.raw.get(c.arch.act_key) or c.raw.get("hidden_act", "silu")
    if act in ("relu", "fatrelu"):      # dense ReLU files record this key too
        fields["tinyconvert.ffn_act"] = "drelu" if c.arch.name == "bamboo" else "relu"
    if as_llamacpp:
        return from_gguf_fields(fields, n_vocab=c.n_vocab or 0)
    if HF_ACTS.get(act) == "gelu_erf":
        # the checkpoint's exact GELU; llama.cpp's GELU graphs (and so a GGUF) compute the tanh
        # form, and verify shows the difference
        fields["tinyconvert.ffn_act"] = "gelu_erf"
    hp = from_gguf_fields(fields, n_vocab=c.n_vocab or 0)
    if c.rope.get("truncate") is False and hp.rope_scaling.get("type") == "yarn":
        # transformers' untruncated YaRN ramp (gpt-oss's configs): no GGUF key says it and
        # llama.cpp always truncates, so the reference keeps it and verify shows the difference
        hp = replace(hp, rope_scaling={**hp.rope_scaling, "truncate": False})
    if c.arch.reference is not None:
        hp = c.arch.reference(c, hp)
    return hp


def hf_plan(folder: Path, loras=()) -> tuple[ModelConfig, dict[str, PlannedTensor]]:
    """The checkpoint's config and its tensors as GGUF names, read at f32 through the
    converter's plan (no torch: the weights check reads these too)."""
    cfg = read_config(folder, extra_acts=RELU_ACTS)
    records = open_checkpoint(folder, cfg.raw.get("quantization_config"))
    if loras:
        from tinyconvert.lora.merge import merged_records
        records = merged_records(records, loras)
    return cfg, {p.name: p for p in extra_tensors(cfg) + plan_tensors(cfg, records, "f32")}


def hf_source(folder: Path, loras=()) -> ModelSource:
    """loras: tinyconvert.lora.merge.Lora adapters merged into the weights as they are read."""
    import torch
    cfg, planned = hf_plan(folder, loras)

    def get(name: str):
        p = planned.get(name)
        if p is None:
            return None
        rows = p.read_rows(0, p.n_rows)
        if p.src_dtype == "TMAC":         # GPTQ: the checkpoint's own dequantized weights
            return torch.from_numpy(rows.dequantize())
        if p.src_dtype == "RAW":          # gpt-oss MXFP4 experts, decoded
            return torch.from_numpy(p.qtype.dequantize(rows).reshape(p.shape))
        return torch.from_numpy(to_f32(rows, p.src_dtype).reshape(p.shape))
    return ModelSource("hf", folder, hparams_from_config(cfg), get, list(planned),
                       as_llamacpp=hparams_from_config(cfg, as_llamacpp=True))


def gguf_source(path: Path) -> ModelSource:
    from tinyconvert.runtime.weights import GgufWeights
    if not Path(path).is_file():
        raise InputError(f"{path}: no such GGUF file")
    w = GgufWeights(path)
    check_runnable(Path(path), w.fields, w.tensors)
    try:
        hp = from_gguf_fields(w.fields, w.magic)
    except (KeyError, TypeError) as e:
        raise InputError(f"{path}: GGUF metadata lacks {e} needed to run the model") from None
    return ModelSource("gguf", Path(path), hp, w, w.names, w.fields)


def open_source(model: str | Path, loras=()) -> ModelSource:
    p = Path(model)
    if p.is_file():
        if loras:
            raise InputError(f"{model}: --lora applies to a Hugging Face checkpoint reference, "
                             f"not a GGUF file")
        return gguf_source(p)
    return hf_source(resolve_model(str(model)), loras)
