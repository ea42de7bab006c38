"""The examples/ scripts run as a user runs them (their own process, outside the repository) on a
tiny seeded checkpoint, and print what is really in the files they write, checked here against
gguf-py and safetensors."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.support import tiny
from tests.test_tiny_models import make_tokenizer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    make_tokenizer(folder, "gpt-2")
    tiny.build_model(folder, "llama")
    return folder


def run_example(script: str, *args, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def gguf_types(path: Path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}


def test_convert_and_verify(model, tmp_path):
    out = run_example("convert_and_verify.py", model, "tiny.gguf", "--outtype", "f16",
                      cwd=tmp_path)
    assert "wrote tiny.gguf: f16, 21 tensors" in out
    assert out.splitlines()[-1].startswith("verify: PASS kld_mean=")
    types = gguf_types(tmp_path / "tiny.gguf")
    assert types["blk.0.attn_q.weight"] == "F16" and types["output_norm.weight"] == "F32"


def test_quantize_recipe_overrides_apply(model, tmp_path):
    out = run_example("quantize_recipe.py", model, tmp_path / "q.gguf", "--type", "q4_0",
                      cwd=tmp_path)
    written = gguf_types(tmp_path / "q.gguf")
    printed = {ln.split()[0]: ln.split()[1] for ln in out.splitlines() if ln.startswith(
        ("blk.", "output", "token_embd"))}
    assert printed == written
    for bid in (0, 1):
        assert written[f"blk.{bid}.attn_v.weight"] == "Q8_0"           # the recipe's overrides
        assert written[f"blk.{bid}.ffn_down.weight"] == "Q8_0"
        assert written[f"blk.{bid}.attn_q.weight"] == "Q4_0"           # the mix's own choice
    assert written["token_embd.weight"] == "Q8_0"
    assert "fallback: output.weight q6_k -> q8_0" in out    # q6_k's 256-blocks do not fit 64
    assert "wrote " in out.splitlines()[-1] and "(q4_0)" in out.splitlines()[-1]


def test_read_gguf_shows_keys_tensors_and_values(model, tmp_path):
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    path = hf2gguf(str(model), tmp_path / "tiny-f32.gguf", outtype="f32", quiet=True).path
    out = run_example("read_gguf.py", path, cwd=tmp_path)
    reader = gguf.GGUFReader(path)
    assert out.splitlines()[0].endswith(f"{len(reader.fields) - 3} keys, "    # minus the header's
                                        f"{len(reader.tensors)} tensors")     # 3 pseudo-fields
    assert "key general.architecture = 'llama'" in out
    assert "key tokenizer.ggml.tokens = [400 items]" in out
    assert "tensor blk.1.ffn_down.weight        F32    [64, 160]" in out
    # the script's numbers are torch's float32 reductions: equal to numpy's to rounding
    emb = load_file(model / "model.safetensors")["model.embed_tokens.weight"].astype(np.float64)
    m = re.fullmatch(r"loaded token_embd\.weight: shape \(400, 64\) torch\.float32, "
                     r"mean (\S+), std (\S+), first values \[(.*)\]", out.splitlines()[-1])
    assert m, out.splitlines()[-1]
    assert float(m[1]) == pytest.approx(emb.mean(), abs=2e-6)
    assert float(m[2]) == pytest.approx(emb.std(ddof=1), abs=2e-6)
    assert [float(x) for x in m[3].split(",")] == pytest.approx(emb.reshape(-1)[:4], abs=1e-6)
