"""run: generate text from a GGUF or HF model with the bundled runtime (greedy by default)."""
from __future__ import annotations

from typing import Callable

import torch

from tinyconvert.formats.errors import InputError
from tinyconvert.runtime.model import Model
from tinyconvert.pipeline.sources import open_source
from tinyconvert.checks.tokenizers.tokenizer import Tokenizer, tokenizer_for


def render_chat(tok: Tokenizer, prompt: str, system: str | None = None) -> str:
    """The model's own chat template (jinja, sandboxed), as transformers renders it."""
    if not tok.chat_template:
        raise InputError("this model has no chat template; run without --chat")
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(msg):
        raise InputError(f"chat template: {msg}")
    env.globals["raise_exception"] = raise_exception
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}]
    return env.from_string(tok.chat_template).render(
        messages=messages, add_generation_prompt=True, bos_token=tok.token_text(tok.bos_id),
        eos_token=tok.token_text(min(tok.eos_ids) if tok.eos_ids else None))


def _pick(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator) -> int:
    if temperature <= 0:
        return int(logits.argmax())
    probs = (logits.double() / temperature).softmax(-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p           # smallest set reaching top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=gen))


def generate(model: str, prompt: str, *, chat: bool = False, max_tokens: int = 128,
             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
             on_text: Callable[[str], None] | None = None) -> list[int]:
    """Returns the generated ids; on_text receives decoded text as it becomes complete."""
    src = open_source(model)
    tok = tokenizer_for(src)
    ids = tok.encode(render_chat(tok, prompt), add_special=False) if chat else tok.encode(prompt)
    runner = Model(src.hparams, {n: src.get(n) for n in src.names}, n_ctx=len(ids) + max_tokens)
    gen = torch.Generator().manual_seed(seed)
    out: list[int] = []
    shown = ""
    logits = runner.forward(ids)[-1]
    for _ in range(max_tokens):
        nxt = _pick(logits, temperature, top_p, gen)
        if nxt in tok.eos_ids:
            break
        out.append(nxt)
        text = tok.decode(out)
        if on_text and not text.endswith("\ufffd") and len(text) > len(shown):
            on_text(text[len(shown):])
            shown = text
        logits = runner.forward([nxt])[-1]
    return out
