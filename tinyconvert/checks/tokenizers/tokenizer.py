"""Text to ids and back for verify and run: from an HF folder's own tokenizer files, or rebuilt
from a GGUF file's vocabulary as llama.cpp tokenizes it (checks/tokenizers/gguf_vocab.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tinyconvert.formats.errors import InputError


@dataclass
class Tokenizer:
    backend: object                 # tokenizers.Tokenizer or sentencepiece.SentencePieceProcessor
    add_bos: bool
    bos_id: int | None
    eos_ids: set[int] = field(default_factory=set)
    chat_template: str | None = None
    bos_in_backend: bool = False    # the backend's post-processor adds BOS itself
    eos_append: int | None = None   # appended to encoded text (a GGUF's add_eos_token)

    def encode(self, text: str, add_special: bool = True) -> list[int]:
        """add_special=False for text that already holds its special tokens (a chat template)."""
        if hasattr(self.backend, "encode_as_ids"):
            ids = list(self.backend.encode_as_ids(text))
        else:
            ids = self.backend.encode(text, add_special_tokens=add_special and self.bos_in_backend).ids
        if add_special and self.add_bos and self.bos_id is not None and not self.bos_in_backend:
            ids = [self.bos_id] + ids
        if add_special and self.eos_append is not None:
            ids = ids + [self.eos_append]
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


def gguf_tokenizer(fields: dict, encoder=None) -> Tokenizer:
    """A tokenizer rebuilt from the file's own vocabulary, tokenizing as llama.cpp does
    (checks/tokenizers/gguf_vocab.py): SentencePiece for `llama`, byte-level BPE for `gpt2`.
    encoder: text_encoder(fields), when the caller has built it already."""
    from tinyconvert.checks.tokenizers.gguf_vocab import framing, text_encoder
    frame = framing(fields)
    bos = fields.get("tokenizer.ggml.bos_token_id")
    eos_ids = {fields[k] for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")
               if k in fields}
    return Tokenizer(encoder or text_encoder(fields), frame.bos is not None,
                     frame.bos if frame.bos is not None else bos, eos_ids,
                     fields.get("tokenizer.chat_template"), eos_append=frame.eos)


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
