"""Bad input: one clear line on stderr, a non-zero exit, no partial output, input untouched."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.test_tiny_models import make_tokenizer
from tinyconvert.cli import app


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    make_tokenizer(folder, "gpt-2")
    tiny.build_model(folder, "llama")
    return folder


def tree_hash(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def run_cli(args):
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.stderr.strip()


def expect_error(model, out_dir, pattern, out_name="out.gguf"):
    before = tree_hash(model) if model.is_dir() else None
    code, err = run_cli(["hf2gguf", str(model), "-o", str(out_dir / out_name), "--outtype", "f16"])
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in err
    assert re.search(pattern, err), err
    if out_dir.is_dir():
        assert list(out_dir.iterdir()) == [], "partial output left behind"
    if before is not None:
        assert tree_hash(model) == before, "input was modified"
    return err


def copy_model(good, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(good, dst)
    return dst


def test_missing_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    expect_error(tmp_path / "does-not-exist", out, "no such folder")


def test_unsupported_architecture_lists_supported(good, tmp_path):
    model = copy_model(good, tmp_path)
    cfg = json.loads((model / "config.json").read_text())
    cfg["architectures"] = ["BloomForCausalLM"]
    (model / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    out.mkdir()
    err = expect_error(model, out, "unsupported architecture BloomForCausalLM")
    assert "LlamaForCausalLM" in err and "Qwen3ForCausalLM" in err


def test_unmappable_tensor_is_named(good, tmp_path):
    from safetensors.numpy import load_file, save_file
    model = copy_model(good, tmp_path)
    tensors = load_file(model / "model.safetensors")
    tensors["model.layers.0.mlp.mystery_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"]
    save_file(tensors, model / "model.safetensors")
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, r"model\.layers\.0\.mlp\.mystery_proj\.weight")


def test_truncated_safetensors(good, tmp_path):
    model = copy_model(good, tmp_path)
    path = model / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, "truncated")


def test_shard_index_pointing_outside(good, tmp_path):
    model = copy_model(good, tmp_path)
    (tmp_path / "evil.safetensors").write_bytes((model / "model.safetensors").read_bytes())
    index = {"metadata": {}, "weight_map": {"model.embed_tokens.weight": "../evil.safetensors"}}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, "outside the checkpoint folder")


def test_output_in_missing_folder(good, tmp_path):
    expect_error(good, tmp_path / "no" / "such" / "dir", "does not exist")


def test_unknown_outtype(good, tmp_path):
    code, err = run_cli(["hf2gguf", str(good), "-o", str(tmp_path / "x.gguf"), "--outtype", "q9"])
    assert code == 2 and "valid: f32, f16, bf16, q8_0, auto" in err
    assert list(tmp_path.iterdir()) == []


def test_malicious_pickle_is_refused(good, tmp_path):
    """A .bin whose pickle would run code is refused by weights_only loading; nothing runs."""
    import pickle
    model = copy_model(good, tmp_path)
    os.remove(model / "model.safetensors")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    with open(model / "pytorch_model.bin", "wb") as f:
        pickle.dump({"model.embed_tokens.weight": Evil()}, f)
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, "cannot load as a safe PyTorch checkpoint")
    assert not marker.exists()


def test_real_process_exit_code_and_single_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tinyconvert", "hf2gguf", str(tmp_path / "nope"),
                           "-o", str(tmp_path / "o.gguf")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")


@pytest.mark.parametrize("args", [["hf2gguf"], ["inspect", "x.gguf", "--bogus"], ["bogus"],
                                  ["set-metadata", "x.gguf", "k", "-1"]])
def test_usage_errors_are_one_line(args):
    proc = subprocess.run([sys.executable, "-m", "tinyconvert", *args], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
