"""A Llama-2-style `tokenizer.json` (SentencePiece turned into a BPE with byte fallback, spaces as
U+2581) with no `tokenizer.model`: a `llama` (SPM) vocabulary, as llama.cpp's converter writes it
(gguf-py `LlamaHfVocab`): every id of the model vocabulary in order, `<0xXX>` pieces BYTE, special
tokens CONTROL, added tokens past the model vocabulary CONTROL or USER_DEFINED.

Scores differ on purpose: the converter gives every piece -1000, so llama.cpp's SPM tokenizer, which
merges the pair whose result scores highest, merges left to right instead of in the BPE's order. We
score a piece minus the rank of the first merge that makes it, so llama.cpp merges in that order.
"""
from __future__ import annotations

import re

from tinyconvert.formats.errors import InputError

NORMAL, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 3, 4, 5, 6
_BYTE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def is_spm_json(tj: dict) -> bool:
    """The converter's test: a BPE with byte fallback and a Sequence decoder."""
    model = tj.get("model", {})
    return (model.get("type") == "BPE" and bool(model.get("byte_fallback", False))
            and (tj.get("decoder") or {}).get("type") == "Sequence")


def _prefix(tj: dict) -> bool:
    """Whether the tokenizer puts U+2581 before the text (Metaspace or a Prepend normalizer)."""
    def steps(node):
        if not node:
            return []
        inner = node.get("pretokenizers") or node.get("normalizers")
        return [s for n in inner for s in steps(n)] if inner is not None else [node]
    for step in steps(tj.get("pre_tokenizer")) + steps(tj.get("normalizer")):
        if step.get("type") == "Metaspace":
            return step.get("prepend_scheme", "always") != "never"
        if step.get("type") == "Prepend" and step.get("prepend") == "\u2581":
            return True
    return False


def _merge_ranks(merges) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for rank, m in enumerate(merges):
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        ranks.setdefault(a + b, rank)
    return ranks


def spm_from_json(tj: dict, n_vocab: int | None):
    """(tokens, scores, types, add_space_prefix) for a tokenizer.json that is_spm_json accepts."""
    model = tj["model"]
    base = dict(model.get("vocab", {}))
    added = {t["id"]: t for t in tj.get("added_tokens", [])}
    n_base = max(base.values()) + 1 if base else 0
    n_tok = max([n_base - 1, *added]) + 1
    if n_vocab is not None and n_tok > n_vocab:
        raise InputError(f"tokenizer has {n_tok} tokens but the model's vocab_size is {n_vocab}")
    n = n_vocab or n_tok                     # rows past the tokenizer: padding, as for a .model
    tokens: list[str | None] = [None] * n_tok + [f"[PAD{i}]" for i in range(n_tok, n)]
    for text, tid in base.items():
        tokens[tid] = text
    ranks = _merge_ranks(model.get("merges", []))
    scores, types = [0.0] * n, [NORMAL] * n
    for tid in range(n):
        entry = added.get(tid)
        if entry is not None:
            tokens[tid] = entry["content"]
        if tokens[tid] is None:
            raise InputError(f"tokenizer.json has no token with id {tid}")
        if tid >= n_tok:
            types[tid], scores[tid] = UNUSED, -1000.0
            continue
        if entry is not None and entry.get("special"):
            types[tid] = CONTROL
        elif _BYTE.fullmatch(tokens[tid]):
            types[tid] = BYTE
        elif entry is not None and tid >= n_base:
            types[tid] = USER_DEFINED
        scores[tid] = -float(ranks.get(tokens[tid], 0)) if types[tid] == NORMAL else 0.0
    return tokens, scores, types, _prefix(tj)
