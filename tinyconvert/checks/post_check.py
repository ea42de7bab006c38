"""The check every converting command ends with (hf2gguf, quantize, gguf2hf), as a library call.

check: `model` runs the reference and the file side by side (verify, 128 tokens, KL divergence);
`weights` checks a float file against the reference without running either
(checks/weights_check.py: no torch); `auto` (the default) picks `weights` when every tensor of
the file is f32/f16/bf16, a plain GGUF (not PowerInfer's PWRI, whose predictors only a model run
can judge), and `model` otherwise."""
from __future__ import annotations

from pathlib import Path

from tinyconvert.formats.errors import InputError

CHECKS = ("auto", "weights", "model")
DEFAULT_CHECK = "auto"
CHECK_HELP = ("auto (weights for an f32/f16/bf16 file, else model), weights (tensors, keys and "
              "tokenizer against the source; no model run, no KL divergence) or model (run both "
              "models: KL divergence)")
POST_VERIFY_TOKENS = 128
FLOAT_OUTTYPES = ("f32", "f16", "bf16", "auto")    # hf2gguf outtypes that write float files


def check_name(check: str) -> str:
    """A valid --check value (lower case), or a one-line InputError."""
    name = check.lower()
    if name not in CHECKS:
        raise InputError(f"unknown --check {check!r}; valid: {', '.join(CHECKS)}")
    return name


def check_before(check: str, qtype: str | None, *, n_types: int = 1) -> str:
    """A valid --check, checked before anything is written: `weights` needs a float output
    (qtype: the requested type, None for the command's default) and one file (a ladder is
    judged by its KL divergence table)."""
    name = check_name(check)
    if name == "weights" and n_types > 1:
        raise InputError("--check weights takes one type; a ladder is checked by running the "
                         "models (its KL divergence table)")
    if name == "weights" and qtype is not None and qtype.lower() not in FLOAT_OUTTYPES:
        raise InputError(f"--check weights needs an f32/f16/bf16 output, not {qtype}; "
                         f"use --check model (or auto)")
    return name


def resolve_check(check: str, model) -> str:
    """`auto` -> `weights` or `model` from the written file's (opened: model) tensor types."""
    name = check_name(check)
    if name != "auto":
        return name
    from tinyconvert.checks.weights_check import float_only
    return "weights" if model.magic == b"GGUF" and float_only(model) else "model"


def post_check(reference: str, candidate: Path, *, check: str = DEFAULT_CHECK,
               threads: int | None = None, lora=(), lora_scale=()):
    """-> a report with passed, summary_line(), problems(), chat and as_json(): a
    WeightsReport, or verify's VerifyReport. lora: adapters merged into an HF reference."""
    from tinyconvert.formats.gguf_model import open_gguf
    with open_gguf(Path(candidate)) as model:
        if resolve_check(check, model) == "weights":
            from tinyconvert.checks.weights_check import check_weights
            return check_weights(reference, candidate, lora=lora, lora_scale=lora_scale,
                                 opened=model)
    from tinyconvert.checks.verify import verify
    from tinyconvert.io.threads import use_torch_threads
    use_torch_threads(threads)
    return verify(reference, candidate, tokens=POST_VERIFY_TOKENS, lora=lora,
                  lora_scale=lora_scale)
