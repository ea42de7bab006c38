"""Which tokens llama.cpp treats as special and which end generation, from a GGUF's keys and token
texts (facts from src/llama-vocab.cpp, the end of `load`): the token types of the file, plus tokens
that llama.cpp recognises by their text and promotes to control tokens, and its end-of-generation
set (eos, eot, eom, the FIM pad/repo/separator tokens and a list of known end-of-turn texts).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNKNOWN, CONTROL, USER_DEFINED = 2, 3, 4

# Texts llama.cpp looks for when the file names no such token (it takes the first it finds).
EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
             "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
             "<end_of_utterance>")
EOM_TEXTS = ("<|eom_id|>",)
FIM_TEXTS = {
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
                "▁<PRE>", "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
                "▁<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
                "▁<MID>", "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}
_FIM_OLD_KEYS = {"fim_pre": "prefix", "fim_suf": "suffix", "fim_mid": "middle"}
# Every token with one of these texts ends generation (and becomes a control token).
EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
             "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
             "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
             "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[")
_HARMONY_USER_DEFINED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")


@dataclass(frozen=True)
class SpecialTokens:
    special: frozenset[int]          # matched in raw text (control, user-defined, unknown)
    eog: frozenset[int]              # end of generation


def _key_id(fields: dict, name: str, n: int) -> int | None:
    value = fields.get(f"tokenizer.ggml.{name}_token_id")
    return int(value) if value is not None and 0 <= int(value) < n else None


def _by_text(ids: dict[str, int], texts) -> list[int]:
    return [ids[t] for t in texts if t in ids]


def special_tokens(fields: dict) -> SpecialTokens:
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    n, ids = len(tokens), {t: i for i, t in enumerate(tokens)}
    special = set(np.flatnonzero(np.isin(np.asarray(types), (UNKNOWN, CONTROL, USER_DEFINED)))
                  .tolist())
    eos = _key_id(fields, "eos", n)
    eot, eom = _key_id(fields, "eot", n), _key_id(fields, "eom", n)
    if eot is None:
        found = _by_text(ids, EOT_TEXTS)
        special.update(found)
        eot = found[0] if found else None
    if eom is None:
        found = _by_text(ids, EOM_TEXTS)
        special.update(found)
        eom = found[0] if found else None
    fim = {}
    for name, texts in FIM_TEXTS.items():
        fim[name] = _key_id(fields, name, n)
        if fim[name] is None and name in _FIM_OLD_KEYS:
            fim[name] = _key_id(fields, _FIM_OLD_KEYS[name], n)
        if fim[name] is None:                  # llama.cpp promotes the first it meets
            found = _by_text(ids, texts)
            special.update(found)
            fim[name] = found[0] if found else None
    eog = {i for i in (fim["fim_pad"], fim["fim_rep"], fim["fim_sep"]) if i is not None}
    by_text = _by_text(ids, EOG_TEXTS)
    eog.update(by_text)
    special.update(by_text)
    special.update(_by_text(ids, _HARMONY_USER_DEFINED))
    eog.update(i for i in (eos, eot, eom) if i is not None)
    texts = {tokens[i]: i for i in eog}
    call = "<|call|>" in texts or "<|calls|>" in texts
    if "<|end|>" in texts and call and ("<|return|>" in texts or "<|flush|>" in texts):
        eog.discard(texts["<|end|>"])          # harmony: <|end|> ends a message, not generation
    if "</s>" in texts and ("<|tool_response>" in texts or "<|plamo:eos|>" in texts):
        eog.discard(texts["</s>"])             # a plain token there
        special.discard(texts["</s>"])
    return SpecialTokens(frozenset(special), frozenset(eog))
