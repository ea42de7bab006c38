"""Tokenizer files to a GGUF vocabulary: SentencePiece `tokenizer.model` ("llama" vocab), a
Llama-2-style `tokenizer.json` without it ("llama" vocab, formats/tokenizers/vocab_hfspm.py) or byte-level BPE
`tokenizer.json` ("gpt2" vocab), plus special ids, add_bos/eos and chat template."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import gguf

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_notes import gguf_warnings
from tinyconvert.formats.tokenizers.pretokenizer import identify
from tinyconvert.formats.tokenizers.tokenizer_checks import check_tokenizer_config, check_tokenizer_json
from tinyconvert.formats.tokenizers.sentencepiece_proto import parse_sp_model
from tinyconvert.formats.tokenizers.vocab_hfspm import is_spm_json, spm_from_json

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# SentencePiece piece types share these numbers; we keep USER_DEFINED (llama.cpp's converter
# writes NORMAL) so that llama.cpp always keeps user-defined symbols whole, as SentencePiece does.
# llama.cpp finds them in the raw text, where a space is a space, so their U+2581 are written as
# spaces (as llama.cpp's converter writes added tokens): Gemma's runs of spaces then stay whole.
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
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a JSON object")
    return data


def _overlay_added(folder: Path, tokens, types, scores, n_vocab: int, notes: list[str]) -> None:
    """added_tokens.json entries become user-defined; tokenizer_config's added_tokens_decoder
    entries become control (special or special-looking) or user-defined. Entries past
    vocab_size have no row in the model: they are left out, and a note says so."""
    beyond = []
    for text, tid in _read_json(folder / "added_tokens.json").items():
        if not _is_id(tid):
            raise InputError(f"{folder / 'added_tokens.json'}: id {tid!r} of {text!r} is not an "
                             f"integer")
        if not 0 <= tid < n_vocab:
            beyond.append((tid, text))
        else:
            tokens[tid], types[tid] = text, USER_DEFINED
            if scores is not None:
                scores[tid] = -1000.0
    decoder = _read_json(folder / "tokenizer_config.json").get("added_tokens_decoder", {})
    for sid, entry in decoder.items():
        tid, text = int(sid), entry["content"]       # shapes checked in load_vocab
        if not 0 <= tid < n_vocab:
            beyond.append((tid, text))
            continue
        if entry.get("special") or looks_special(text):
            types[tid] = CONTROL
        else:
            text, types[tid] = text.replace("\u2581", " "), USER_DEFINED
        tokens[tid] = text
        if scores is not None:
            scores[tid] = -1000.0
    if beyond:
        notes.append(_beyond_note("added token", sorted(set(beyond)), n_vocab))


def _is_id(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _beyond_note(what: str, items: list[tuple[int, str]], n_vocab: int) -> str:
    shown = ", ".join(f"{tid} {text!r}" for tid, text in items[:3])
    more = f" and {len(items) - 3} more" if len(items) > 3 else ""
    return (f"{len(items)} {what}(s) at ids past vocab_size {n_vocab} have no embedding row "
            f"and are left out of the GGUF ({shown}{more})")


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
        if types[tid] == USER_DEFINED:
            tokens[tid] = piece.replace("\u2581", " ")
    notes = []
    if len(sp.pieces) > n:          # llama.cpp's converter drops them too, with a warning
        notes.append(_beyond_note("tokenizer.model piece", [(i, sp.pieces[i][0]) for i in
                                                            range(n, len(sp.pieces))], n))
    _overlay_added(folder, tokens, types, scores, n, notes)
    cfg = _read_json(folder / "tokenizer_config.json")
    prefix = cfg.get("add_prefix_space", None if sp.add_dummy_prefix else False)
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


def _hf_spm_vocab(folder: Path, n_vocab: int | None) -> GgufVocab:
    tokens, scores, types, prefix = spm_from_json(_read_json(folder / "tokenizer.json"), n_vocab)
    # llama.cpp adds the space prefix to SPM text unless told otherwise
    return GgufVocab("llama", "default", tokens, types, scores, None if prefix else False)


def load_vocab(folder: Path, n_vocab: int | None = None) -> GgufVocab:
    for name, check in (("tokenizer.json", check_tokenizer_json),
                        ("tokenizer_config.json", check_tokenizer_config)):
        if (folder / name).is_file():       # gguf-py reads both, whichever vocabulary is ours
            check(_read_json(folder / name), folder / name)
    if (folder / "tokenizer.model").is_file():
        vocab = _spm_vocab(folder, n_vocab)
    elif (folder / "tokenizer.json").is_file() and is_spm_json(_read_json(folder / "tokenizer.json")):
        vocab = _hf_spm_vocab(folder, n_vocab)
    elif (folder / "tokenizer.json").is_file():
        vocab = _bpe_vocab(folder, n_vocab)
    else:
        raise InputError(f"{folder}: no tokenizer found (tokenizer.model or tokenizer.json)")
    found: list[str] = []
    with gguf_warnings(found):
        try:
            vocab.special = gguf.SpecialVocab(folder, load_merges=vocab.model == "gpt2",
                                              n_vocab=len(vocab.tokens))
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
            # gguf-py reading a file our checks let through (a post_processor of odd shape,
            # a negative *_token_id in config.json, ...): still the input's fault
            raise InputError(f"{folder}: gguf-py cannot read the tokenizer files "
                             f"({type(e).__name__}: {e})") from None
    _refuse_wrong(folder, vocab, found)
    vocab.notes += found
    return vocab


# gguf-py's words for a special id it skips (gguf <0.20); a changed wording only loses the refusal
SKIPPED_ID = re.compile(r"Special token type (\w+), id (-?\d+) out of range, must be under (\d+)")


def _refuse_wrong(folder: Path, vocab: GgufVocab, found: list[str]) -> None:
    """Where gguf-py would write a file llama.cpp runs wrongly, refuse: a BPE vocabulary without
    merges cannot tokenize, and without its BOS/EOS id llama.cpp falls back to a default id."""
    if vocab.model == "gpt2" and not vocab.special.merges:
        raise InputError(f"{folder}: tokenizer.json has no BPE merges; llama.cpp could not "
                         f"tokenize with it (the GGUF would be non-functional)")
    for note in found:
        m = SKIPPED_ID.search(note)
        if m and m.group(1) in ("bos", "eos"):
            raise InputError(f"{folder}: the {m.group(1)} token id {m.group(2)} is past the "
                             f"vocabulary ({m.group(3)} tokens); llama.cpp would use a default id "
                             f"instead (fix bos/eos_token or *_token_id in the model's files)")


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
    with gguf_warnings(vocab.notes):
        sv.add_to_gguf(writer, quiet=True)
    # Say whether the HF tokenizer adds BOS even where its files are silent, so llama.cpp's
    # defaults (which differ between vocab kinds and pre-tokenizers) never decide. (Neither adds
    # EOS by default.)
    if "bos" not in sv.add_special_token:
        writer.add_add_bos_token(vocab.model == "llama")
