"""llama.cpp's WordPiece (`bert` vocabularies, llama-vocab.cpp `llm_tokenizer_wpm_session`).

Words: the text (each code point reduced to the first of its canonical decomposition, a Hangul
syllable to its leading consonant, and accent marks dropped, when strip_accents; lower-cased when lowercase) cut
at whitespace, with control characters dropped and every punctuation mark, ASCII symbol and CJK
ideograph a word of its own. Each word, behind a U+2581 word-start mark, is covered greedily by the
longest vocabulary tokens from the left; a word that cannot be covered becomes the unknown token.
(llama.cpp's converter writes word-start pieces as "▁x" and continuations as plain "x".)
"""
from __future__ import annotations

import unicodedata

# llama.cpp's whitespace set (Unicode White_Space)
_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                   "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
# CJK ideograph blocks as BERT counts them (0x2B920 where the Unicode block starts at 0x2B820, as
# in the HF Rust code llama.cpp follows)
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _lower(ch: str) -> str:
    low = ch.lower()
    return low if len(low) == 1 else ch          # llama.cpp maps one code point to one


def _alone(ch: str, cat: str) -> bool:
    cp = ord(ch)
    return cat[0] == "P" or (cp < 0x7F and cat[0] == "S") or any(a <= cp <= b for a, b in _CJK)


def words(text: str, *, lowercase: bool, strip_accents: bool) -> list[str]:
    if strip_accents:      # llama.cpp keeps one code point: the first of its decomposition
        text = "".join(unicodedata.normalize("NFD", ch)[0] for ch in text)
    out, cur = [], ""
    for ch in text:
        if ch in _SPACE:
            if cur:
                out.append(cur)
            cur = ""
            continue
        cat = unicodedata.category(ch)
        if ch in ("\0", "\ufffd") or cat in ("Cc", "Cf", "Co", "Cs") or (
                strip_accents and cat[0] == "M"):
            continue
        s = _lower(ch) if lowercase else ch
        if _alone(ch, cat):
            if cur:
                out.append(cur)
            out.append(s)
            cur = ""
        else:
            cur += s
    if cur:
        out.append(cur)
    return out


class WordPiece:
    def __init__(self, fields: dict):
        self.tokens = fields["tokenizer.ggml.tokens"]
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.max_len = max(len(t) for t in self.tokens)
        self.unk = int(fields.get("tokenizer.ggml.unknown_token_id", 100))
        self.lowercase = bool(fields.get("tokenizer.ggml.normalizer.lowercase", True))
        self.strip_accents = bool(fields.get("tokenizer.ggml.normalizer.strip_accents",
                                             self.lowercase))

    def _word(self, word: str) -> list[int]:
        word, ids, i = "\u2581" + word, [], 0
        while i < len(word):
            for j in range(min(len(word), i + self.max_len), i, -1):
                tid = self.ids.get(word[i:j])
                if tid is not None:
                    ids.append(tid)
                    i = j
                    break
            else:
                return [self.unk]
        return ids

    def encode_as_ids(self, text: str) -> list[int]:
        return [t for w in words(text, lowercase=self.lowercase, strip_accents=self.strip_accents)
                for t in self._word(w)]

    def decode_ids(self, ids: list[int]) -> str:
        text = "".join(self.tokens[i] for i in ids)
        return text.replace("\u2581", " ").lstrip(" ")
