"""verify's two references. The default runs an HF checkpoint through our own architecture table,
so a wrong transform in that table changes the reference and the candidate alike and cannot show;
`--reference-engine transformers` asks transformers and catches it."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.support.families import verified_with_transformers_reference
from tests.test_tiny_models import make_tokenizer
from tinyconvert.cli import app
from tinyconvert.checks.verify import verify
from tinyconvert.pipeline.hf2gguf import hf2gguf


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    make_tokenizer(folder, "spm")
    tiny.build_model(folder, "llama", sharpen=5.0)
    hf2gguf(str(folder), folder / "f32.gguf", outtype="f32", quiet=True)
    return folder


def test_both_references_pass_a_correct_file(llama):
    stats = verified_with_transformers_reference(llama, llama / "f32.gguf")
    ours = verify(str(llama), llama / "f32.gguf", tokens=96).stats
    assert abs(stats["kld_mean"] - ours["kld_mean"]) < 1e-6 and stats["tokens"] == ours["tokens"]


def test_wrong_transform_shows_only_with_the_transformers_reference(llama, monkeypatch, tmp_path):
    """A converter that forgets llama's Q/K permutation writes a file llama.cpp runs wrongly;
    the default reference reads the checkpoint through the same broken table and agrees."""
    import tinyconvert.pipeline.plan as plan
    monkeypatch.setattr(plan, "permute_qk", lambda w, n_head: w)
    bad = tmp_path / "bad.gguf"
    hf2gguf(str(llama), bad, outtype="f32", quiet=True)
    fooled = verify(str(llama), bad, tokens=96)
    assert fooled.passed and fooled.stats["kld_mean"] < 1e-9
    caught = verify(str(llama), bad, tokens=96, reference_engine="transformers")
    assert not caught.passed and caught.stats["kld_mean"] > 100 * caught.max_kld, caught.stats


def test_cli_reference_engine(llama, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["verify", str(llama), str(llama / "f32.gguf"), "--tokens", "64",
                              "--reference-engine", "transformers"])
    assert res.exit_code == 0, res.output
    assert "reference: transformers" in res.stdout and "PASS" in res.stdout
    res = runner.invoke(app, ["verify", str(llama / "f32.gguf"), str(llama / "f32.gguf"),
                              "--reference-engine", "transformers"])
    assert res.exit_code == 2 and "needs a Hugging Face checkpoint" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(app, ["verify", str(llama), str(llama / "f32.gguf"),
                              "--reference-engine", "onnx"])
    assert res.exit_code == 2 and "valid: runtime, transformers" in res.stderr
