"""llama.cpp's BPE pre-tokenizers by `tokenizer.ggml.pre` name: the split regexes it applies (in
order, each piece a word of its own), whether whole words found in the vocabulary skip the merges,
and whether it adds BOS when the file does not say. Facts from llama.cpp's src/llama-vocab.cpp
(`llm_tokenizer_bpe` and the name table in `load`).

The regexes are written for Oniguruma (the `tokenizers` library's engine) so that they split the way
llama.cpp does: where llama.cpp runs a hand-written splitter (GPT-2, Llama 3, Qwen 2, Qwen 3.5) the
splitter's original regex; elsewhere llama.cpp's own regex, which its std::regex runs with each
non-ASCII code point reduced to its category and \\s meaning Unicode White_Space, which is what
Oniguruma's \\p{..} and \\s mean on the text itself. `$` is written `\\z` (std::regex's `$` is the end
of the piece; Oniguruma's the end of a line), and `\\d` is ASCII in std::regex.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.tokenizers import pretokenizer as pt

# English contractions as llama.cpp matches them: ASCII case only (Oniguruma's (?i:'s) would also
# take the long s, U+017F)
_C = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
GPT2 = pt.GPT2
LLAMA3, QWEN2, QWEN35 = (r.replace(pt.CONTRACTIONS, _C) for r in (pt.LLAMA3, pt.QWEN2, pt.QWEN35))
# GPT-2's regex as llama.cpp lists it for its std::regex paths: without the trailing |\s+, which
# changes nothing because llama.cpp keeps unmatched stretches as pieces of their own.
_GPT2_STL = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_DS3 = (r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
        r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_BLOOM = r" ?[^(\s|.,!?…。，、।۔،)]+"
_DEEPSEEK_LATIN = (  # written escaped: several of these code points change under NFC
    "\\s?["
    "A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
    "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a"
    "\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556"
    "\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b"
    "\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d"
    "\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"
    "\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4"
    "\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128"
    "\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184"
    "\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b"
    "\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17"
    "\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
    "\U000118a0-\U000118df\U0001e900-\U0001e943"
    "]+")
_CJK = r"[一-龥ࠀ-一가-퟿]+"
_UPPER_ASCII_FREE = r"((?=[\p{L}])([^a-z]))"       # llama.cpp's stand-in for [\p{Lu}\p{Lt}...]
_LOWER_ASCII_FREE = r"((?=[\p{L}])([^A-Z]))"

# llama.cpp's digit splitter for afmoe and tiny_aya (unicode.cpp, unicode_regex_split_custom_afmoe):
# a run of n digits is cut into n % 3 leading digits and groups of three, and the text before the
# run is not a piece of its own but glued to its first group ("a  1234" -> "a  1", "234"), which
# the next regex then splits without seeing the end of the text after the spaces
_DIGIT_GROUPS = r"[^\p{N}]*\p{N}{1,3}(?=(?:\p{N}{3})*(?!\p{N}))"
# tiny_aya's and youtu's GPT-4o-like regex as llama.cpp runs it: every \p{Lu}/\p{Ll}/... collapses
# to "any letter", so both case classes are letters or marks
_LM = r"[\p{L}\p{M}]"
_LETTERS_MARKS = (rf"[^\r\n\p{{L}}\p{{N}}]?{_LM}*{_LM}+{_C}?|[^\r\n\p{{L}}\p{{N}}]?{_LM}+{_LM}*{_C}?"
                  r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_YOUTU_CJK = ("[\uac00-\ud7a3\u3131-\u318e]+|[\uff01\u2026\u201c\u201d\u2018\u2019\u2014\uff1a"
              "\uff1b\uff0c\u3001-\u303f\ufe30-\ufe4f]+|[\u3105-\u312f]+"
              "|[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+")
# afmoe's script ranges exactly as llama.cpp compiles them (its 3rd range starts at U+8C48, the
# NFC form of U+F900, so it also covers Hangul and more)
_AFMOE_CJK = ("[\u4e00-\u9fff\u3400-\u4dbf\u8c48-\ufaff\u3040-\u309f\u30a0-\u30ff\uff65-\uff9f"
              "\u2f00-\u2fdf\u0e40-\u0e7f\u0e80-\u0eff\u1780-\u17ff\u1000-\u109f\uaa60-\uaa7f"
              "\ua9e0-\ua9ff\uac00-\ud7af\u1100-\u11ff]+")
# llama.cpp's "Han" (unicode_cpt_is_han) and its kimi-k2 splitter, which is Kimi's regex with Han
# runs first, letters (not marks) outside Han, and ASCII-case contractions
_HAN = ("\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002ebef"
        "\uf900-\ufaff\U0002f800-\U0002fa1f")
_KIMI = (rf"[{_HAN}]+|[^\r\n\p{{L}}\p{{N}}]?[\p{{L}}&&[^{_HAN}]]+{_C}?|\p{{N}}{{1,3}}"
         r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# pre-tokenizer kind (llama.cpp's LLAMA_VOCAB_PRE_TYPE_*) -> split regexes
REGEXES: dict[str, tuple[str, ...]] = {
    "default": (r"[\p{P}\$\+<=>\^~\|]+", _GPT2_STL, r"\p{N}+", r"[0-9][0-9][0-9]"),
    "llama3": (LLAMA3,),
    "jais2": (_C + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
              r"|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)"
              r"|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}",),
    "deepseek-llm": (r"[\r\n]", _DEEPSEEK_LATIN, r"\s?[!-/:-~！-／：-～‘-‟　-。]+", r"\s+\z", _CJK,
                     r"\p{N}+"),
    "deepseek3": (r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+", _DS3),
    "spark2_5": (r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+",
                 _DS3.replace(r"[\r\n]*|\s*[\r\n]+", r"|[\r\n]"), r"\p{N}"),
    "deepseek-coder": (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}"),
    "falcon": (r"[\p{P}\$\+<=>\^~\|`]+", _GPT2_STL, r"[0-9][0-9][0-9]"),
    "starcoder": (r"\p{N}", GPT2),
    "gpt2": (GPT2,),
    "qwen2": (QWEN2,),
    "qwen35": (QWEN35,),
    "bloom": (_BLOOM,),
    "viking": (_BLOOM, r"\p{N}"),
    "tekken": (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER_ASCII_FREE}*{_LOWER_ASCII_FREE}+"
               rf"|[^\r\n\p{{L}}\p{{N}}]?{_UPPER_ASCII_FREE}+{_LOWER_ASCII_FREE}*"
               r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
    "chameleon": (r"<sentinel:[0-9]+>", r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", r"([\t\n]|    |  )",
                  r"\p{N}", r"[\p{P}!-/:-@\[-`{-~]", _GPT2_STL),
    "gpt4o": (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER_ASCII_FREE}*{_LOWER_ASCII_FREE}+{_C}?"
              rf"|[^\r\n\p{{L}}\p{{N}}]?{_UPPER_ASCII_FREE}+{_LOWER_ASCII_FREE}*{_C}?"
              r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
    "granite-emb-multi": (
        r"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+" + _C + "?"
        r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*" + _C + "?"
        r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
    "superbpe": (r"\p{N}+", r"(?=([0-9]{3})+(?![0-9]))"),
    "bailingmoe": (r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                   r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",),
    "seed-coder": (_C + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+"
                   r"|\s+(?!\S)|\s+",),
    "ufakzeka": (r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)"
                 r"|\s+",),
    "laguna": (r"[^\n]+|[\n]+", QWEN2),
    "exaone-moe": (_C + r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}"
                   r"| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+",),
    # llama.cpp runs its own splitters here, written as the regexes they amount to (see above)
    "tiny_aya": (_DIGIT_GROUPS, _LETTERS_MARKS),
    "youtu": (_YOUTU_CJK, _LETTERS_MARKS.replace(r"|\p{N}{1,3}|", r"|\p{N}|")),
    "afmoe": (_DIGIT_GROUPS, _AFMOE_CJK, _DS3),
    "kimi-k2": (_KIMI,),
    "minicpm5": (r"\p{N}{1,3}", _C + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+"),
}


@dataclass(frozen=True)
class PreTokenizer:
    kind: str                        # key of REGEXES
    ignore_merges: bool = False      # a word that is a token is taken whole
    add_bos: bool = False            # llama.cpp's default when the file has no add_bos_token key
    no_bos: bool = False             # llama.cpp forgets the BOS id (chatglm-bpe, glm4)


_P = PreTokenizer
# tokenizer.ggml.pre name -> how llama.cpp pre-tokenizes (load() in llama-vocab.cpp)
NAMES: dict[str, PreTokenizer] = {
    "default": _P("default"),
    "minicpm5": _P("minicpm5", ignore_merges=True),
    **{n: _P("llama3", ignore_merges=True, add_bos=True) for n in (
        "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
        "jina-v5-nano")},
    "deepseek-llm": _P("deepseek-llm"),
    "deepseek-coder": _P("deepseek-coder"),
    **{n: _P("deepseek3") for n in ("deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4")},
    "spark2_5": _P("spark2_5"),
    "falcon": _P("falcon"),
    **{n: _P("starcoder") for n in ("starcoder", "refact", "command-r", "smollm", "codeshell",
                                    "exaone", "minerva-7b", "mellum2")},
    **{n: _P("gpt2") for n in (
        "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
        "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais",
        "exaone4", "trillion", "granite-docling")},
    "jais-2": _P("jais2"),
    **{n: _P("qwen2") for n in ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez",
                                "stablelm2", "hunyuan", "solar-open")},
    "qwen35": _P("qwen35"),
    **{n: _P("llama3") for n in ("dbrx", "smaug-bpe")},
    **{n: _P("bloom") for n in ("poro-chat", "bloom", "gpt3-finnish")},
    "chatglm-bpe": _P("llama3", no_bos=True),
    **{n: _P("llama3", ignore_merges=True, no_bos=True) for n in ("glm4", "glm5")},
    "viking": _P("viking"),
    "tekken": _P("tekken", ignore_merges=True, add_bos=True),
    "chameleon": _P("chameleon", add_bos=True),
    **{n: _P("gpt4o") for n in ("gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2")},
    "granite-embed-multi-97m": _P("granite-emb-multi", ignore_merges=True),
    "superbpe": _P("superbpe"),
    **{n: _P("bailingmoe") for n in ("bailingmoe", "bailingmoe2", "llada-moe")},
    "seed-coder": _P("seed-coder"),
    "ufakzeka": _P("ufakzeka"),
    "grok-2": _P("qwen2"),
    "laguna": _P("laguna"),
    "exaone-moe": _P("exaone-moe"),
    **{n: _P("tiny_aya") for n in ("tiny_aya", "cohere2moe")},
    "youtu": _P("youtu", ignore_merges=True),
    "afmoe": _P("afmoe"),
    "kimi-k2": _P("kimi-k2"),
}
# Known to llama.cpp without byte encoding: BPE over raw UTF-8 (checks/tokenizers/bpe_raw.py), not these
# byte-level splits. jina-v2-en and bert-bge-large are names llama.cpp's converter writes only on
# WordPiece (`bert`) vocabularies, where llama.cpp ignores the pre name; a BPE file with them is
# refused by llama.cpp itself ("unknown pre-tokenizer type").
NOT_REBUILT = ("gemma4", "sarvam-moe", "whitespace", "granite-embed-multi-311m")
WPM_ONLY = ("jina-v2-en", "bert-bge-large", "bert-bge")


def pre_tokenizer(name: str | None) -> PreTokenizer:
    """llama.cpp's pre-tokenizer for a `tokenizer.ggml.pre` value (missing: "default")."""
    if name is None or name == "":
        return NAMES["default"]
    if name not in NAMES:
        if name in WPM_ONLY:
            raise InputError(f"pre-tokenizer {name!r} on a BPE vocabulary: llama.cpp knows it only "
                             f"for WordPiece ('bert') vocabularies and refuses this file too")
        known = "known to llama.cpp but" if name in NOT_REBUILT else "not"
        raise InputError(f"pre-tokenizer {name!r} is {known} rebuilt from a GGUF here; use the "
                         f"Hugging Face checkpoint as the reference")
    return NAMES[name]
