"""The shapes of tokenizer.json and tokenizer_config.json checked before anything (ours or
gguf-py's SpecialVocab) reads them, so a hostile or broken file is one line naming the field
instead of a TypeError deep inside a vocabulary builder."""
from __future__ import annotations

import re
from pathlib import Path

from tinyconvert.formats.errors import InputError

MAX_ID = (1 << 31) - 1          # llama.cpp's token ids are int32
SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token",
                "mask_token")
FLAG_KEYS = ("add_bos_token", "add_eos_token", "add_prefix_space", "clean_up_tokenization_spaces",
             "legacy")
STAGES = ("normalizer", "pre_tokenizer", "post_processor", "decoder")


def _is_id(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_ID


def _fail(path: Path, what: str):
    raise InputError(f"{path}: {what}")


def _check_merges(path: Path, merges) -> None:
    if not isinstance(merges, list):
        _fail(path, f"model.merges is {type(merges).__name__}, not a list")
    for m in merges:
        ok = (isinstance(m, str) and m.count(" ") == 1) or \
            (isinstance(m, list) and len(m) == 2 and all(isinstance(p, str) for p in m))
        if not ok:
            _fail(path, f"merge {m!r} is neither 'a b' nor a pair of strings")


def check_tokenizer_json(tj: dict, path: Path) -> None:
    """The vocabulary and merges of a BPE model (others are not read from tokenizer.json), the
    added tokens and the pipeline stages of any."""
    model = tj.get("model")
    if not isinstance(model, dict):
        _fail(path, "has no model object")
    if model.get("type") == "BPE":
        vocab = model.get("vocab", {})
        if not isinstance(vocab, dict) or not vocab:
            _fail(path, "model.vocab is not a non-empty object of token -> id")
        bad = next((t for t, i in vocab.items() if not _is_id(i)), None)
        if bad is not None:
            _fail(path, f"token {bad!r} has id {vocab[bad]!r}, not an integer in 0..{MAX_ID}")
        _check_merges(path, model.get("merges", []))
    added = tj.get("added_tokens", [])
    if not isinstance(added, list):
        _fail(path, "added_tokens is not a list")
    for t in added:
        if not (isinstance(t, dict) and isinstance(t.get("content"), str) and _is_id(t.get("id"))):
            _fail(path, f"added token {t!r} needs a string content and an integer id")
    for stage in STAGES:
        if tj.get(stage) is not None and not isinstance(tj[stage], dict):
            _fail(path, f"{stage} is {tj[stage]!r}, not an object")


def check_tokenizer_config(cfg: dict, path: Path) -> None:
    for key in SPECIAL_KEYS:
        v = cfg.get(key)
        if not (v is None or isinstance(v, str)
                or (isinstance(v, dict) and isinstance(v.get("content"), str))):
            _fail(path, f"{key} is {v!r}; expected a token string or {{'content': ...}}")
    for key in FLAG_KEYS:
        if cfg.get(key) is not None and not isinstance(cfg[key], bool):
            _fail(path, f"{key} is {cfg[key]!r}, not true or false")
    template = cfg.get("chat_template")
    if not (template is None or isinstance(template, str) or (
            isinstance(template, list) and all(isinstance(t, dict) and isinstance(
                t.get("name"), str) and isinstance(t.get("template"), str) for t in template))):
        _fail(path, "chat_template is neither a string nor a list of {name, template}")
    decoder = cfg.get("added_tokens_decoder", {})
    if not isinstance(decoder, dict):
        _fail(path, "added_tokens_decoder is not an object")
    for sid, entry in decoder.items():
        if not (re.fullmatch(r"\d{1,10}", sid) and int(sid) <= MAX_ID and isinstance(entry, dict)
                and isinstance(entry.get("content"), str)):
            _fail(path, f"added_tokens_decoder entry {sid!r} is not an id with a content string")
