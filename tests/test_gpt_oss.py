"""gpt-oss from float checkpoints on tiny seeded models with SmolLM2's real tokenizer: attention
sinks, sliding windows on even layers (window 8 under a 70-token text), YaRN rope, the biased
router (scaled up, with a checked top-k margin) and biased swiglu_oai experts stored fused and
interleaved. Our runtime and llama.cpp against transformers, the converter's bytes and keys, the
mixes against llama-quantize, and configs llama.cpp would not compute.

transformers' gpt-oss default is YaRN with truncate=false (an unfloored correction range);
llama.cpp always truncates, so such a GGUF computes a slightly different model: the main case
sets truncate=true, and one test pins what happens with false."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.support.compare import hf_logits, kld_stats, llamacpp_logits
from tests.support import tiny
from tests.support.families import (converted_like_llamacpp, greedy_like_transformers,
                                     quantized_like_llamacpp, refused, route_margin,
                                     top1_agrees_where_clear, verified_with_transformers_reference)
from tests.test_moe import ids_of
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source
from tinyconvert.runtime.model import prefill_layers

ROUTER = {".router.weight": 6.0}


def yarn(truncate: bool) -> dict:
    return {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
            "truncate": truncate, "original_max_position_embeddings": 64,
            "rope_theta": 150000.0}


BASE = dict(num_local_experts=4, num_experts_per_tok=2, head_dim=16, sliding_window=8,
            max_position_embeddings=2048, rope=yarn(True))


def make(folder, smollm2_hf, **kw) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smollm2_hf / name, folder / name)
    tiny.build_model(folder, "gpt_oss", n_vocab=49152, sharpen=5.0, scales=ROUTER,
                     **{**BASE, **kw})


@pytest.fixture(scope="module")
def model(tmp_path_factory, smollm2_hf):
    folder = tmp_path_factory.mktemp("gpt-oss")
    make(folder, smollm2_hf)
    hf2gguf(str(folder), folder / "ours-f32.gguf", outtype="f32", quiet=True)
    return folder


def test_runtime_and_llamacpp_match_transformers(model, monkeypatch):
    ids = ids_of(model)
    assert len(ids) > 8 * BASE["sliding_window"]          # windows slide
    ref = hf_logits(model, ids)
    gguf_src = open_source(model / "ours-f32.gguf")
    assert route_margin(gguf_src, ids, monkeypatch) > 1e-3, "routing too close to call"
    for src in (open_source(model), gguf_src):
        ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
        assert np.abs(ours - ref).max() < 1e-3, src.kind
    theirs = llamacpp_logits(model / "ours-f32.gguf", ids)
    stats = kld_stats(ref, theirs)
    print(stats)
    assert stats["kld_mean"] < 1e-5, stats
    top1_agrees_where_clear(ref, theirs)


@pytest.mark.parametrize("outtype", ["f32", "bf16"])
def test_bytes_and_keys_match_llamacpp_converter(model, tmp_path, outtype):
    fa, fb = converted_like_llamacpp(model, tmp_path, outtype)
    assert fa == fb


def test_bf16_checkpoint_converts_like_llamacpp(tmp_path, smollm2_hf):
    """The fused experts' transpose and interleave on raw bf16 bits."""
    make(tmp_path, smollm2_hf, dtype="bfloat16", seed=1)
    fa, fb = converted_like_llamacpp(tmp_path, tmp_path, "bf16")
    assert fa == fb


@pytest.fixture(scope="module")
def wide_f32(tmp_path_factory, smollm2_hf):
    """256-wide rows so K-quants fit every expert tensor."""
    folder = tmp_path_factory.mktemp("gpt-oss-q")
    make(folder, smollm2_hf, hidden_size=256, intermediate_size=256, head_dim=64)
    hf2gguf(str(folder), folder / "f32.gguf", outtype="f32", quiet=True)
    return folder


@pytest.mark.parametrize("mix", ["q8_0", "q4_k_m", "q3_k_m", "q2_k"])
def test_mixes_match_llamacpp(wide_f32, tmp_path, mix):
    quantized_like_llamacpp(wide_f32 / "f32.gguf", tmp_path, mix)


def test_untruncated_yarn_reference_is_transformers_and_gguf_is_llamacpp(tmp_path, smollm2_hf,
                                                                       model):
    """truncate=false: the HF reference follows transformers, the GGUF (no key can say it)
    follows llama.cpp, and the two differ visibly at this small original context; the
    conversion says so in a warning (CLI: stderr), and a truncated config gets none."""
    from typer.testing import CliRunner

    from tinyconvert.cli import app
    make(tmp_path, smollm2_hf, rope=yarn(False))
    res = CliRunner().invoke(app, ["hf2gguf", str(tmp_path), "-o", str(tmp_path / "f32.gguf"),
                                   "--outtype", "f32", "--no-verify", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "warning: config.json's YaRN has truncate=false" in res.stderr
    assert "llama.cpp always rounds it" in res.stderr
    truncated = hf2gguf(str(model), tmp_path / "t.gguf", outtype="f32", quiet=True)
    assert not any("truncate" in n for n in truncated.notes)
    ids = ids_of(tmp_path)
    ref, theirs = hf_logits(tmp_path, ids), llamacpp_logits(tmp_path / "f32.gguf", ids)
    hf_src, gguf_src = open_source(tmp_path), open_source(tmp_path / "f32.gguf")
    ours_hf = prefill_layers(hf_src.hparams, hf_src.get, ids).double().numpy()
    ours_gguf = prefill_layers(gguf_src.hparams, gguf_src.get, ids).double().numpy()
    assert np.abs(ours_hf - ref).max() < 1e-3
    assert kld_stats(ours_gguf, theirs)["kld_mean"] < 1e-5
    assert kld_stats(ref, theirs)["kld_mean"] > 1e-3


@pytest.mark.parametrize("kw, match", [
    (dict(layer_types=["full_attention", "sliding_attention"]), "layer_types"),
    (dict(swiglu_limit=5.0), "swiglu_limit"),
])
def test_configs_llamacpp_would_not_compute_are_refused(tmp_path, smollm2_hf, kw, match):
    make(tmp_path, smollm2_hf, **kw)
    refused(tmp_path, match)


def test_run_from_the_gguf_alone_equals_transformers_greedy(model):
    greedy_like_transformers(model, model / "ours-f32.gguf")


def test_verify_with_transformers_reference(model):
    """verify's transformers reference (independent of our architecture table) passes the f32 file."""
    verified_with_transformers_reference(model, model / "ours-f32.gguf")
