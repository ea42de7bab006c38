"""Independent oracles: transformers for what an HF checkpoint computes and how its tokenizer
splits text; llama.cpp (llama-cpp-python) for what a GGUF file means."""
from __future__ import annotations

import gc
from pathlib import Path

import numpy as np

from tinyconvert.checks.llamacpp import open_llama


def hf_logits(folder: Path, ids: list[int]) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        out = model(torch.tensor([ids])).logits[0].double().numpy()
    del model
    gc.collect()
    return out


def llamacpp_logits(gguf_path: Path, ids: list[int]) -> np.ndarray:
    llm = open_llama(gguf_path, n_ctx=max(64, len(ids)), n_batch=max(64, len(ids)),
                logits_all=True, verbose=False, n_threads=2)
    llm.eval(ids)
    out = np.array(llm.scores[: len(ids)], dtype=np.float64)
    llm.close()
    del llm
    gc.collect()
    return out


def llamacpp_tokenize(gguf_path: Path, text: str, *, add_bos: bool = True,
                      special: bool = True) -> list[int]:
    llm = open_llama(gguf_path, vocab_only=True, verbose=False)
    ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)
    llm.close()
    return ids


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def kld_stats(ref: np.ndarray, cand: np.ndarray) -> dict:
    lp, lq = log_softmax(ref), log_softmax(cand)
    kld = (np.exp(lp) * (lp - lq)).sum(-1)
    return {"kld_mean": float(kld.mean()), "kld_max": float(kld.max()),
            "top1": float((ref.argmax(-1) == cand.argmax(-1)).mean()),
            "max_abs": float(np.abs(ref - cand).max())}


def llamacpp_quantize(src: Path, dst: Path, ftype: int, *, pure: bool = False,
                      threads: int = 2, allow_requantize: bool = False) -> None:
    """llama.cpp's own quantizer (llama_model_quantize) on a GGUF file. ftype is llama.cpp's
    LlamaFileType number (7 q8_0, 2 q4_0, 15 q4_k_m, ...)."""
    import ctypes

    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    params.pure = pure
    params.allow_requantize = allow_requantize
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                        ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize failed with {rc}")
