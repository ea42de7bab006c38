"""quantize: every mix gives llama.cpp's tensor types and bytes (llama_model_quantize, no
importance matrix) on a tiny llama with 256-multiple rows and on the real SmolLM2 (whose 576-wide
rows exercise the fallbacks); one-step HF -> mix; options; grouped INT8; bad input."""
from __future__ import annotations

import ctypes

import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.support.compare import llamacpp_quantize
from tests.test_quant_exact import _spice
from tests.test_tiny_models import make_tokenizer
from tinyconvert.cli import app
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.recipes.mixes import RECIPES, Options
from tinyconvert.pipeline.quantize import quantize
from tinyconvert.checks.verify import verify

MIXES = ["q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k",
         "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "iq4_nl", "tq1_0", "tq2_0"]


def same_file_contents(ours, theirs) -> None:
    a, b = read_gguf(ours), read_gguf(theirs)
    ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
    assert sorted(ta) == sorted(tb)
    wrong_type = [n for n in ta if ta[n].ggml_type != tb[n].ggml_type]
    assert wrong_type == [], f"types differ: {[(n, ta[n].ggml_type, tb[n].ggml_type) for n in wrong_type[:4]]}"
    wrong = [n for n in ta if a.tensor_bytes(ta[n]).tobytes() != b.tensor_bytes(tb[n]).tobytes()]
    assert wrong == [], f"{len(wrong)} tensors differ, first {wrong[:3]}"
    assert a.value("general.file_type") == b.value("general.file_type")
    assert a.value("tokenizer.ggml.tokens") == b.value("tokenizer.ggml.tokens")


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory):
    d = tmp_path_factory.mktemp("qmix")
    make_tokenizer(d, "gpt-2")
    tiny.build_model(d, "llama", hidden_size=256, intermediate_size=512, num_hidden_layers=16,
                     n_kv_head=1)
    _spice(d / "model.safetensors")
    hf2gguf(str(d), d / "f32.gguf", outtype="f32", quiet=True)
    return d


@pytest.mark.parametrize("mix", MIXES)
def test_mix_matches_llamacpp(tiny_f32, tmp_path, mix):
    theirs = tmp_path / "theirs.gguf"
    llamacpp_quantize(tiny_f32 / "f32.gguf", theirs, RECIPES[mix][0])
    res = quantize(tiny_f32 / "f32.gguf", tmp_path / "ours.gguf", qtype=mix, quiet=True)
    same_file_contents(tmp_path / "ours.gguf", theirs)
    assert res.bytes_out == (tmp_path / "ours.gguf").stat().st_size


@pytest.fixture(scope="module")
def real_f32(smollm2_hf, tmp_path_factory):
    d = tmp_path_factory.mktemp("qreal")
    hf2gguf(str(smollm2_hf), d / "f32.gguf", outtype="f32", quiet=True)
    return d


@pytest.mark.parametrize("mix", ["q4_k_m", "q8_0", "q6_k", "q3_k_m"])
def test_real_model_matches_llamacpp(real_f32, tmp_path, mix):
    theirs = tmp_path / "theirs.gguf"
    llamacpp_quantize(real_f32 / "f32.gguf", theirs, RECIPES[mix][0])
    res = quantize(real_f32 / "f32.gguf", tmp_path / "ours.gguf", qtype=mix, quiet=True,
                   threads=2)
    same_file_contents(tmp_path / "ours.gguf", theirs)
    if mix == "q4_k_m":
        assert len(res.fallbacks) == 180      # 576-wide rows: q4_k -> q5_0, q6_k -> q8_0


