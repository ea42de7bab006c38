"""BPE over raw UTF-8, as llama.cpp runs SentencePiece-style BPE vocabularies (src/llama-vocab.cpp,
`llm_tokenizer_bpe_session` with byte_encode false): Gemma 4 (tokenizer.ggml.model "gemma4", or
"gpt2" with pre gemma4 / granite-embed-multi-311m), sarvam-moe, and the "whitespace" model.

There is no byte-level alphabet: symbols are the text's characters, spaces are written U+2581
first (escape_whitespaces), a symbol left that is not a token falls back to its bytes as <0xXX>
tokens (a byte with no token is dropped, as llama.cpp drops it), and merges are applied lowest rank
first, leftmost first among equals, on the merge texts themselves (llm_bigram_bpe's order).
"""
from __future__ import annotations

import heapq
import re
from dataclasses import dataclass

from tinyconvert.formats.errors import InputError

SPACE = "\u2581"
# llama.cpp's whitespace code points (unicode-data.cpp, unicode_set_whitespace): Unicode White_Space
WHITE_SPACE = frozenset(map(chr, (
    *range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F,
    0x205F, 0x3000)))
_LINES = re.compile(r"[^\n]+|\n+")       # llama.cpp's "[^\n]+|[\n]+" (its newline splitter)


@dataclass(frozen=True)
class RawKind:
    newline_words: bool = False     # gemma4: a run of newlines that is a token is taken whole
    force_bos: bool = False         # gemma4: add_bos is true whatever the file says
    whitespace: bool = False        # the "whitespace" model: whitespace dropped, words apart


# what llama.cpp does per tokenizer.ggml.pre (the name table in llama_vocab::impl::load)
PRE: dict[str, RawKind] = {
    "gemma4": RawKind(newline_words=True, force_bos=True),
    "granite-embed-multi-311m": RawKind(newline_words=True, force_bos=True),
    "sarvam-moe": RawKind(),
}
WHITESPACE = RawKind(whitespace=True)


def raw_kind(model: str | None, pre: str | None) -> RawKind | None:
    """The raw-UTF-8 BPE for a file's model and pre names, or None for a byte-level one."""
    if model == "gemma4":                 # llama.cpp sets the pre name to gemma4 itself
        return PRE["gemma4"]
    if model == "whitespace":
        return WHITESPACE
    if model == "gpt2" and pre == "whitespace":
        raise InputError("pre-tokenizer 'whitespace' with tokenizer.ggml.model 'gpt2' is not "
                         "rebuilt: llama.cpp aborts on it (a space inside a BPE word) for text "
                         "with two spaces in a row; llama.cpp's converter writes model 'whitespace'")
    return PRE.get(pre) if model == "gpt2" else None


def _lower(ch: str) -> str:
    low = ch.lower()
    return low[0] if low else ch         # simple case mapping: U+0130 -> "i", not "i" + U+0307


class RawBpe:
    """encode_as_ids / decode_ids for one vocabulary."""

    def __init__(self, fields: dict, kind: RawKind):
        self.kind, self.tokens = kind, list(fields["tokenizer.ggml.tokens"])
        self.ids: dict[str, int] = {}
        for i, t in enumerate(self.tokens):
            self.ids.setdefault(t, i)
        self.ranks: dict[tuple[str, str], int] = {}
        for i, m in enumerate(fields.get("tokenizer.ggml.merges", [])):
            cut = m.find(" ", 1)                 # llama.cpp splits at the first space after 0
            if cut > 0:
                self.ranks.setdefault((m[:cut], m[cut + 1:]), i)
        # the whitespace model escapes nothing; the others write spaces as U+2581
        self.escape = not kind.whitespace
        self.lowercase = kind.whitespace and bool(
            fields.get("tokenizer.ggml.normalizer.lowercase", False))

    def _words(self, text: str) -> list[str]:
        if not self.kind.whitespace:
            return _LINES.findall(text.replace(" ", SPACE))
        words, word = [], []
        for ch in text:
            if ch in WHITE_SPACE:
                words.append("".join(word))
                word = []
            else:
                word.append(_lower(ch) if self.lowercase else ch)
        words.append("".join(word))
        return [w for w in words if w]

    def _merge(self, word: str) -> list[str]:
        """llama.cpp's merge loop over one word: a linked list of symbols and a queue of bigrams."""
        syms, nxt, prv = list(word), list(range(1, len(word) + 1)), list(range(-1, len(word) - 1))
        nxt[-1] = -1
        queue: list = []

        def push(left: int, right: int) -> None:
            if left >= 0 and right >= 0:
                rank = self.ranks.get((syms[left], syms[right]))
                if rank is not None:
                    heapq.heappush(queue, (rank, left, right, syms[left] + syms[right]))
        for i in range(1, len(syms)):
            push(i - 1, i)
        while queue:
            _, left, right, text = heapq.heappop(queue)
            if not syms[left] or not syms[right] or syms[left] + syms[right] != text:
                continue                          # outdated: one side has changed since
            syms[left], syms[right] = text, ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prv[nxt[right]] = left
            push(prv[left], left)
            push(left, nxt[left])
        return [s for s in syms if s]

    def _word_ids(self, word: str) -> list[int]:
        if self.kind.newline_words and not word.strip("\n") and word in self.ids:
            return [self.ids[word]]
        out = []
        for sym in self._merge(word):
            if sym in self.ids:
                out.append(self.ids[sym])
                continue
            for b in sym.encode("utf-8"):
                tid = self.ids.get(f"<0x{b:02X}>")
                if tid is not None:
                    out.append(tid)
        return out

    def encode_as_ids(self, text: str) -> list[int]:
        return [tid for word in self._words(text) for tid in self._word_ids(word)]

    def decode_ids(self, ids: list[int]) -> str:
        out = bytearray()
        for tid in ids:
            piece = self.tokens[tid]
            if re.fullmatch(r"<0x[0-9A-F]{2}>", piece):
                out.append(int(piece[3:5], 16))
            else:
                out += (piece.replace(SPACE, " ") if self.escape else piece).encode("utf-8")
        return out.decode("utf-8", errors="replace")
