"""Checks every architecture's tests share: our hf2gguf output against llama.cpp's converter
(tensor bytes and keys), and our quantize against llama-quantize for a mix."""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from tests.support.compare import llamacpp_quantize
from tests.support.llamacpp_src import run_converter

MIXES = ["q8_0", "q6_k", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k"]


def read_gguf_contents(path: Path) -> tuple[dict, dict]:
    """(name -> (type, bytes)) and the keys that are not general.* or GGUF.*."""
    r = gguf.GGUFReader(path)
    tensors = {t.name: (int(t.tensor_type), np.asarray(t.data).tobytes()) for t in r.tensors}
    fields = {k: f.contents() for k, f in r.fields.items()
              if not k.startswith(("general.", "GGUF."))}
    return tensors, fields


def converted_like_llamacpp(folder: Path, tmp: Path, outtype: str) -> tuple[dict, dict]:
    """Converts with both; asserts the same tensor names and bytes; returns both key dicts for
    the caller to compare, with `add_bos_token` dropped where llama.cpp's converter leaves it
    out (ours always says, so llama.cpp's default for the vocabulary kind never decides)."""
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    hf2gguf(str(folder), tmp / "ours.gguf", outtype=outtype, quiet=True)
    run_converter(folder, tmp / "theirs.gguf", outtype)
    (ta, fa), (tb, fb) = read_gguf_contents(tmp / "ours.gguf"), read_gguf_contents(tmp / "theirs.gguf")
    assert sorted(ta) == sorted(tb)
    different = [n for n in ta if ta[n] != tb[n]]
    assert different == [], f"{len(different)} tensors differ, first {different[:3]}"
    if "tokenizer.ggml.add_bos_token" not in fb:
        fa.pop("tokenizer.ggml.add_bos_token", None)
    return fa, fb


def quantized_like_llamacpp(f32: Path, tmp: Path, mix: str) -> None:
    from tests.test_quantize import same_file_contents
    from tinyconvert.pipeline.mixes import RECIPES
    from tinyconvert.pipeline.quantize import quantize
    llamacpp_quantize(f32, tmp / "theirs.gguf", RECIPES[mix][0])
    quantize(f32, tmp / "ours.gguf", qtype=mix, quiet=True)
    same_file_contents(tmp / "ours.gguf", tmp / "theirs.gguf")


def refused(folder: Path, match: str) -> None:
    """hf2gguf refuses the checkpoint with a one-line InputError matching `match`, and leaves
    no output behind."""
    import pytest

    from tinyconvert.formats.errors import InputError
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    with pytest.raises(InputError, match=match):
        hf2gguf(str(folder), folder / "x.gguf", quiet=True)
    assert not (folder / "x.gguf").exists()


def greedy_like_transformers(folder: Path, gguf_path: Path, prompt: str = "The quick brown fox",
                             n: int = 10) -> None:
    """`run` on the GGUF alone (its own tokenizer, the KV cache) gives transformers' greedy
    tokens for the HF checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tinyconvert.checks.generate import generate
    ids = AutoTokenizer.from_pretrained(folder)(prompt, return_tensors="pt")["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    want = model.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=None,
                          pad_token_id=0)[0, ids.shape[1]:].tolist()
    got = generate(str(gguf_path), prompt, max_tokens=n)
    assert got == want[:len(got)] and len(got) >= n // 2, (got, want)
