"""The IQ mixes (and the imatrix-dependent rules of the others) choose llama.cpp's type for
every tensor, our quantizers give llama.cpp's bytes for each with the same importance matrix,
and a mix that needs a matrix is refused without one exactly where llama.cpp refuses it.
llama.cpp's side: llama_model_quantize with params.imatrix on a tiny seeded llama whose rows
are multiples of 256 (8 layers, so the n/8 rules select a layer)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support import tiny
from tests.support.ggml_chunk import llamacpp_quantize_imatrix
from tests.test_tiny_models import make_tokenizer
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.recipes.mixes import RECIPES, ModelShape, Options, choose_types
from tinyconvert.pipeline.recipes.mixes_iq import IQ_RECIPES
from tinyconvert.quant import get_qtype
from tinyconvert.quant.sizes import type_name
from tinyconvert.runtime.weights import dequantize

MIXES = sorted(IQ_RECIPES) + ["iq4_nl", "q4_0", "q5_0"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("iqmix")
    make_tokenizer(d, "gpt-2")
    tiny.build_model(d, "llama", hidden_size=256, intermediate_size=256, num_attention_heads=4,
                     n_kv_head=2, num_hidden_layers=8)
    hf2gguf(str(d), d / "f32.gguf", outtype="f32", quiet=True)
    f = read_gguf(d / "f32.gguf")
    rng = np.random.default_rng(5)
    imatrix = {t.name: rng.lognormal(0.0, 1.0, t.ne[0]).astype(np.float32)
               for t in f.tensors if t.name.startswith("blk.") and len(t.ne) == 2}
    return d / "f32.gguf", f, imatrix


def _ours(f, mix: str, has_imatrix: bool) -> dict[str, str]:
    shape = ModelShape(8, 4, 2)
    tensors = [(t.name, tuple(reversed(t.ne)), "f32") for t in f.tensors]
    types = choose_types(tensors, mix, shape, Options(has_imatrix=has_imatrix))
    return {name: t for name, (t, _) in types.items()}


def _compare(f, out, ours: dict[str, str], imatrix: dict | None):
    ref = read_gguf(out)
    src = {t.name: t for t in f.tensors}
    for t in ref.tensors:
        theirs = type_name(t.ggml_type).lower()
        assert ours[t.name] == theirs, f"{t.name}: we choose {ours[t.name]}, llama.cpp {theirs}"
        if theirs == "f32":
            continue
        qtype = get_qtype(theirs)
        rows = dequantize(f, src[t.name]).reshape(-1, t.ne[0])
        qw = None if imatrix is None else imatrix.get(t.name)
        mine = qtype.quantize(rows, imatrix=qw)
        assert np.array_equal(mine, ref.tensor_bytes(t).reshape(mine.shape)), \
            f"{t.name} ({theirs}) bytes differ"
    return {type_name(t.ggml_type).lower() for t in ref.tensors}


@pytest.mark.parametrize("mix", MIXES)
def test_mix_with_imatrix(model, tmp_path, mix):
    path, f, imatrix = model
    out = tmp_path / "ref.gguf"
    assert llamacpp_quantize_imatrix(path, out, RECIPES[mix][0], imatrix) == 0
    used = _compare(f, out, _ours(f, mix, True), imatrix)
    assert RECIPES[mix][1] in used or mix == "iq3_xxs", f"{mix}: default type unused: {used}"


@pytest.mark.parametrize("mix", MIXES)
def test_mix_without_imatrix(model, tmp_path, mix):
    """Where llama.cpp refuses (rc 1) we raise a one-line InputError; elsewhere types and bytes
    match, including the rules that differ without a matrix (iq3_xxs, iq4_*, q4_0/q5_0)."""
    path, f, _ = model
    out = tmp_path / "ref.gguf"
    rc = llamacpp_quantize_imatrix(path, out, RECIPES[mix][0], None)
    if rc != 0:
        with pytest.raises(InputError, match="needs an importance matrix"):
            _ours(f, mix, False)
        return
    _compare(f, out, _ours(f, mix, False), None)


def test_empty_imatrix_still_counts(model, tmp_path):
    """An empty matrix list is "has an imatrix" for the rules (q4_0's first ffn_down -> q4_1),
    while every tensor is quantized without one."""
    path, f, _ = model
    out = tmp_path / "ref.gguf"
    assert llamacpp_quantize_imatrix(path, out, RECIPES["q4_0"][0], {}) == 0
    used = _compare(f, out, _ours(f, "q4_0", True), {})
    assert "q4_1" in used


@pytest.mark.parametrize("mix", ["iq4_xs", "iq3_m"])
def test_cli_quantize_iq_mix_whole_file(model, tmp_path, mix):
    """Through our own pipeline and writer: every tensor of the file (types and bytes) equals
    llama.cpp's file for a mix that needs no matrix."""
    from typer.testing import CliRunner

    from tinyconvert.cli import app
    path, f, _ = model
    ref = tmp_path / "ref.gguf"
    assert llamacpp_quantize_imatrix(path, ref, RECIPES[mix][0], None) == 0
    res = CliRunner().invoke(app, ["quantize", str(path), "-o", str(tmp_path / "o.gguf"), "-t",
                                   mix, "--no-verify", "--quiet"])
    assert res.exit_code == 0, res.output
    ours, theirs = read_gguf(tmp_path / "o.gguf"), read_gguf(ref)
    assert ours.value("general.file_type") == theirs.value("general.file_type") == RECIPES[mix][0]
    by_name = {t.name: t for t in ours.tensors}
    for t in theirs.tensors:
        mine = by_name[t.name]
        assert mine.ggml_type == t.ggml_type, t.name
        assert np.array_equal(ours.tensor_bytes(mine), theirs.tensor_bytes(t)), t.name


def test_cli_refuses_a_mix_that_needs_a_matrix(model, tmp_path):
    from typer.testing import CliRunner

    from tinyconvert.cli import app
    path, _, _ = model
    res = CliRunner().invoke(app, ["quantize", str(path), "-o", str(tmp_path / "o.gguf"), "-t",
                                   "iq2_xxs", "--no-verify"])
    assert res.exit_code == 2, res.output
    assert "iq2_xxs needs an importance matrix" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.gguf").exists()


def test_verify_has_no_yardstick_for_a_file_that_needs_its_matrix(model, tmp_path):
    """Above its limit, verify judges a file against the reference quantized at the file's own
    types. An iq2_xxs file cannot be remade without the matrix it was made with (the file does
    not hold it), so there is no yardstick and the type's own limit stands; an iq4_xs file
    (no matrix needed) still gets one. llama.cpp makes both."""
    from tinyconvert.checks.requant import requantized
    from tinyconvert.pipeline.sources import gguf_source, open_source
    path, _, imatrix = model
    for mix, has_yardstick in (("iq2_xxs", False), ("iq4_xs", True)):
        out = tmp_path / f"{mix}.gguf"
        assert llamacpp_quantize_imatrix(path, out, RECIPES[mix][0], imatrix) == 0
        yard = requantized(open_source(path), gguf_source(out))
        assert (yard is not None) == has_yardstick, mix
    # the iq2_xxs yardstick is refused for the right reason: the type needs a matrix to exist
    with pytest.raises(ValueError, match="needs an importance matrix"):
        get_qtype("iq2_xxs").quantize(np.ones((1, 256), np.float32))
