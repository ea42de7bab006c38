"""The HF model as transformers computes it, as a verify reference.

verify's default reference runs an HF checkpoint through tinyconvert's own architecture table
and runtime (streamed, one layer in memory). A wrong transform in that table (a permutation, a
norm offset, a fused split) then changes the reference and the candidate alike and cannot show.
`--reference-engine transformers` asks transformers instead: it holds the whole model in memory
(float32), so it is for checkpoints that fit, and it is what our own tests use to keep the
table honest. No remote code is run."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from tinyconvert.formats.errors import InputError

ENGINES = ("runtime", "transformers")


def transformers_logits(folder: Path) -> Callable[[list[int]], "object"]:
    """ids -> logits [T, n_vocab] (float32) of the checkpoint as transformers runs it."""
    try:
        import transformers
    except ImportError:
        raise InputError("--reference-engine transformers needs transformers "
                         "(pip install transformers)") from None
    import torch
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{folder}: transformers cannot load this checkpoint ({first})") from None
    model.eval()

    @torch.no_grad()
    def logits(ids: list[int]):
        return model(torch.tensor([ids])).logits[0].float()
    return logits
