"""The bundled runtime against transformers and llama.cpp, and `tinyconvert verify`."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.support.compare import (hf_logits, kld_stats, llamacpp_logits, llamacpp_quantize)
from tinyconvert.cli import app
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.runtime.model import Model, prefill_layers
from tinyconvert.pipeline.sources import open_source
from tinyconvert.checks.tokenizers.tokenizer import tokenizer_for
from tinyconvert.checks.verify import verify


@pytest.fixture(scope="module")
def real(smollm2_hf, tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    hf2gguf(str(smollm2_hf), d / "f32.gguf", outtype="f32", quiet=True)
    hf2gguf(str(smollm2_hf), d / "f16.gguf", outtype="f16", quiet=True)
    return d


@pytest.fixture(scope="module")
def ids(smollm2_hf, sample_text):
    return tokenizer_for(open_source(smollm2_hf)).encode(sample_text)[:256]


def test_runtime_on_hf_matches_transformers(smollm2_hf, ids):
    src = open_source(smollm2_hf)
    ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
    ref = hf_logits(smollm2_hf, ids)
    assert np.abs(ours - ref).max() < 1e-3


def test_runtime_on_f32_gguf_matches_llamacpp(real, ids):
    src = open_source(real / "f32.gguf")
    ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
    stats = kld_stats(llamacpp_logits(real / "f32.gguf", ids), ours)
    assert stats["kld_mean"] < 1e-5, stats


def test_kv_cache_generation_equals_prefill(real, ids):
    src = open_source(real / "f16.gguf")
    model = Model(src.hparams, src.get.all())
    full = model.forward(ids[:40])
    model.reset()
    steps = [model.forward(ids[:30])] + [model.forward([t]) for t in ids[30:40]]
    assert torch.allclose(torch.cat(steps), full, atol=2e-4)


def test_tokenizers_agree_with_transformers(smollm2_hf, real, sample_text):
    from transformers import AutoTokenizer
    want = AutoTokenizer.from_pretrained(smollm2_hf)(sample_text)["input_ids"]
    assert tokenizer_for(open_source(smollm2_hf)).encode(sample_text) == want
    gg = tokenizer_for(open_source(real / "f16.gguf"))
    assert gg.encode(sample_text) == want
    assert gg.decode(want) == sample_text


def test_verify_json_and_pass(smollm2_hf, real):
    res = CliRunner().invoke(app, ["verify", str(smollm2_hf), str(real / "f16.gguf"), "--json",
                                   "--tokens", "256"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("kld_mean", "kld_p99", "kld_max", "top1", "ppl_reference", "ppl_candidate",
                "tokens", "passed"):
        assert key in report
    assert report["passed"] and report["tokens"] == 256
    assert report["kld_mean"] < 1e-4 and report["top1"] > 0.98
    assert len(report["layer_rel_error"]) == 30 and report["vocab_mismatches"] == []


def test_verify_with_gguf_reference(real):
    r = verify(str(real / "f32.gguf"), real / "f16.gguf", tokens=128)
    assert r.passed and r.stats["kld_mean"] < 1e-4


def test_damaged_tensor_fails(smollm2_hf, real, tmp_path):
    """One attention matrix with its bytes shuffled must fail verify (exit 3) and show where."""
    bad = tmp_path / "bad.gguf"
    shutil.copy(real / "f16.gguf", bad)
    g = read_gguf(bad)
    t = next(t for t in g.tensors if t.name == "blk.5.attn_q.weight")
    with open(bad, "r+b") as f:
        f.seek(g.data_start + t.offset)
        data = np.frombuffer(f.read(t.nbytes), dtype=np.uint16).copy()
        np.random.default_rng(0).shuffle(data)
        f.seek(g.data_start + t.offset)
        f.write(data.tobytes())
    res = CliRunner().invoke(app, ["verify", str(smollm2_hf), str(bad), "--tokens", "128"])
    assert res.exit_code == 3, res.output
    assert "FAIL" in res.stdout
    layers = verify(str(smollm2_hf), bad, tokens=64).layers
    assert max(layers[:5]) < 0.01 < layers[5]
    # the weights check (the default after an f16 conversion) names the tensor, from its sample
    from tinyconvert.checks.weights_check import check_weights
    problems = check_weights(str(smollm2_hf), bad).problems()
    assert len(problems) == 1 and problems[0].startswith("tensor blk.5.attn_q.weight: element ["), problems


def test_vocab_mismatch_fails(smollm2_hf, real, tmp_path):
    """A file whose vocabulary splits text differently fails even with perfect weights."""
    from tinyconvert.formats.gguf_file import read_gguf
    bad = tmp_path / "badvocab.gguf"
    shutil.copy(real / "f16.gguf", bad)
    g = read_gguf(bad)
    f = g.fields["tokenizer.ggml.pre"]
    assert f.value == "smollm"
    with open(bad, "r+b") as fh:          # a same-length name that splits digits differently
        fh.seek(f.offset + 8)
        fh.write(b"gpt-4o")
    res = CliRunner().invoke(app, ["verify", str(smollm2_hf), str(bad), "--tokens", "64"])
    assert res.exit_code == 3 and "MISMATCH" in res.stdout
    from tinyconvert.checks.weights_check import check_weights
    problems = check_weights(str(smollm2_hf), bad).problems()
    assert problems and problems[0].startswith("candidate vocabulary tokenizes the text "
                                               "differently"), problems


@pytest.mark.parametrize("engine", ["runtime", "llama.cpp"])
def test_q4_k_m_from_llamacpp(smollm2_hf, real, tmp_path, engine):
    q = tmp_path / "q4km.gguf"
    llamacpp_quantize(real / "f32.gguf", q, 15)
    r = verify(str(smollm2_hf), q, tokens=256, engine=engine)
    assert 0.005 < r.stats["kld_mean"] < 0.15 and r.passed
    if engine == "llama.cpp":       # both numbers: our runtime's beside llama.cpp's
        ours = r.stats["kld_mean_runtime"]
        assert ours == pytest.approx(verify(str(smollm2_hf), q, tokens=256).stats["kld_mean"])
        assert abs(ours - r.stats["kld_mean"]) / r.stats["kld_mean"] < 0.25, r.stats
    else:
        assert "kld_mean_runtime" not in r.stats and "activations" in r.activation_note


def test_bad_input_exit_2(tmp_path, smollm2_hf):
    res = CliRunner().invoke(app, ["verify", str(smollm2_hf), str(tmp_path / "nope.gguf")])
    assert res.exit_code == 2 and res.stderr.startswith("error: ")
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\xff" * 100)
    res = CliRunner().invoke(app, ["verify", str(smollm2_hf), str(tmp_path / "junk.gguf")])
    assert res.exit_code == 2 and "\n" not in res.stderr.strip()


def test_verify_plot(smollm2_hf, real, tmp_path):
    png = tmp_path / "v.png"
    res = CliRunner().invoke(app, ["verify", str(smollm2_hf), str(real / "f16.gguf"),
                                   "--tokens", "64", "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_hf2gguf_ends_with_its_check_line(smollm2_hf, tmp_path):
    """A bf16 file is checked by its weights (sampled rows of every large tensor); --check
    model runs both models as before."""
    res = CliRunner().invoke(app, ["hf2gguf", str(smollm2_hf), "-o", str(tmp_path / "a.gguf"),
                                   "--outtype", "bf16"])
    assert res.exit_code == 0, res.output
    line = res.stdout.strip().splitlines()[-1]
    assert line.startswith("check: weights match the source at bf16/f32 (272 tensors, sampled "
                           "rows), hyper-parameters and tokenizer agree, chat template same"), line
    res = CliRunner().invoke(app, ["quantize", str(tmp_path / "a.gguf"), "-o",
                                   str(tmp_path / "b.gguf"), "-t", "bf16", "--check", "model"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1].startswith("verify: PASS kld_mean=")
    res = CliRunner().invoke(app, ["hf2gguf", str(smollm2_hf), "-o", str(tmp_path / "b.gguf"),
                                   "--outtype", "f16", "--no-verify"])
    assert res.exit_code == 0 and "verify:" not in res.stdout


def test_llamacpp_loads_without_extra_buffer_types(real, tmp_path):
    """Every llama.cpp load goes through open_llama, which turns off the extra buffer types (AMX
    and repacking; they crash on AMX CPUs for quantized files) for that load only."""
    import pathlib
    import re

    import llama_cpp

    from tinyconvert.checks.llamacpp import open_llama
    q = tmp_path / "q8.gguf"
    llamacpp_quantize(real / "f32.gguf", q, 7)
    llm = open_llama(q, n_ctx=64, verbose=False)
    assert llm.model_params.use_extra_bufts is False
    llm.eval([1, 2, 3])
    assert np.isfinite(np.asarray(llm.scores[:3])).all()
    llm.close()
    assert llama_cpp.llama_model_default_params().use_extra_bufts is True   # restored
    root = pathlib.Path(__file__).resolve().parents[1]
    direct = [str(p) for d in ("tinyconvert", "tests") for p in (root / d).rglob("*.py")
              if p.name != "llamacpp.py" and re.search(r"\b" + "Llama" + r"\(", p.read_text())]
    assert direct == [], f"load through open_llama instead: {direct}"


def test_default_limit_passes_llamacpp_q4_0_and_fails_a_wrong_permutation(smollm2_hf, real,
                                                                         tmp_path, monkeypatch):
    """The issue's report: q4_0 of SmolLM2 is byte for byte what llama-quantize writes, so its
    check must pass (exit 0); the same type from a converter that forgets the Q/K permutation
    must fail (exit 3, 'written but failed verify'), by far."""
    runner = CliRunner()
    res = runner.invoke(app, ["quantize", str(real / "f32.gguf"), "-o", str(tmp_path / "q.gguf"),
                              "-t", "q4_0", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "verify: PASS" in res.stdout
    import tinyconvert.pipeline.plan as plan
    monkeypatch.setattr(plan, "permute_qk", lambda w, n_head: w)
    hf2gguf(str(smollm2_hf), tmp_path / "bad-f32.gguf", outtype="f32", quiet=True)
    monkeypatch.undo()
    res = runner.invoke(app, ["quantize", str(tmp_path / "bad-f32.gguf"), "-o",
                              str(tmp_path / "bad.gguf"), "-t", "q4_0", "--quiet"])
    assert res.exit_code == 0, res.output      # its own f32 is its reference: no drift
    report = verify(str(smollm2_hf), tmp_path / "bad.gguf", tokens=128)
    assert not report.passed and report.stats["kld_mean"] > 2 * report.max_kld, report.stats
    res = runner.invoke(app, ["verify", str(smollm2_hf), str(tmp_path / "bad.gguf"),
                              "--tokens", "128"])
    assert res.exit_code == 3 and "FAIL" in res.stdout, res.output
