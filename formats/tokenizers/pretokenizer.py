"""Which llama.cpp pre-tokenizer (`tokenizer.ggml.pre`) splits text like a tokenizer.json does.

llama.cpp's converter hashes the ids of a probe text and fails on any hash it has not seen. We read
the tokenizer's own pre-tokenizer definition instead: its split regexes (Split steps, the ByteLevel
step's built-in GPT-2 regex, Digits), in order, plus the BPE model's `ignore_merges` flag. That
signature is looked up below. Added tokens do not change it, so fine-tunes are recognised.
"""
from __future__ import annotations

import re

from tinyconvert.formats.errors import InputError

# The regex the ByteLevel pre-tokenizer applies when use_regex is true (GPT-2's pattern).
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
LLAMA3 = CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN35 = (CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_UPPER, _LOWER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
GPT4O = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+{CONTRACTIONS}?"
         rf"|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*{CONTRACTIONS}?"
         r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TEKKEN = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*"
          r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
DIGIT, DIGITS = r"\p{N}", r"\p{N}+"
# tokenizers' Punctuation step (behavior Contiguous) isolates runs of what Rust's is_punctuation
# calls punctuation: Unicode P plus the ASCII symbols; llama.cpp's falcon regex says the same.
PUNCT = r"[\p{P}\$\+<=>\^~\|`]+"
DIGIT_TRIPLES = r"[0-9][0-9][0-9]"
# DeepSeek-V3's three Split regexes, as its tokenizer.json writes them
DS3 = (r"\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
       r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"""
       r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# (split regexes in order, ignore_merges) -> llama.cpp pre-tokenizer name.
# "smollm" and "starcoder" split identically; they differ only in detokenizer space cleaning.
KNOWN: dict[tuple[tuple[str, ...], bool], str] = {
    ((GPT2,), False): "gpt-2",
    ((DIGIT, GPT2), False): "smollm",
    ((LLAMA3,), True): "llama-bpe",
    ((LLAMA3,), False): "smaug-bpe",
    ((QWEN2,), False): "qwen2",
    ((QWEN35,), False): "qwen35",
    ((GPT4O,), False): "gpt-4o",
    ((TEKKEN,), True): "tekken",
    ((PUNCT, GPT2, DIGITS, DIGIT_TRIPLES), False): "falcon",
    (DS3, False): "deepseek-v3",
}


def _steps(pre: dict | None) -> list[dict]:
    if pre is None:
        return []
    if pre.get("type") == "Sequence":
        return [s for p in pre.get("pretokenizers", []) for s in _steps(p)]
    return [pre]


def _split_regex(step: dict) -> str:
    pattern = step.get("pattern", {})
    if step.get("behavior") != "Isolated" or step.get("invert", False):
        raise InputError(f"pre-tokenizer Split with behavior={step.get('behavior')!r} "
                         f"invert={step.get('invert')!r} has no llama.cpp equivalent")
    if "Regex" in pattern:
        return pattern["Regex"]
    return re.escape(pattern.get("String", ""))


def signature(tokenizer_json: dict) -> tuple[tuple[str, ...], bool, bool]:
    """(split regexes, ignore_merges, byte_level) of a tokenizer.json."""
    regexes, byte_level = [], False
    for step in _steps(tokenizer_json.get("pre_tokenizer")):
        kind = step.get("type")
        if kind == "Split":
            regexes.append(_split_regex(step))
        elif kind == "ByteLevel":
            byte_level = True
            if step.get("add_prefix_space", False):
                raise InputError("pre-tokenizer ByteLevel(add_prefix_space=true) has no llama.cpp "
                                 "equivalent")
            if step.get("use_regex", True):
                regexes.append(GPT2)
        elif kind == "Punctuation":
            if step.get("behavior", "Isolated") != "Contiguous":
                raise InputError(f"pre-tokenizer Punctuation with behavior="
                                 f"{step.get('behavior')!r} has no llama.cpp equivalent")
            regexes.append(PUNCT)
        elif kind == "Digits":
            regexes.append(DIGIT if step.get("individual_digits", False) else DIGITS)
        else:
            raise InputError(f"pre-tokenizer step {kind!r} has no llama.cpp equivalent")
    ignore_merges = bool(tokenizer_json.get("model", {}).get("ignore_merges", False))
    return tuple(regexes), ignore_merges, byte_level


def identify(tokenizer_json: dict, clean_up_spaces: bool | None = None) -> str:
    """The llama.cpp pre-tokenizer name for a byte-level BPE tokenizer.json, or an InputError that
    shows the regexes no llama.cpp pre-tokenizer reproduces."""
    regexes, ignore_merges, byte_level = signature(tokenizer_json)
    if not byte_level:
        raise InputError("tokenizer.json is BPE but not byte-level (no ByteLevel pre-tokenizer); "
                         "only byte-level BPE and SentencePiece tokenizer.model are supported")
    name = KNOWN.get((regexes, ignore_merges))
    if name is None:
        shown = " then ".join(f"/{r}/" for r in regexes) or "(no split regex)"
        raise InputError(f"no llama.cpp pre-tokenizer splits text like this tokenizer: regex "
                         f"{shown}, ignore_merges={ignore_merges}")
    if name == "smollm" and clean_up_spaces:
        return "starcoder"
    return name
