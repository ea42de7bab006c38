"""The weights check that ends a float conversion (checks/weights_check.py, --check): it passes a
right file without importing torch, and fails (exit 3, the file kept) a file whose tensor bytes,
hyperparameter keys or token texts differ from the source, naming what differs."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tinyconvert.checks.weights_check import check_weights
from tinyconvert.checks.weights_sample import sample_rows
from tinyconvert.cli import app
from tinyconvert.formats.gguf_file import read_gguf


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tokenizers import pre_tokenizers as p
    folder = tmp_path_factory.mktemp("llama")
    tiny.train_bpe(folder, [p.ByteLevel(add_prefix_space=False, use_regex=True)])
    tiny.build_model(folder, "llama", sharpen=5.0)
    return folder


@pytest.fixture(scope="module")
def f16(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("f16") / "m.gguf"
    res = CliRunner().invoke(app, ["hf2gguf", str(model), "-o", str(out), "--outtype", "f16",
                                   "--no-verify"])
    assert res.exit_code == 0, res.output
    return out


def test_f16_conversion_passes_without_torch_or_transformers(model, tmp_path):
    """In a fresh process: convert, check (auto -> weights), then neither module was loaded."""
    out = tmp_path / "a.gguf"
    code = ("import sys, json\nfrom typer.testing import CliRunner\n"
            "from tinyconvert.cli import app\n"
            f"r = CliRunner().invoke(app, ['hf2gguf', {str(model)!r}, '-o', {str(out)!r}, "
            "'--outtype', 'f16'])\n"
            "print(json.dumps([r.exit_code, r.stdout, 'torch' in sys.modules, "
            "'transformers' in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    code, stdout, torch_loaded, transformers_loaded = json.loads(proc.stdout.splitlines()[-1])
    assert code == 0, stdout
    line = stdout.strip().splitlines()[-1]
    assert line.startswith("check: weights match the source at f16/f32 (21 tensors, every "
                           "element), hyper-parameters and tokenizer agree"), line
    assert "KL divergence" in line
    assert not torch_loaded and not transformers_loaded


def test_json_fields(model, tmp_path):
    res = CliRunner().invoke(app, ["hf2gguf", str(model), "-o", str(tmp_path / "b.gguf"),
                                   "--outtype", "bf16", "--json"])
    assert res.exit_code == 0, res.output
    v = json.loads(res.stdout.strip().splitlines()[-1])["verify"]
    assert v["check"] == "weights" and v["passed"] and v["kld_measured"] is False
    tensors = read_gguf(tmp_path / "b.gguf").tensors
    names = {0: "f32", 30: "bf16"}
    assert v["types"] == {k: sum(names[t.ggml_type] == k for t in tensors) for k in names.values()}
    assert v["tensors"] == len(tensors) == 21 and v["types"]["bf16"] > 0
    n = sum(t.n_elements for t in tensors)
    assert v["elements_compared"] == n and v["tensors_sampled"] == 0 and v["mismatches"] == []


def _copy(src, dst, edit):
    shutil.copy(src, dst)
    f = read_gguf(dst)
    with open(dst, "r+b") as fh:
        edit(f, fh)
    return dst


def _swap_rows(name, a, b):
    def edit(f, fh):
        t = next(t for t in f.tensors if t.name == name)
        row = t.nbytes // (t.n_elements // t.ne[0])
        base = f.data_start + t.offset
        fh.seek(base + a * row)
        ra = fh.read(row)
        fh.seek(base + b * row)
        rb = fh.read(row)
        assert ra != rb
        fh.seek(base + a * row)
        fh.write(rb)
        fh.seek(base + b * row)
        fh.write(ra)
    return edit


def _token_text(pick):
    """Replace one token's text (pick(tokens) -> it) by its reverse, which the vocabulary
    lacks."""
    def edit(f, fh):
        tokens = f.value("tokenizer.ggml.tokens")
        text = pick(tokens)
        assert text[::-1] not in tokens
        fh.seek(0)
        data = fh.read()
        needle = struct.pack("<Q", len(text.encode())) + text.encode()
        assert data.count(needle) == 1
        fh.seek(data.index(needle) + 8)
        fh.write(text[::-1].encode())
    return edit


def _merged(tokens):
    return next(t for t in tokens if len(t) == 4 and t.isascii() and t.isalpha())


def _set(key, value, vtype="f32"):
    def make(src, dst):
        res = CliRunner().invoke(app, ["set-metadata", str(src), key, value, "--type", vtype,
                                       "-o", str(dst)])
        assert res.exit_code == 0, res.output
        return dst
    return make


BROKEN = {
    # name: (how the file is broken, what the failure must name)
    "rows swapped": (lambda s, d: _copy(s, d, _swap_rows("blk.1.ffn_up.weight", 3, 7)),
                     "tensor blk.1.ffn_up.weight: element [3, "),
    "rope base": (_set("llama.rope.freq_base", "500000"), "key llama.rope.freq_base"),
    "norm epsilon": (_set("llama.attention.layer_norm_rms_epsilon", "1e-6"),
                     "key llama.attention.layer_norm_rms_epsilon"),
    # a token no text or merge uses: only the token texts show it
    "special token text": (lambda s, d: _copy(s, d, _token_text(lambda t: "<|endoftext|>")),
                           "token 0: '>|txetfodne|<' in the file"),
    # a merge's result: the file's tokenizer cannot be built any more
    "merged token text": (lambda s, d: _copy(s, d, _token_text(_merged)),
                          "the file's vocabulary cannot be rebuilt into a tokenizer"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_file_fails_naming_what_differs(model, f16, tmp_path, case):
    make, named = BROKEN[case]
    bad = make(f16, tmp_path / "bad.gguf")
    report = check_weights(str(model), bad)
    assert not report.passed
    assert any(named in p for p in report.problems()), report.problems()
    assert report.summary_line().startswith("check: FAIL")


def test_undone_qk_permute_fails_through_the_cli_and_the_file_stays(model, tmp_path,
                                                                   monkeypatch):
    """A converter that forgets llama's Q/K permutation: written, exit 3, attn_q named."""
    import tinyconvert.checks.weights_check as wc
    import tinyconvert.pipeline.plan as plan
    real = plan.permute_qk
    monkeypatch.setattr(plan, "permute_qk", lambda w, n_head: w)
    hf_reference = wc._hf_reference
    # the reference reads the checkpoint through the right plan
    monkeypatch.setattr(wc, "_hf_reference", lambda *a: (
        setattr(plan, "permute_qk", real), hf_reference(*a))[1])
    out = tmp_path / "p.gguf"
    res = CliRunner().invoke(app, ["hf2gguf", str(model), "-o", str(out), "--outtype", "f16"])
    assert res.exit_code == 3, res.output
    assert out.is_file()
    assert "tensor blk.0.attn_q.weight: element [" in res.stderr, res.stderr


