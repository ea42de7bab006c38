"""OLMo 2 / OLMo 3, SmolLM3 and Granite on tiny seeded checkpoints with SmolLM2's real byte-level
BPE tokenizer (one llama.cpp's converter recognises): our runtime against transformers, llama.cpp
on our file against transformers (SiLU models: mean KLD < 1e-5), the converter's bytes and keys,
every mix against llama-quantize, and the configs llama.cpp would silently compute differently."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.support import tiny
from tests.support.families import (MIXES, converted_like_llamacpp, quantized_like_llamacpp,
                                     verified_with_transformers_reference)
from tests.support.compare import hf_logits, kld_stats, llamacpp_logits
from tinyconvert.formats.errors import InputError
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source
from tinyconvert.runtime.model import prefill_layers

TEXT = ("The quick brown fox, 1234 jumps! def f(x): return x*2  # café 東京 🙂\n"
        "I've been told they'RE here.   Spaces\tand\ttabs. Numbers: 12,345.67 and 2024-11-23.")
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
        "rope_theta": 10000.0}
CASES = {
    "olmo2": ("olmo2", {}),
    "olmo3-swa-yarn": ("olmo3", dict(sliding_window=8, num_hidden_layers=4, rope=YARN)),
    "smollm3-nope": ("smollm3", dict(num_hidden_layers=4, tie=True, pad_token_id=2)),
    "granite-multipliers": ("granite", dict(embedding_multiplier=3.0, residual_multiplier=0.4,
                                            attention_multiplier=0.2, logits_scaling=2.5)),
}


def copy_tokenizer(folder, smollm2_hf) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(smollm2_hf / name, folder / name)


def ids_of(folder) -> list[int]:
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(folder)(TEXT)["input_ids"]


@pytest.fixture(scope="module", params=sorted(CASES))
def family(request, tmp_path_factory, smollm2_hf):
    arch, kw = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    copy_tokenizer(folder, smollm2_hf)
    tiny.build_model(folder, arch, n_vocab=49152, sharpen=5.0, **kw)
    hf2gguf(str(folder), folder / "ours-f32.gguf", outtype="f32", quiet=True)
    return request.param, folder


def test_runtime_and_llamacpp_match_transformers(family):
    name, folder = family
    ids = ids_of(folder)
    assert len(ids) > 40
    ref = hf_logits(folder, ids)
    for src in (open_source(folder), open_source(folder / "ours-f32.gguf")):
        ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
        assert np.abs(ours - ref).max() < 1e-3, (name, src.kind)
    stats = kld_stats(ref, llamacpp_logits(folder / "ours-f32.gguf", ids))
    print(name, stats)
    assert stats["kld_mean"] < 1e-5 and stats["top1"] == 1.0, stats


@pytest.mark.parametrize("outtype", ["f16", "bf16"])
def test_bytes_and_keys_match_llamacpp_converter(family, tmp_path, outtype):
    name, folder = family
    fa, fb = converted_like_llamacpp(folder, tmp_path, outtype)
    assert fa == fb


@pytest.fixture(scope="module", params=[256, 320])
def olmo2_f32(request, tmp_path_factory, smollm2_hf):
    """Rows of 256 (K-quants fit) and of 320 (they fall back)."""
    n = request.param
    folder = tmp_path_factory.mktemp(f"olmo2q{n}")
    copy_tokenizer(folder, smollm2_hf)
    tiny.build_model(folder, "olmo2", n_vocab=49152, hidden_size=n, intermediate_size=2 * n,
                     num_hidden_layers=4)
    hf2gguf(str(folder), folder / "f32.gguf", outtype="f32", quiet=True)
    return folder


@pytest.mark.parametrize("mix", MIXES)
def test_mixes_match_llamacpp(olmo2_f32, tmp_path, mix):
    quantized_like_llamacpp(olmo2_f32 / "f32.gguf", tmp_path, mix)


@pytest.mark.parametrize("arch, kw, match", [
    ("smollm3", dict(num_hidden_layers=4, no_rope_layers=[1, 0, 1, 1], pad_token_id=2),
     "no_rope_layers"),
    ("granite", dict(head_dim=32), "head_dim"),
    ("olmo2", dict(tie=True), "output.weight"),
])
def test_configs_llamacpp_would_compute_differently_are_refused(tmp_path, smollm2_hf, arch, kw,
                                                                 match):
    copy_tokenizer(tmp_path, smollm2_hf)
    tiny.build_model(tmp_path, arch, n_vocab=49152, **kw)
    with pytest.raises(InputError, match=match):
        hf2gguf(str(tmp_path), tmp_path / "x.gguf", quiet=True)
    assert not (tmp_path / "x.gguf").exists()


def test_verify_with_transformers_reference(family):
    """verify's transformers reference (independent of our architecture table) passes the f32 file."""
    name, folder = family
    verified_with_transformers_reference(folder, folder / "ours-f32.gguf")
