"""Checkpoint forms: single and sharded safetensors, single and sharded .bin, F32/F16/BF16
sources. The same weights must give the same GGUF tensors whatever the container."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import gguf
import numpy as np
import pytest

from tests.support import tiny
from tests.test_tiny_models import make_tokenizer
from tinyconvert.pipeline.hf2gguf import hf2gguf


def tensors(path):
    r = gguf.GGUFReader(path)
    return {t.name: (int(t.tensor_type), np.asarray(t.data).tobytes()) for t in r.tensors}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    make_tokenizer(folder, "gpt-2")
    tiny.build_model(folder, "llama", seed=3)
    out = folder / "ref.gguf"
    hf2gguf(str(folder), out, outtype="f16", quiet=True)
    return folder, tensors(out)


def _clone_tokenizer(src, dst):
    dst.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (dst / name).write_bytes((src / name).read_bytes())


def test_sharded_safetensors(base, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM
    folder, ref = base
    dst = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).save_pretrained(
        dst, max_shard_size="60KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (dst / name).write_bytes((folder / name).read_bytes())
    assert (dst / "model.safetensors.index.json").exists()
    assert len(list(dst.glob("model-*.safetensors"))) > 2
    hf2gguf(str(dst), tmp_path / "o.gguf", outtype="f16", quiet=True)
    assert tensors(tmp_path / "o.gguf") == ref


@pytest.mark.parametrize("sharded", [False, True])
def test_pytorch_bin(base, tmp_path, sharded):
    import torch
    from safetensors.torch import load_file
    folder, ref = base
    dst = tmp_path / "bin"
    _clone_tokenizer(folder, dst)
    state = load_file(folder / "model.safetensors")
    if not sharded:
        torch.save(state, dst / "pytorch_model.bin")
    else:
        names = sorted(state)
        parts = {f"pytorch_model-0000{i + 1}-of-00002.bin": names[i::2] for i in range(2)}
        for fname, keys in parts.items():
            torch.save({k: state[k] for k in keys}, dst / fname)
        index = {"weight_map": {k: f for f, ks in parts.items() for k in ks}}
        (dst / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    hf2gguf(str(dst), tmp_path / "o.gguf", outtype="f16", quiet=True)
    assert tensors(tmp_path / "o.gguf") == ref


@pytest.mark.parametrize("dtype,auto", [("bfloat16", "bf16"), ("float16", "f16"),
                                        ("float32", "f16")])
def test_source_dtypes_and_auto(tmp_path, dtype, auto):
    import torch
    from safetensors.torch import load_file
    make_tokenizer(tmp_path, "gpt-2")
    tiny.build_model(tmp_path, "llama", dtype=dtype)
    res = hf2gguf(str(tmp_path), tmp_path / "o.gguf", outtype="auto", quiet=True)
    assert res.outtype == auto
    r = gguf.GGUFReader(tmp_path / "o.gguf")
    got = {t.name: t for t in r.tensors}
    src = load_file(tmp_path / "model.safetensors")
    # an unpermuted matrix keeps its exact values: same bits when the types agree
    up = src["model.layers.1.mlp.up_proj.weight"]
    want = up.to(getattr(torch, {"bf16": "bfloat16", "f16": "float16"}[auto]))
    have = np.asarray(got["blk.1.ffn_up.weight"].data)
    assert have.tobytes() == want.contiguous().view(torch.int16).numpy().tobytes()
    assert got["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32


def _fake_hub_cache(cache, repo_id, src):
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for p in src.iterdir():
        if p.is_file() and p.suffix != ".gguf":
            (snap / p.name).write_bytes(p.read_bytes())


def test_hub_id_offline_from_cache_and_clear_error_when_not_cached(base, tmp_path):
    folder, ref = base
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "tiny-org/tiny-llama", folder)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path))
    ok = subprocess.run([sys.executable, "-m", "tinyconvert", "hf2gguf", "tiny-org/tiny-llama",
                         "-o", str(tmp_path / "o.gguf"), "--outtype", "f16", "-q"],
                        env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert tensors(tmp_path / "o.gguf") == ref
    r = gguf.GGUFReader(tmp_path / "o.gguf")
    assert r.fields["general.name"].contents()
    missing = subprocess.run([sys.executable, "-m", "tinyconvert", "hf2gguf", "tiny-org/absent",
                              "-o", str(tmp_path / "p.gguf")], env=env, capture_output=True,
                             text=True)
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "not in the Hugging Face cache" in missing.stderr
    assert not (tmp_path / "p.gguf").exists()
