"""Text to ids and back for verify and run: from an HF folder's own tokenizer files, or rebuilt
from a GGUF file's vocabulary (byte-level BPE; the pre-tokenizer name maps back to its regexes)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tinyconvert.formats import pretokenizer as pt
from tinyconvert.formats.errors import InputError

IGNORE_MERGES = {name for (_, ignore), name in pt.KNOWN.items() if ignore}
REGEXES = {name: regexes for (regexes, _), name in pt.KNOWN.items()}
REGEXES["starcoder"] = REGEXES["smollm"]


@dataclass
class Tokenizer:
    backend: object                 # tokenizers.Tokenizer or sentencepiece.SentencePieceProcessor
    add_bos: bool
    bos_id: int | None
    eos_ids: set[int] = field(default_factory=set)
    chat_template: str | None = None
    bos_in_backend: bool = False    # the backend's post-processor adds BOS itself

    def encode(self, text: str, add_special: bool = True) -> list[int]:
        """add_special=False for text that already holds its special tokens (a chat template)."""
        if hasattr(self.backend, "encode_as_ids"):
            ids = list(self.backend.encode_as_ids(text))
        else:
            ids = self.backend.encode(text, add_special_tokens=add_special and self.bos_in_backend).ids
        if add_special and self.add_bos and self.bos_id is not None and not self.bos_in_backend:
            ids = [self.bos_id] + ids
        return ids

    def token_text(self, tid: int | None) -> str:
        if tid is None:
            return ""
        if hasattr(self.backend, "id_to_piece"):
            return self.backend.id_to_piece(tid)
        return self.backend.id_to_token(tid) or ""

    def decode(self, ids: list[int]) -> str:
        if hasattr(self.backend, "decode_ids"):
            return self.backend.decode_ids(ids)
        return self.backend.decode(ids, skip_special_tokens=False)


def _chat_template(folder: Path, cfg: dict) -> str | None:
    if isinstance(cfg.get("chat_template"), str):
        return cfg["chat_template"]
    path = folder / "chat_template.jinja"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def hf_tokenizer(folder: Path) -> Tokenizer:
    import gguf
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    sv = gguf.SpecialVocab(folder, load_merges=False)
    bos, eos = sv.special_token_ids.get("bos"), sv.special_token_ids.get("eos")
    eos_ids = {i for i in (eos, sv.special_token_ids.get("eot")) if i is not None}
    template = _chat_template(folder, cfg)
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer as HFTok
        return Tokenizer(HFTok.from_file(str(folder / "tokenizer.json")), True, bos, eos_ids,
                         template, bos_in_backend=True)
    if (folder / "tokenizer.model").is_file():
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        return Tokenizer(sp, cfg.get("add_bos_token", True), bos, eos_ids, template)
    raise InputError(f"{folder}: no tokenizer.json or tokenizer.model to tokenize with")


def gguf_tokenizer(fields: dict) -> Tokenizer:
    """A tokenizer rebuilt from the file's own vocabulary: SentencePiece for `llama` (SPM), a
    `tokenizers` BPE from the tokens, merges and pre-tokenizer name for `gpt2`."""
    if fields.get("tokenizer.ggml.model") == "llama":
        return _spm_tokenizer(fields)
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTok
    kind, pre = fields.get("tokenizer.ggml.model"), fields.get("tokenizer.ggml.pre")
    if kind != "gpt2" or pre not in REGEXES:
        raise InputError(f"cannot rebuild a tokenizer from this GGUF vocabulary ({kind}/{pre}); "
                         f"use the Hugging Face checkpoint as the reference")
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    merges = [tuple(m.split(" ", 1)) for m in fields.get("tokenizer.ggml.merges", [])]
    tok = HFTok(models.BPE({t: i for i, t in enumerate(tokens)}, merges,
                           ignore_merges=pre in IGNORE_MERGES))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in REGEXES[pre]]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, ty in zip(tokens, types) if ty == 4])
    bos = fields.get("tokenizer.ggml.bos_token_id")
    eos_ids = {fields[k] for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")
               if k in fields}
    return Tokenizer(tok, bool(fields.get("tokenizer.ggml.add_bos_token", False)), bos, eos_ids,
                     fields.get("tokenizer.chat_template"))


class _SpmWithSpecials:
    """llama.cpp's SPM tokenizer with special-token parsing: control and user-defined tokens
    written in the text are matched first (longest first); each stretch of text between them is
    tokenized by SentencePiece, which adds the space prefix to each as llama.cpp does after a
    special token."""

    def __init__(self, sp, specials: dict[str, int]):
        import re
        self.sp, self.specials = sp, specials
        self.split = (re.compile("(" + "|".join(re.escape(t) for t in sorted(
            specials, key=len, reverse=True)) + ")") if specials else None)

    def encode_as_ids(self, text: str) -> list[int]:
        if self.split is None:
            return list(self.sp.encode_as_ids(text))
        ids: list[int] = []
        for i, part in enumerate(self.split.split(text)):
            if i % 2:
                ids.append(self.specials[part])
            elif part:
                ids.extend(self.sp.encode_as_ids(part))
        return ids

    def __getattr__(self, name):          # id_to_piece, decode_ids: SentencePiece's own
        return getattr(self.sp, name)


def _piece_type(ty) -> int:
    """llama.cpp's token types are SentencePiece's piece types (1 normal ... 6 byte)."""
    return int(ty) if 1 <= int(ty) <= 6 else 1


def _spm_tokenizer(fields: dict) -> Tokenizer:
    import sentencepiece as spm

    from tinyconvert.formats.sentencepiece_proto import build_sp_model
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    scores = fields.get("tokenizer.ggml.scores")
    scores = [0.0] * len(tokens) if scores is None else scores
    # llama.cpp matches user-defined pieces in the raw text, where a space is a space;
    # SentencePiece matches them after escaping spaces as U+2581
    pieces = [(t.replace(" ", "\u2581") if ty == 4 else t, float(s), _piece_type(ty))
              for t, s, ty in zip(tokens, scores, types)]
    ids = {k: fields.get(f"tokenizer.ggml.{key}_token_id", -1) for k, key in (
        ("unk", "unknown"), ("bos", "bos"), ("eos", "eos"), ("pad", "padding"))}
    if 0 <= ids["unk"] < len(pieces):            # SentencePiece needs its unknown piece typed so
        pieces[ids["unk"]] = (*pieces[ids["unk"]][:2], 2)
    proto = build_sp_model(pieces, add_dummy_prefix=bool(
        fields.get("tokenizer.ggml.add_space_prefix", True)), special_ids=ids)
    sp = spm.SentencePieceProcessor(model_proto=proto)
    specials = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if int(ty) in (3, 4) and t}
    bos = fields.get("tokenizer.ggml.bos_token_id")
    eos_ids = {fields[k] for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")
               if k in fields}
    return Tokenizer(_SpmWithSpecials(sp, specials),
                     bool(fields.get("tokenizer.ggml.add_bos_token", True)), bos, eos_ids,
                     fields.get("tokenizer.chat_template"))


def tokenizer_for(source) -> Tokenizer:
    if source.kind == "hf":
        return hf_tokenizer(source.path)
    try:
        return gguf_tokenizer(source.fields)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - tokenizers/sentencepiece raise bare Exceptions
        raise InputError(f"{source.path}: its vocabulary cannot be rebuilt into a tokenizer "
                         f"({type(e).__name__}: {e})") from None
