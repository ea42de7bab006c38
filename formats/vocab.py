"""Tokenizer files to a GGUF vocabulary: SentencePiece `tokenizer.model` ("llama" vocab) or
byte-level BPE `tokenizer.json` ("gpt2" vocab), plus special ids, add_bos/eos and chat template."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import gguf

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.pretokenizer import identify
from tinyconvert.formats.sentencepiece_proto import parse_sp_model

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# SentencePiece piece types share these numbers; we keep USER_DEFINED (llama.cpp's converter
# writes NORMAL) so that llama.cpp always keeps user-defined symbols whole, as SentencePiece does.
SP_TYPES = {1: NORMAL, 2: UNKNOWN, 3: CONTROL, 4: USER_DEFINED, 5: UNUSED, 6: BYTE}


@dataclass
class GgufVocab:
    model: str                          # tokenizer.ggml.model: "llama" or "gpt2"
    pre: str                            # tokenizer.ggml.pre
    tokens: list[str]
    token_types: list[int]
    scores: list[float] | None = None
    add_space_prefix: bool | None = None
    special: gguf.SpecialVocab | None = None
    notes: list[str] = field(default_factory=list)


def looks_special(text: str) -> bool:
    """Added tokens that some models forget to mark special (same rule as llama.cpp's converter)."""
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<｜") and text.endswith("｜>"))
            or (text.startswith("<unused") and text.endswith(">")))


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


def _overlay_added(folder: Path, tokens, types, scores, n_vocab: int) -> None:
    """added_tokens.json entries become user-defined; tokenizer_config's added_tokens_decoder
    entries become control (special or special-looking) or user-defined."""
    for text, tid in _read_json(folder / "added_tokens.json").items():
        if 0 <= tid < n_vocab:
            tokens[tid], types[tid] = text, USER_DEFINED
            if scores is not None:
                scores[tid] = -1000.0
    decoder = _read_json(folder / "tokenizer_config.json").get("added_tokens_decoder", {})
    for sid, entry in decoder.items():
        tid, text = int(sid), entry["content"]
        if not 0 <= tid < n_vocab:
            continue
        if entry.get("special") or looks_special(text):
            types[tid] = CONTROL
        else:
            text, types[tid] = text.replace("\u2581", " "), USER_DEFINED
        tokens[tid] = text
        if scores is not None:
            scores[tid] = -1000.0


def _spm_vocab(folder: Path, n_vocab: int | None) -> GgufVocab:
    try:
        sp = parse_sp_model((folder / "tokenizer.model").read_bytes())
    except InputError as e:             # its messages start "tokenizer.model:"; give the path
        raise InputError(f"{folder}/{e}") from None
    n = n_vocab or len(sp.pieces)
    tokens = [f"[PAD{i}]" for i in range(n)]
    scores, types = [-10000.0] * n, [UNUSED] * n
    for tid, (piece, score, ptype) in enumerate(sp.pieces[:n]):
        tokens[tid], scores[tid], types[tid] = piece, score, SP_TYPES.get(ptype, NORMAL)
    _overlay_added(folder, tokens, types, scores, n)
    cfg = _read_json(folder / "tokenizer_config.json")
    prefix = cfg.get("add_prefix_space", None if sp.add_dummy_prefix else False)
    notes = []
    if sp.remove_extra_whitespaces:
        notes.append("tokenizer.model collapses repeated spaces (remove_extra_whitespaces); "
                     "llama.cpp does not, so texts with runs of spaces may tokenize differently")
    return GgufVocab("llama", "default", tokens, types, scores, prefix, notes=notes)


def _bpe_vocab(folder: Path, n_vocab: int | None) -> GgufVocab:
    tj = _read_json(folder / "tokenizer.json")
    model = tj.get("model", {})
    if model.get("type") != "BPE":
        raise InputError(f"{folder / 'tokenizer.json'}: model type {model.get('type')!r} is not "
                         f"supported (byte-level BPE or a SentencePiece tokenizer.model)")
    ids = dict(model.get("vocab", {}))
    added = {t["content"]: t for t in tj.get("added_tokens", [])}
    ids.update({text: t["id"] for text, t in added.items()})
    n = n_vocab or (max(ids.values()) + 1)
    if max(ids.values()) >= n:
        raise InputError(f"tokenizer has id {max(ids.values())} but the model's vocab_size is {n}")
    tokens, types = [f"[PAD{i}]" for i in range(n)], [UNUSED] * n
    for text, tid in ids.items():
        tokens[tid], types[tid] = text, NORMAL
        if text in added:
            if added[text].get("special") or looks_special(text):
                types[tid] = CONTROL
            else:
                tokens[tid], types[tid] = text.replace("\u2581", " "), USER_DEFINED
    cfg = _read_json(folder / "tokenizer_config.json")
    pre = identify(tj, cfg.get("clean_up_tokenization_spaces"))
    notes = []
    if tj.get("normalizer") not in (None, {"type": "NFC"}):
        notes.append(f"tokenizer normalizer {tj['normalizer'].get('type')!r} is not applied by "
                     f"llama.cpp")
    return GgufVocab("gpt2", pre, tokens, types, None, cfg.get("add_prefix_space"), notes=notes)


def load_vocab(folder: Path, n_vocab: int | None = None) -> GgufVocab:
    if (folder / "tokenizer.model").is_file():
        vocab = _spm_vocab(folder, n_vocab)
    elif (folder / "tokenizer.json").is_file():
        vocab = _bpe_vocab(folder, n_vocab)
    else:
        raise InputError(f"{folder}: no tokenizer found (tokenizer.model or tokenizer.json)")
    logging.getLogger("gguf").setLevel(logging.ERROR)
    vocab.special = gguf.SpecialVocab(folder, load_merges=vocab.model == "gpt2",
                                      n_vocab=len(vocab.tokens))
    return vocab


def add_vocab(writer: gguf.GGUFWriter, vocab: GgufVocab) -> None:
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.token_types)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)
    sv = vocab.special
    if sv is None:
        return
    sv.add_to_gguf(writer, quiet=True)
    # Say whether the HF tokenizer adds BOS even where its files are silent, so llama.cpp's
    # defaults (which differ between vocab kinds and pre-tokenizers) never decide. (Neither adds
    # EOS by default.)
    if "bos" not in sv.add_special_token:
        writer.add_add_bos_token(vocab.model == "llama")
