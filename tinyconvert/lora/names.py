"""PEFT names an adapter's targets by the modules of the transformers version that trained it,
and those can differ from the names in the checkpoint on disk: transformers 4.52 and later load
Gemma 3's (and other multimodal models') `language_model.model.*` tensors into modules named
`model.language_model.*`, so adapters trained since say `model.language_model.layers.0...`
while the checkpoint keeps `language_model.model.layers.0...`. A target the base does not know
is looked up under the checkpoint's older name before it counts as missing."""
from __future__ import annotations

from typing import Callable

# (module-name prefix in adapters, the same tensor's prefix in checkpoints); transformers'
# _checkpoint_conversion_mapping for Gemma3ForConditionalGeneration, read the other way
ALIASES = (("model.language_model.", "language_model.model."),
           ("lm_head.", "language_model.lm_head."))


def checkpoint_name(target: str, known: Callable[[str], bool]) -> str:
    """target, or its checkpoint alias where only the alias is known; else target unchanged
    (the caller names it as missing)."""
    if known(target):
        return target
    for new, old in ALIASES:
        if target.startswith(new) and known(old + target[len(new):]):
            return old + target[len(new):]
    return target
