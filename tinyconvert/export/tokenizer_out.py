"""Tokenizer files rebuilt from a GGUF vocabulary, tokenizing as llama.cpp does on the file:
byte-level BPE (`gpt2`) as tokenizer.json through the `tokenizers` library, SentencePiece
(`llama`) as tokenizer.model through SentencePiece's model proto. Both start from the tokenizer
`verify` already rebuilds from a GGUF (tinyconvert.checks.tokenizers.gguf_vocab: llama.cpp's split regexes,
merges, scores and piece types); here the special tokens llama.cpp matches in raw text become
added tokens, BOS/EOS framing a post-processor, and tokenizer_config.json carries the special
tokens and the chat template."""
from __future__ import annotations

import json
from pathlib import Path

from tinyconvert.checks.tokenizers.gguf_vocab import framing, text_encoder
from tinyconvert.checks.tokenizers.special_tokens import special_tokens
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.tokenizers.sentencepiece_proto import build_sp_model

NORMAL, UNKNOWN, CONTROL, USER_DEFINED = 1, 2, 3, 4
SPACE = "\u2581"                  # SentencePiece's escaped space
ROLE_KEYS = {"bos_token": "bos", "eos_token": "eos", "unk_token": "unknown", "pad_token": "padding"}


def _added(fields: dict) -> list[dict]:
    """Every token llama.cpp matches whole in raw text, as tokenizer.json's added tokens."""
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    out = []
    for tid in sorted(special_tokens(fields).special):
        if tokens[tid]:
            out.append({"id": tid, "content": tokens[tid], "single_word": False, "lstrip": False,
                        "rstrip": False, "normalized": False,
                        "special": int(types[tid]) == CONTROL})
    return out


def _bpe(folder: Path, fields: dict) -> None:
    from tokenizers import AddedToken, processors
    tok = text_encoder(fields).inner.tok
    tok.add_tokens([AddedToken(a["content"], special=a["special"], normalized=False)
                    for a in _added(fields)])
    frame, tokens = framing(fields), fields["tokenizer.ggml.tokens"]
    pieces = [i for i in (frame.bos,) if i is not None]
    ends = [i for i in (frame.eos,) if i is not None]
    if pieces or ends:
        specials = [(tokens[i], i) for i in dict.fromkeys(pieces + ends)]
        single = " ".join([f"{tokens[i]}" for i in pieces] + ["$A"] + [tokens[i] for i in ends])
        pair = single + " " + single.replace("$A", "$B")
        tok.post_processor = processors.TemplateProcessing(single=single, pair=pair,
                                                           special_tokens=specials)
    tok.save(str(folder / "tokenizer.json"))
    for i in set(pieces + ends):        # TemplateProcessing writes them as plain text tokens
        if not any(a["id"] == i for a in _added(fields)):
            raise InputError(f"BOS/EOS token {tokens[i]!r} is not a control token of the file")


def _spm(folder: Path, fields: dict) -> None:
    """The pieces with the file's types: SentencePiece itself keeps user-defined pieces whole
    (llama.cpp's partition does the same; the GGUF writes their U+2581 as spaces, undone here);
    unknown pieces beyond the one unk id become control pieces (SentencePiece allows one)."""
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    scores = fields.get("tokenizer.ggml.scores")
    scores = [0.0] * len(tokens) if scores is None else scores
    ids = {k: int(fields.get(f"tokenizer.ggml.{key}_token_id", dflt)) for k, key, dflt in (
        ("unk", "unknown", 0), ("bos", "bos", 1), ("eos", "eos", 2), ("pad", "padding", -1))}
    pieces = []
    for i, (t, sc, ty) in enumerate(zip(tokens, scores, types)):
        ty = int(ty) if 1 <= int(ty) <= 6 else NORMAL
        if ty == UNKNOWN and i != ids["unk"]:
            ty = CONTROL
        pieces.append((t.replace(" ", SPACE) if ty == USER_DEFINED else t, float(sc), ty))
    if 0 <= ids["unk"] < len(pieces):
        pieces[ids["unk"]] = (*pieces[ids["unk"]][:2], UNKNOWN)
    proto = build_sp_model(pieces, add_dummy_prefix=bool(
        fields.get("tokenizer.ggml.add_space_prefix", True)), special_ids=ids)
    (folder / "tokenizer.model").write_bytes(proto)


WRITERS = {"gpt2": (_bpe, "PreTrainedTokenizerFast"), "llama": (_spm, "LlamaTokenizer")}


def _config(fields: dict, tokenizer_class: str, n_ctx: int | None) -> dict:
    tokens, frame = fields["tokenizer.ggml.tokens"], framing(fields)
    cfg: dict = {"tokenizer_class": tokenizer_class, "clean_up_tokenization_spaces": False,
                 "add_bos_token": frame.bos is not None, "add_eos_token": frame.eos is not None}
    for role, key in ROLE_KEYS.items():
        tid = fields.get(f"tokenizer.ggml.{key}_token_id")
        if tid is not None and 0 <= int(tid) < len(tokens):
            cfg[role] = tokens[int(tid)]
    if fields.get("tokenizer.ggml.model") == "llama":
        # transformers' LlamaTokenizer builds its own pipeline around tokenizer.model: the space
        # prefix llama.cpp adds (or not: Gemma) and no legacy special-token spacing
        cfg.update(add_prefix_space=bool(fields.get("tokenizer.ggml.add_space_prefix", True)),
                   legacy=False)
    if n_ctx:
        cfg["model_max_length"] = int(n_ctx)
    if fields.get("tokenizer.chat_template") is not None:
        cfg["chat_template"] = fields["tokenizer.chat_template"]
    # SentencePiece models carry their user-defined pieces themselves (transformers reads them
    # from tokenizer.model); a second, space-written copy would be a different token to it
    spm = fields.get("tokenizer.ggml.model") == "llama"
    cfg["added_tokens_decoder"] = {str(a["id"]): {k: v for k, v in a.items() if k != "id"}
                                   for a in _added(fields) if a["special"] or not spm}
    return cfg


def write_tokenizer(folder: Path, fields: dict, *, n_ctx: int | None) -> list[str]:
    """Returns the files written."""
    model = fields.get("tokenizer.ggml.model")
    if model not in WRITERS:
        raise InputError(f"gguf2hf cannot rebuild a {model!r} tokenizer (it writes "
                         f"{', '.join(WRITERS)}); the file has no tokenizer it can export")
    write, cls = WRITERS[model]
    write(folder, fields)
    cfg = _config(fields, cls, n_ctx)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False)
                                                  + "\n", encoding="utf-8")
    return [p.name for p in folder.iterdir() if p.name.startswith("tokenizer")]