def test_one_step_from_hf_equals_two_steps(smollm2_hf, real_f32, tmp_path):
    a = quantize(str(smollm2_hf), tmp_path / "a.gguf", qtype="q4_0", quiet=True)
    quantize(real_f32 / "f32.gguf", tmp_path / "b.gguf", qtype="q4_0", quiet=True)
    fa, fb = read_gguf(a.path), read_gguf(tmp_path / "b.gguf")
    tb = {t.name: t for t in fb.tensors}
    for t in fa.tensors:
        assert fa.tensor_bytes(t).tobytes() == fb.tensor_bytes(tb[t.name]).tobytes(), t.name
    assert fa.value("general.file_type") == 2
    res = CliRunner().invoke(app, ["hf2gguf", str(smollm2_hf), "-o", str(tmp_path / "c.gguf"),
                                   "--outtype", "q4_k_m"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1].startswith("verify: PASS")


def test_options_match_llamacpp(tiny_f32, tmp_path):
    import llama_cpp
    theirs = tmp_path / "theirs.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread = RECIPES["q4_k_m"][0], 2
    params.output_tensor_type = 8           # GGML_TYPE_Q8_0
    params.token_embedding_type = 14        # GGML_TYPE_Q6_K
    assert llama_cpp.llama_model_quantize(str(tiny_f32 / "f32.gguf").encode(),
                                          str(theirs).encode(), ctypes.byref(params)) == 0
    quantize(tiny_f32 / "f32.gguf", tmp_path / "ours.gguf", qtype="q4_k_m", quiet=True,
             options=Options(output_tensor_type="q8_0", token_embedding_type="q6_k"))
    same_file_contents(tmp_path / "ours.gguf", theirs)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread, params.quantize_output_tensor = RECIPES["q5_k_m"][0], 2, False
    assert llama_cpp.llama_model_quantize(str(tiny_f32 / "f32.gguf").encode(),
                                          str(theirs).encode(), ctypes.byref(params)) == 0
    quantize(tiny_f32 / "f32.gguf", tmp_path / "ours.gguf", qtype="q5_k_m", quiet=True,
             options=Options(leave_output_tensor=True))
    same_file_contents(tmp_path / "ours.gguf", theirs)


def test_tensor_type_overrides_and_pure(tiny_f32, tmp_path):
    res = quantize(tiny_f32 / "f32.gguf", tmp_path / "o.gguf", qtype="q4_k_m", quiet=True,
                   options=Options(tensor_types=((r"blk\.(0|1)\.ffn_down", "q8_0"),
                                                 ("attn_q", "q5_0"))))
    types = {t.name: t.ggml_type for t in read_gguf(res.path).tensors}
    assert types["blk.0.ffn_down.weight"] == 8 and types["blk.1.ffn_down.weight"] == 8
    assert types["blk.2.ffn_down.weight"] != 8 and types["blk.5.attn_q.weight"] == 6
    res = quantize(tiny_f32 / "f32.gguf", tmp_path / "p.gguf", qtype="q4_k_m", quiet=True,
                   options=Options(pure=True))
    types = {t.name: t.ggml_type for t in read_gguf(res.path).tensors}
    assert {v for k, v in types.items() if not k.endswith("norm.weight")} == {12}


def test_grouped_int8_runs_in_runtime(real_f32, smollm2_hf, tmp_path):
    res = CliRunner().invoke(app, ["quantize", str(real_f32 / "f32.gguf"), "-o",
                                   str(tmp_path / "i8.gguf"), "-b", "8", "--group-size", "64"])
    assert res.exit_code == 0, res.output
    assert "llama.cpp CANNOT run this file" in res.stderr
    f = read_gguf(tmp_path / "i8.gguf")
    assert f.value("tinyconvert.int8.group_size") == 64
    t = {t.name: t for t in f.tensors}
    assert t["blk.0.ffn_up.weight"].ggml_type == 24 and t["blk.0.ffn_up.weight.scale"].ne == (9, 1536)
    r = verify(str(smollm2_hf), tmp_path / "i8.gguf", tokens=128)
    assert r.passed and r.stats["kld_mean"] < 0.01


@pytest.mark.parametrize("args,message", [
    (["-t", "q9_k"], "unknown type 'q9_k'; valid:"),
    (["-b", "8", "--group-size", "256"], "does not divide the row length 576"),
    (["-b", "3"], "-b 3 is not supported"),
    (["-t", "q4_0", "-b", "4"], "exactly one of"),
    (["-t", "q4_0", "--output-tensor-type", "q7"], "unknown quant type 'q7'"),
])
def test_bad_options(real_f32, tmp_path, args, message):
    res = CliRunner().invoke(app, ["quantize", str(real_f32 / "f32.gguf"), "-o",
                                   str(tmp_path / "x.gguf"), *args])
    assert res.exit_code == 2 and message in res.stderr, res.stderr
    assert not (tmp_path / "x.gguf").exists()


def test_requantize_needs_the_flag(real_f32, tmp_path):
    q = tmp_path / "q.gguf"
    quantize(real_f32 / "f32.gguf", q, qtype="q8_0", quiet=True)
    res = CliRunner().invoke(app, ["quantize", str(q), "-o", str(tmp_path / "x.gguf"), "-t",
                                   "q4_0"])
    assert res.exit_code == 2 and "--allow-requantize" in res.stderr
    res = CliRunner().invoke(app, ["quantize", str(q), "-o", str(tmp_path / "x.gguf"), "-t",
                                   "q4_0", "--allow-requantize", "--no-verify"])
    assert res.exit_code == 0 and "dequantized and requantized" in res.stderr


def test_truncated_input(real_f32, tmp_path):
    bad = tmp_path / "t.gguf"
    bad.write_bytes((real_f32 / "f32.gguf").read_bytes()[:50_000_000])
    res = CliRunner().invoke(app, ["quantize", str(bad), "-o", str(tmp_path / "x.gguf"), "-t",
                                   "q4_0"])
    assert res.exit_code == 2 and "truncated" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.gguf"]


PURE = {"q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9, "q2_k": 10, "q3_k": 12, "q4_k": 15,
        "q5_k": 17, "q6_k": 18, "iq4_nl": 25, "tq1_0": 36, "tq2_0": 37}  # q3_k etc: _m ids


@pytest.mark.parametrize("qname", sorted(PURE))
def test_real_model_every_type_pure(real_f32, tmp_path, qname):
    """Every type, one for all tensors, on the real SmolLM2 weights: the 1536-wide ffn_down rows
    take 256-block types, the 576-wide rest falls back exactly as llama.cpp does."""
    theirs = tmp_path / "theirs.gguf"
    llamacpp_quantize(real_f32 / "f32.gguf", theirs, PURE[qname], pure=True)
    quantize(real_f32 / "f32.gguf", tmp_path / "ours.gguf", qtype=qname, quiet=True,
             options=Options(pure=True))
    same_file_contents(tmp_path / "ours.gguf", theirs)
    types = {t.ggml_type for t in read_gguf(tmp_path / "ours.gguf").tensors}
    from tinyconvert.quant import get_qtype
    assert get_qtype(qname).ggml_id in types
