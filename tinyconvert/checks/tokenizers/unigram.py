"""llama.cpp's Unigram tokenizer (`t5` vocabularies, llama-vocab.cpp `llm_tokenizer_ugm_session`).

Normalization walks the UTF-8 bytes: a user-defined token at the cursor is kept as it is (longest
first); otherwise the longest key of the SentencePiece precompiled charsmap is replaced by its
string; otherwise one code point is copied (an invalid byte becomes U+FFFD). Spaces are written as
U+2581; with remove_extra_whitespaces every run of spaces becomes one mark before the next word (and
trailing spaces go), with add_space_prefix the text starts with one.

The charsmap is `uint32 size | XOR-compressed double array (size bytes) | NUL-terminated strings`;
each array entry packs BASE (bits 10-30, shifted left by 8 when bit 9 is set), LEAF (bit 8) and
LCHECK (bits 0-7, and 31).

Tokens: a Viterbi search over byte positions for the highest total score, where normal, unused and
user-defined tokens (scored 0) are candidates and a code point no token starts with costs the lowest
normal score minus 10 as the unknown token; consecutive unknowns are one.
"""
from __future__ import annotations

import struct

import numpy as np

from tinyconvert.formats.errors import InputError

NORMAL, USER_DEFINED, UNUSED = 1, 4, 5
_MARK = "\u2581".encode("utf-8")


class _Charsmap:
    def __init__(self, blob: bytes):
        if len(blob) < 4:
            raise InputError("tokenizer.ggml.precompiled_charsmap is too small")
        (size,) = struct.unpack_from("<I", blob, 0)
        if size + 4 >= len(blob):
            raise InputError("tokenizer.ggml.precompiled_charsmap: array runs past the end")
        self.nodes = np.frombuffer(blob, dtype="<u4", count=size // 4, offset=4).tolist()
        self.strings = blob[4 + size:]

    def _base(self, i: int) -> int:
        n = self.nodes[i]
        return (n >> 10) << ((n & (1 << 9)) >> 6)

    def longest(self, data: bytes, pos: int) -> tuple[int, bytes]:
        """(bytes consumed, replacement) of the longest key at pos; (0, b"") if none."""
        best, node = (0, b""), self._base(0)
        for k in range(pos, len(data)):
            c = data[k]
            if c == 0:
                break
            node ^= c
            if node >= len(self.nodes) or (self.nodes[node] & ((1 << 31) | 0xFF)) != c:
                break
            leaf = (self.nodes[node] >> 8) & 1
            node ^= self._base(node)
            if leaf:
                off = self.nodes[node] & ((1 << 31) - 1)
                end = self.strings.find(b"\0", off)
                best = (k - pos + 1, self.strings[off:end])
        return best


def _utf8_len(b: int) -> int:
    return 1 if b < 0x80 else 2 if b >> 5 == 6 else 3 if b >> 4 == 14 else 4 if b >> 3 == 30 else 1


class Unigram:
    def __init__(self, fields: dict):
        tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
        scores = fields["tokenizer.ggml.scores"]
        self.tokens = tokens
        self.unk = int(fields.get("tokenizer.ggml.unknown_token_id", 2))
        self.ids: dict[bytes, tuple[int, float]] = {}
        self.user: set[bytes] = set()
        normal = [float(s) for s, ty in zip(scores, types) if int(ty) == NORMAL]
        self.unk_score = (min(normal) if normal else 0.0) - 10.0
        for tid, (text, ty) in enumerate(zip(tokens, types)):
            ty, raw = int(ty), text.encode("utf-8")
            if ty in (NORMAL, USER_DEFINED, UNUSED) and raw:
                self.ids.setdefault(raw, (tid, 0.0 if ty == USER_DEFINED else float(scores[tid])))
            if ty == USER_DEFINED and raw:
                self.user.add(raw)
        self.max_len = max(map(len, self.ids), default=1)
        self.max_user = max(map(len, self.user), default=0)
        blob = fields.get("tokenizer.ggml.precompiled_charsmap")
        self.charsmap = _Charsmap(bytes(np.asarray(blob, dtype=np.uint8))) if blob is not None \
            and len(blob) else None
        self.prefix = bool(fields.get("tokenizer.ggml.add_space_prefix", False))
        self.merge = bool(fields.get("tokenizer.ggml.remove_extra_whitespaces", False))

    def _prefix(self, data: bytes, pos: int) -> tuple[int, bytes]:
        for n in range(min(self.max_user, len(data) - pos), 0, -1):
            if data[pos:pos + n] in self.user:
                return n, data[pos:pos + n]
        if self.charsmap is not None:
            n, repl = self.charsmap.longest(data, pos)
            if n:
                return n, repl
        n = _utf8_len(data[pos])
        chunk = data[pos:pos + n]
        try:
            chunk.decode("utf-8")
            return n, chunk
        except UnicodeDecodeError:
            return 1, "\ufffd".encode("utf-8")

    def normalize(self, text: str) -> bytes:
        data, pos, out = text.encode("utf-8"), 0, bytearray()
        in_word, prefixed = False, False
        while pos < len(data):
            used, repl = self._prefix(data, pos)
            for c in repl:
                if c != 0x20:
                    if not in_word:
                        in_word = True
                        if (self.prefix and not prefixed) or self.merge:
                            out += _MARK
                            prefixed = True
                    out.append(c)
                else:
                    in_word = False
                    if not self.merge:
                        out += _MARK
            pos += used
        return bytes(out)

    def encode_as_ids(self, text: str) -> list[int]:
        data = self.normalize(text)
        n = len(data)
        if n == 0:
            return []
        best = [(-float("inf"), self.unk, 0)] * (n + 1)        # (score, token, start)
        best[0] = (0.0, self.unk, 0)
        pos = 0
        while pos < n:
            step, base, single = _utf8_len(data[pos]), best[pos][0], False
            step = min(step, n - pos)
            for end in range(pos + 1, min(n, pos + self.max_len) + 1):
                hit = self.ids.get(data[pos:end])
                if hit is None:
                    continue
                single |= end - pos == step
                if base + hit[1] > best[end][0]:
                    best[end] = (base + hit[1], hit[0], pos)
            if not single and base + self.unk_score > best[pos + step][0]:
                best[pos + step] = (base + self.unk_score, self.unk, pos)
            pos += step
        ids, at, prev_unk = [], n, False
        while True:
            _, tid, start = best[at]
            if not (prev_unk and tid == self.unk):
                ids.append(tid)
            prev_unk = tid == self.unk
            if start == 0:
                break
            at = start
        return ids[::-1]

    def decode_ids(self, ids: list[int]) -> str:
        return "".join(self.tokens[i] for i in ids).replace("\u2581", " ")
