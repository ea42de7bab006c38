"""gguf2hf on tiny seeded checkpoints of several families (SmolLM2's real byte-level BPE
tokenizer): HF -> GGUF -> HF gives back the original tensors exactly (as transformers loads both
folders), transformers on the exported folder computes what our runtime computes on the GGUF,
the exported tokenizer splits text as llama.cpp does on the GGUF, and a q4_k_m file exports to
weights that transformers runs to the runtime's logits on the q4_k_m file."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.support import layernorm_models, tiny
from tests.support.compare import hf_logits, llamacpp_tokenize
from tinyconvert.export.gguf2hf import gguf2hf
from tinyconvert.formats.errors import InputError
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source
from tinyconvert.runtime.model import prefill_layers

TEXT = ("The quick brown fox, 1234 jumps! def f(x): return x*2  # café 東京 🙂\n"
        "I've been told they'RE here.   Spaces\tand\ttabs. <|im_start|>user\nhi<|im_end|>")
PHI3_LONGROPE = {"rope_type": "longrope", "original_max_position_embeddings": 32,
                 "short_factor": [round(1.0 + 2.0 * i / 7, 4) for i in range(8)],
                 "long_factor": [round(1.0 + 39.0 * (i / 7) ** 2, 4) for i in range(8)]}
MOE = dict(num_experts_per_tok=2, moe_intermediate_size=32)
# family -> (tiny.build_model arch, its keyword arguments, hf2gguf outtype). Gemma's norms get +1
# at conversion: exact to undo for bf16 weights (f32 ones would lose their low bits to the +1).
CASES = {
    "llama": ("llama", {}, "f32"),
    "qwen3": ("qwen3", dict(tie=True), "f32"),        # tied: the GGUF has no output.weight
    "olmo2": ("olmo2", {}, "f32"),
    "granite": ("granite", dict(embedding_multiplier=3.0, residual_multiplier=0.4,
                                attention_multiplier=0.2, logits_scaling=2.5), "f32"),
    "phi3": ("phi3", {}, "f32"),
    # Phi-4-mini-like LongRoPE: factor tensors back into rope_parameters; orig 32 is below the
    # text, so the long factors are the ones that compute
    "phi3-longrope": ("phi3", dict(rope=PHI3_LONGROPE, original_max_position_embeddings=32,
                                   max_position_embeddings=4096), "f32"),
    "gemma3": ("gemma3", dict(dtype="bfloat16"), "bf16"),
    "mixtral": ("mixtral", dict(num_local_experts=4, num_experts_per_tok=2), "f32"),
    "qwen2moe": ("qwen2moe", dict(num_experts=4, shared_expert_intermediate_size=48, **MOE), "f32"),
    # LayerNorm families (tests.support.layernorm_models): partial rotary, biases everywhere
    "phi2": ("ln:phi2", {}, "f32"),
    "starcoder2": ("ln:starcoder2", {}, "f32"),
}


def _tokenizer(folder, smollm2_hf) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smollm2_hf / name, folder / name)


def _ids(folder) -> list[int]:
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(folder)(TEXT)["input_ids"]


def _state(folder) -> dict:
    """The tensors as transformers loads them (per-expert or fused files alike)."""
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _runtime_logits(gguf_path, ids) -> np.ndarray:
    src = open_source(gguf_path)
    return prefill_layers(src.hparams, src.get, ids).double().numpy()


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory, smollm2_hf):
    arch, kw, outtype = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    hf = folder / "hf"
    hf.mkdir()
    if arch.startswith("ln:"):
        layernorm_models.build(hf, arch[3:], smollm2_hf)
    else:
        _tokenizer(hf, smollm2_hf)
        tiny.build_model(hf, arch, n_vocab=49152, sharpen=5.0, **kw)
    hf2gguf(str(hf), folder / "m.gguf", outtype=outtype, quiet=True)
    # a small shard limit: the export is several shards with an index, as big models are
    res = gguf2hf(folder / "m.gguf", folder / "out", max_shard_size="4MB", quiet=True)
    return request.param, hf, folder / "m.gguf", res


def test_round_trip_returns_the_original_tensors(exported):
    import torch
    name, hf, _, res = exported
    assert res.dtype == CASES[name][2] and len(res.shards) > 1
    index = json.loads((res.path / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == res.shards
    a, b = _state(hf), _state(res.path)
    assert sorted(a) == sorted(b)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, (name, differ[:5])


def test_transformers_on_export_computes_what_runtime_computes_on_gguf(exported):
    name, _, gguf_path, res = exported
    ids = _ids(res.path)
    assert len(ids) > 40
    ours, theirs = _runtime_logits(gguf_path, ids), hf_logits(res.path, ids)
    assert np.abs(ours - theirs).max() < 1e-3 * max(1.0, np.abs(ours).max()), name


def test_exported_tokenizer_splits_as_llamacpp(exported):
    _, _, gguf_path, res = exported
    assert _ids(res.path) == llamacpp_tokenize(gguf_path, TEXT)


def test_refuses_a_vocabulary_it_cannot_rebuild(tmp_path, smollm2_hf):
    """A WordPiece (BERT) vocabulary has no tokenizer writer: one line naming it, and no
    output folder."""
    from tinyconvert.edit.metaedit import apply_edits, make_set
    from tinyconvert.formats.gguf_file import read_gguf
    _tokenizer(tmp_path, smollm2_hf)
    tiny.build_model(tmp_path, "llama", n_vocab=49152)
    gguf_path = tmp_path / "bert-vocab.gguf"
    hf2gguf(str(tmp_path), gguf_path, outtype="f32", quiet=True)
    apply_edits(gguf_path, [make_set(read_gguf(gguf_path), "tokenizer.ggml.model", "bert")])
    with pytest.raises(InputError, match="cannot rebuild a 'bert' tokenizer"):
        gguf2hf(gguf_path, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192, "rope_theta": 500000.0}


def _llama3_gguf(folder, smollm2_hf, rope: dict):
    _tokenizer(folder, smollm2_hf)
    tiny.build_model(folder, "llama", n_vocab=49152, sharpen=5.0, rope=rope,
                     max_position_embeddings=16384)
    hf2gguf(str(folder), folder / "m.gguf", outtype="f32", quiet=True)
    return folder / "m.gguf"


def test_llama3_rope_freqs_become_rope_scaling(tmp_path, smollm2_hf):
    """rope_freqs (computed by the converter) becomes llama3 rope scaling in config.json, proved
    by hf2gguf remaking the same tensor; transformers then computes the file's logits."""
    gguf_path = _llama3_gguf(tmp_path, smollm2_hf, LLAMA3)
    res = gguf2hf(gguf_path, tmp_path / "out", quiet=True)
    assert json.loads((res.path / "config.json").read_text())["rope_parameters"] == LLAMA3
    ids = _ids(res.path)
    ours, theirs = _runtime_logits(gguf_path, ids), hf_logits(res.path, ids)
    assert np.abs(ours - theirs).max() < 1e-3 * max(1.0, np.abs(ours).max())


def test_llama3_rope_freqs_it_cannot_recover_are_refused(tmp_path, smollm2_hf):
    """Parameters no released Llama 3 config has: one line, no output folder."""
    gguf_path = _llama3_gguf(tmp_path, smollm2_hf, {**LLAMA3, "low_freq_factor": 2.0})
    with pytest.raises(InputError, match="rope_freqs.weight' is not what any config"):
        gguf2hf(gguf_path, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()
