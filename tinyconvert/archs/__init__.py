"""The architecture registry: one module per family (in dense/, ln/, moe/, ssm/ by kind), each
a list of `Arch` records. Adding an architecture is one module there (plus, where llama.cpp
computes something new, a runtime block and a `runtime.hparams.RECIPES` entry)."""
from __future__ import annotations

from tinyconvert.archs.dense import gemma, granite, llama, olmo, phi3, qwen
from tinyconvert.archs.ln import falcon, gpt2, gptneox, opt, phi2, stablelm, starcoder2
from tinyconvert.archs.moe import deepseek, gpt_oss, softmax_router
from tinyconvert.archs.ssm import mamba
from tinyconvert.archs.base import Arch
from tinyconvert.formats.errors import InputError

FAMILY_MODULES = (llama, qwen, gemma, olmo, granite, phi3, softmax_router, deepseek, gpt_oss, gpt2,
                  starcoder2, gptneox, phi2, stablelm, falcon, mamba, opt)


def _registry() -> dict[str, Arch]:
    table: dict[str, Arch] = {}
    for module in FAMILY_MODULES:
        for arch in module.FAMILIES:
            for hf_class in arch.hf_classes:
                if hf_class in table:
                    raise ValueError(f"{hf_class} is registered twice")
                table[hf_class] = arch
    return table


ARCHITECTURES: dict[str, Arch] = _registry()
# Classes tinyconvert converts only for PowerInfer (their ReLU FFN is not what llama.cpp's
# `llama` graph computes); the README's table lists them apart.
POWERINFER_ONLY = ("SparseLlamaForCausalLM", "BambooForCausalLM", "OPTForCausalLM")
# Classes llama.cpp has no architecture for at all, but PowerInfer runs (its own `opt` graph).
NO_LLAMACPP_ARCH = {"OPTForCausalLM": "OPT"}


def refuse_no_llamacpp_arch(folder) -> None:
    """A plain GGUF of a class llama.cpp has no architecture for would load nowhere."""
    import json
    from pathlib import Path
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return                       # read_config names what is wrong with it
    names = config.get("architectures") if isinstance(config, dict) else None
    for name in names if isinstance(names, list) else []:    # read_config checks the rest
        if isinstance(name, str) and name in NO_LLAMACPP_ARCH:
            raise InputError(f"{name}: llama.cpp has no {NO_LLAMACPP_ARCH[name]} architecture, "
                             f"so a plain GGUF of it would run nowhere; PowerInfer runs it: "
                             f"hf2gguf --powerinfer --predictor DIR")


def arch_for(config: dict) -> tuple[str, Arch]:
    names = config.get("architectures") or []
    for name in names:
        if name in ARCHITECTURES:
            return name, ARCHITECTURES[name]
    shown = ", ".join(names) if names else f"(none; model_type {config.get('model_type')!r})"
    raise InputError(f"unsupported architecture {shown}; supported: {', '.join(ARCHITECTURES)}")


def supported_table() -> list[tuple[str, str]]:
    """(HF class, GGUF architecture) for every class hf2gguf converts to a plain GGUF."""
    return [(name, arch.arch_name) for name, arch in ARCHITECTURES.items()
            if name not in POWERINFER_ONLY]
