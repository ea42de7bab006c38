"""verify --reference-engine transformers --lora: the reference is transformers' model with the
adapters merged by PEFT itself (merge_and_unload), not by our merge, so a fault in ours shows."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from tinyconvert.formats.errors import InputError


def peft_logits(folder: Path, loras) -> Callable[[list[int]], "object"]:
    """ids -> logits [T, n_vocab] (float32) of base + adapters, each scaled by its Lora.scale."""
    try:
        import transformers
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer
    except ImportError:
        raise InputError("--reference-engine transformers with --lora needs transformers and "
                         "peft (pip install transformers peft)") from None
    import torch
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                              trust_remote_code=False)
    names = [f"adapter{i}" for i in range(len(loras))]
    try:
        for i, (name, lora) in enumerate(zip(names, loras)):
            if i == 0:
                model = PeftModel.from_pretrained(model, lora.adapter.path, adapter_name=name)
            else:
                model.load_adapter(lora.adapter.path, adapter_name=name)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"PEFT cannot load the adapter onto {folder} ({first})") from None
    for module in model.modules():
        if isinstance(module, LoraLayer):
            for name, lora in zip(names, loras):
                if name in module.scaling:
                    module.scaling[name] *= lora.scale
    model = model.merge_and_unload(adapter_names=names)
    model.eval()

    @torch.no_grad()
    def logits(ids: list[int]):
        return model(torch.tensor([ids])).logits[0].float()
    return logits
