"""A GGUF file's vocabulary as llama.cpp tokenizes it (src/llama-vocab.cpp `tokenize`):

1. special partition: the text is cut at every control, user-defined and unknown token written in
   it, longest token first, each token splitting every stretch of text left (so a shorter token
   never breaks a longer one); llama.cpp strips the spaces beside some of them (LSTRIP/RSTRIP);
2. each stretch of text between them goes through the vocabulary's own tokenizer: SentencePiece
   (`llama`, with its space prefix and byte fallback), byte-level BPE (`gpt2`, with the split
   regexes of its pre-tokenizer name), BPE over raw UTF-8 (`gemma4`, `whitespace`, and `gpt2`
   under the pre names that turn byte encoding off: checks/tokenizers/bpe_raw.py), WordPiece (`bert`, checks/tokenizers/wordpiece.py) or Unigram (`t5`,
   checks/tokenizers/unigram.py);
3. BOS / EOS as the file's add_bos_token / add_eos_token keys say, llama.cpp's defaults otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinyconvert.checks.tokenizers.bpe_raw import RawBpe, raw_kind
from tinyconvert.checks.tokenizers.special_tokens import special_tokens
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.tokenizers.llamacpp_pre import REGEXES, pre_tokenizer

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_C_SPACE = " \t\n\v\f\r"                 # C isspace(), what llama.cpp strips beside a token
# Tokens llama.cpp strips spaces beside, by general.name (llama-vocab.cpp, end of load()).
_PHI3_NO_RSTRIP = ("<unk>", "<s>", "<|endoftext|>")


@dataclass(frozen=True)
class Special:
    text: str
    tid: int
    lstrip: bool = False
    rstrip: bool = False


def _specials(fields: dict) -> list[Special]:
    """The tokens llama.cpp matches in raw text, longest first, with their strip flags."""
    tokens = fields["tokenizer.ggml.tokens"]
    name = str(fields.get("general.name", "")).lower()
    arch = str(fields.get("general.architecture", ""))
    pre = str(fields.get("tokenizer.ggml.pre", ""))
    phi3 = "phi-3" in name or "phi3" in name
    mask_lstrip = any(k in pre for k in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or any(
        k in arch for k in ("nomic-bert-moe", "jina-bert-v3"))
    out = []
    for tid in special_tokens(fields).special:
        text = tokens[tid]
        if not text:
            continue
        out.append(Special(text, tid, lstrip=mask_lstrip and text == "<mask>",
                           rstrip=phi3 and text not in _PHI3_NO_RSTRIP))
    out.sort(key=lambda s: (-len(s.text.encode("utf-8")), s.tid))
    return out


def partition(text: str, specials: list[Special]) -> list[str | int]:
    """Stretches of raw text (str) and special token ids (int), in order."""
    parts: list[str | int] = [text] if text else []
    for sp in specials:
        out: list[str | int] = []
        for part in parts:
            if isinstance(part, int) or sp.text not in part:
                out.append(part)
                continue
            pieces = part.split(sp.text)
            for i, piece in enumerate(pieces):
                if i:
                    out.append(sp.tid)
                if sp.lstrip and i + 1 < len(pieces):
                    piece = piece.rstrip(_C_SPACE)
                if sp.rstrip and i > 0:
                    piece = piece.lstrip(_C_SPACE)
                if piece:
                    out.append(piece)
        parts = out
    return parts


class LlamaVocab:
    """encode_as_ids / id_to_piece / decode_ids over one text tokenizer and the special tokens."""

    def __init__(self, text_encoder, fields: dict):
        self.inner, self.specials = text_encoder, _specials(fields)
        self.tokens = fields["tokenizer.ggml.tokens"]

    def encode_as_ids(self, text: str) -> list[int]:
        ids: list[int] = []
        for part in partition(text, self.specials):
            if isinstance(part, int):
                ids.append(part)
            else:
                ids.extend(self.inner.encode_as_ids(part))
        return ids

    def id_to_piece(self, tid: int) -> str:
        return self.tokens[tid]

    def decode_ids(self, ids: list[int]) -> str:
        return self.inner.decode_ids(ids)


class _Bpe:
    def __init__(self, fields: dict, pre_name: str | None):
        from tokenizers import Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTok
        pre = pre_tokenizer(pre_name)
        tokens = fields["tokenizer.ggml.tokens"]
        merges = []
        for m in fields.get("tokenizer.ggml.merges", []):
            cut = m.find(" ", 1)                   # llama.cpp splits at the first space after 0
            if cut > 0:
                merges.append((m[:cut], m[cut + 1:]))
        vocab = {}
        for i, t in enumerate(tokens):
            vocab.setdefault(t, i)                # llama.cpp refuses files with repeated texts
        self.tok = HFTok(models.BPE(vocab, merges, ignore_merges=pre.ignore_merges))
        self.tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in REGEXES[pre.kind]]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        self.tok.decoder = decoders.ByteLevel()

    def encode_as_ids(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode_ids(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False)


def _piece_type(ty) -> int:
    """llama.cpp's token types are SentencePiece's piece types (1 normal ... 6 byte). Its SPM
    merges reach any token by its text, so user-defined and unused pieces are plain pieces here;
    the partition has already taken user-defined tokens written in the text."""
    ty = int(ty)
    return NORMAL if ty in (USER_DEFINED, UNUSED) or not 1 <= ty <= 6 else ty


class _Spm:
    """SentencePiece BPE over the file's pieces and scores; no normalization, spaces escaped as
    U+2581, one space prefix per stretch of text (llama.cpp adds it after every special token)."""

    def __init__(self, fields: dict):
        import sentencepiece as spm

        from tinyconvert.formats.tokenizers.sentencepiece_proto import build_sp_model
        tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
        scores = fields.get("tokenizer.ggml.scores")
        scores = [0.0] * len(tokens) if scores is None else scores
        pieces = [(t, float(s), _piece_type(ty)) for t, s, ty in zip(tokens, scores, types)]
        ids = {k: int(fields.get(f"tokenizer.ggml.{key}_token_id", dflt)) for k, key, dflt in (
            ("unk", "unknown", 0), ("bos", "bos", 1), ("eos", "eos", 2), ("pad", "padding", -1))}
        # SentencePiece has exactly one unknown piece; llama.cpp's other "unknown" tokens (padding
        # holes) are only ever matched by the partition, like control tokens
        pieces = [(t, s, CONTROL if ty == UNKNOWN else ty) for t, s, ty in pieces]
        if 0 <= ids["unk"] < len(pieces):
            pieces[ids["unk"]] = (*pieces[ids["unk"]][:2], UNKNOWN)
        proto = build_sp_model(pieces, add_dummy_prefix=bool(
            fields.get("tokenizer.ggml.add_space_prefix", True)), special_ids=ids)
        self.sp = spm.SentencePieceProcessor(model_proto=proto)

    def encode_as_ids(self, text: str) -> list[int]:
        return list(self.sp.encode_as_ids(text))

    def decode_ids(self, ids: list[int]) -> str:
        return self.sp.decode_ids(ids)


@dataclass(frozen=True)
class Framing:
    """What llama.cpp puts around the text ids when add_special is true."""
    bos: int | None
    eos: int | None


def _key(fields: dict, name: str, default):
    value = fields.get(f"tokenizer.ggml.{name}")
    return default if value is None else value


def framing(fields: dict) -> Framing:
    model, pre_name = fields.get("tokenizer.ggml.model"), fields.get("tokenizer.ggml.pre")
    if model == "bert":                          # llama.cpp always frames WPM text: CLS ... SEP
        return Framing(int(_key(fields, "bos_token_id", 101)),
                       int(_key(fields, "seperator_token_id", 102)))
    if model == "llama":
        add_bos, add_eos, bos, eos = True, False, 1, 2
    elif model == "t5":
        add_bos, add_eos, bos, eos = False, True, None, 1
    elif model == "gemma4":                      # no default ids; add_bos forced below
        add_bos, add_eos, bos, eos = True, False, None, None
    elif raw_kind(model, pre_name) is not None:
        add_bos, add_eos, bos, eos = False, False, 11, 11
    else:
        pre = pre_tokenizer(pre_name)
        add_bos, add_eos, bos, eos = pre.add_bos, False, 11, 11
        if pre.no_bos:
            bos = None
    add_bos = bool(_key(fields, "add_bos_token", add_bos))
    raw = raw_kind(model, pre_name)
    add_bos = add_bos or bool(raw and raw.force_bos)
    add_eos = bool(_key(fields, "add_eos_token", add_eos))
    bos = _key(fields, "bos_token_id", bos) if bos is not None or model in ("t5", "gemma4") \
        else None
    eos = _key(fields, "eos_token_id", eos)
    return Framing(int(bos) if add_bos and bos is not None else None,
                   int(eos) if add_eos and eos is not None else None)


def text_encoder(fields: dict) -> LlamaVocab:
    model = fields.get("tokenizer.ggml.model")
    if model == "llama":
        return LlamaVocab(_Spm(fields), fields)
    raw = raw_kind(model, fields.get("tokenizer.ggml.pre"))
    if raw is not None:
        return LlamaVocab(RawBpe(fields, raw), fields)
    if model == "gpt2":
        return LlamaVocab(_Bpe(fields, fields.get("tokenizer.ggml.pre")), fields)
    if model == "bert":
        from tinyconvert.checks.tokenizers.wordpiece import WordPiece
        return LlamaVocab(WordPiece(fields), fields)
    if model == "t5":
        from tinyconvert.checks.tokenizers.unigram import Unigram
        return LlamaVocab(Unigram(fields), fields)
    raise InputError(f"cannot rebuild a tokenizer from this GGUF vocabulary (tokenizer.ggml.model "
                     f"{model!r}); use the Hugging Face checkpoint as the reference")