def test_check_model_runs_the_model(model, tmp_path):
    res = CliRunner().invoke(app, ["hf2gguf", str(model), "-o", str(tmp_path / "m.gguf"),
                                   "--outtype", "f16", "--check", "model", "--json"])
    assert res.exit_code == 0, res.output
    v = json.loads(res.stdout.strip().splitlines()[-1])["verify"]
    assert v["check"] == "model" and v["kld_mean"] < 1e-3 and v["top1"] > 0.9


def test_quantized_output_uses_the_model_check_under_auto(f16, tmp_path):
    res = CliRunner().invoke(app, ["quantize", str(f16), "-o", str(tmp_path / "q.gguf"),
                                   "-t", "q4_k_m", "--json"])
    assert res.exit_code == 0, res.output
    v = json.loads(res.stdout.strip().splitlines()[-1])["verify"]
    assert v["check"] == "model" and "kld_mean" in v


def test_gguf_reference_and_gguf2hf(f16, tmp_path):
    """quantize to f32 is checked against the input GGUF; gguf2hf runs the model (its folder,
    the reference, rounds the file's f32 norms to f16: the weights check fails it, rightly)."""
    res = CliRunner().invoke(app, ["quantize", str(f16), "-o", str(tmp_path / "f32.gguf"),
                                   "-t", "f32", "--json"])
    assert res.exit_code == 0, res.output
    v = json.loads(res.stdout.strip().splitlines()[-1])["verify"]
    assert v["check"] == "weights" and v["passed"] and v["types"] == {"f32": 21}
    res = CliRunner().invoke(app, ["gguf2hf", str(f16), "-o", str(tmp_path / "hf"), "--json"])
    assert res.exit_code == 0, res.output
    v = json.loads(res.stdout.strip().splitlines()[-1])["verify"]
    assert v["check"] == "model" and v["passed"]
    assert not check_weights(str(tmp_path / "hf"), f16).passed


@pytest.mark.parametrize("args, message", [
    (["hf2gguf", "--check", "fast"], "unknown --check 'fast'; valid: auto, weights, model"),
    (["hf2gguf", "--check", "weights", "--outtype", "q8_0"], "--check weights needs an f32/f16/bf16"),
    (["hf2gguf", "--check", "weights", "-t", "f16", "-t", "q8_0"], "--check weights takes one type"),
    (["quantize", "--check", "weights", "-b", "8"], "--check weights needs an f32/f16/bf16 output, "
                                                     "not -b 8"),
])
def test_bad_check_options_are_one_line_before_writing(model, tmp_path, args, message):
    res = CliRunner().invoke(app, [args[0], str(model), "-o", str(tmp_path / "x.gguf"), *args[1:]])
    assert res.exit_code == 2 and message in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_sample_rows_spread_bounded_and_whole_when_small():
    idx = sample_rows(49152, 576)
    assert idx[0] == 0 and idx[-1] == 49151 and np.all(np.diff(idx) > 0)
    assert 60_000 <= len(idx) * 576 <= 70_000
    assert np.array_equal(idx, sample_rows(49152, 576))
    # permuted Q/K tensors are sampled in whole heads of 64 rows
    q = sample_rows(576, 576, 64)
    assert len(q) % 64 == 0 and q[0] == 0 and q[-1] == 575
    assert np.array_equal(sample_rows(100, 64), np.arange(100))


def test_auto_picks_weights_only_for_a_plain_float_gguf(f16):
    """A PowerInfer file (magic PWRI) of float tensors still runs the model: its predictors'
    recall is only measured there."""
    from types import SimpleNamespace

    from tinyconvert.checks.post_check import resolve_check
    from tinyconvert.formats.gguf_model import open_gguf
    with open_gguf(f16) as m:
        assert resolve_check("auto", m) == "weights"
        assert resolve_check("model", m) == "model"
        assert resolve_check("auto", SimpleNamespace(magic=b"PWRI", tensors=m.tensors)) == "model"
