"""MXFP4 (GGML type 39) and the mxfp4_moe mix: our encoder against ggml's own
(ggml_quantize_chunk) on rows built to hit every edge of quantize_row_mxfp4_ref, our decoder
against gguf-py's, the mix against llama_model_quantize on a tiny gpt-oss; and a file written by
llama.cpp's quantizer (id 39, no tinyconvert.tmac.* keys) read as MXFP4 by inspect, the runtime
and quantize, not as the T-MAC type that shares the id."""
from __future__ import annotations

import json
from dataclasses import replace

import gguf
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.support.compare import kld_stats, llamacpp_logits, llamacpp_quantize
from tests.support.families import quantized_like_llamacpp
from tests.support.ggml_quant import ggml_quantize
from tests.test_gpt_oss import make
from tests.test_moe import ids_of
from tests.test_quantize import same_file_contents
from tinyconvert.cli import app
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.quantize import quantize
from tinyconvert.pipeline.sources import open_source
from tinyconvert.quant import REGISTRY, get_qtype
from tinyconvert.runtime.model import prefill_layers
from tinyconvert.runtime.weights import dequantize

MXFP4 = get_qtype("mxfp4")
MXFP4_MOE = 38                        # llama.cpp's LLAMA_FTYPE_MOSTLY_MXFP4_MOE


def edge_rows() -> np.ndarray:
    """[n, 32] rows, one block each: Gaussians at many scales, zeros and signed zeros, denormals,
    tiny normals (whose exponent byte wraps in C's cast), block maxima just below powers of two
    (where log2f rounds up to the integer), exact midpoints between E2M1 values (ties go to the
    lower index), huge values, one-signed blocks."""
    rng = np.random.default_rng(0)
    rows = [rng.standard_normal((64, 32)) * s for s in (1e-6, 1e-3, 0.05, 1.0, 300.0, 1e30)]
    rows += [np.zeros((1, 32)), np.full((1, 32), -0.0), rng.standard_normal((4, 32)) * 1e-39,
             rng.standard_normal((4, 32)) * 1.3e-38, np.abs(rng.standard_normal((4, 32))),
             -np.abs(rng.standard_normal((4, 32))), np.full((2, 32), 6e37)]
    near = []
    for k in range(-30, 30):
        for m in range(8):                       # 2^k (1 - m 2^-24): the last floats below 2^k
            row = rng.standard_normal(32) * 2.0 ** (k - 3)
            row[m] = np.float32(2.0 ** k) * (np.float32(1) - np.float32(m) * np.float32(2 ** -24))
            near.append(row)
    rows.append(np.array(near))
    mids = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0])     # times 2^n, max 6 * 2^n
    for n in (-3, 0, 4):
        rows.append(np.concatenate([mids, -mids, mids[::-1], -mids[::-1]])[None] * 2.0 ** n)
    return np.concatenate(rows).astype(np.float32)


def test_bytes_equal_ggml_quantize_chunk():
    x = edge_rows()
    ours = MXFP4.quantize(x)
    theirs = ggml_quantize(x, 39, MXFP4.row_bytes(32))
    bad = np.flatnonzero((ours != theirs).any(1))
    assert bad.size == 0, f"{bad.size} of {len(x)} blocks differ, first row {x[bad[0]]}"
    wide = np.random.default_rng(1).standard_normal((16, 2880)).astype(np.float32)   # gpt-oss rows
    assert np.array_equal(MXFP4.quantize(wide), ggml_quantize(wide, 39, MXFP4.row_bytes(2880)))


def test_decoder_equals_gguf_py_on_every_byte():
    """All 256 exponent bytes with random nibbles, against gguf-py's MXFP4 dequantizer."""
    rng = np.random.default_rng(2)
    blocks = rng.integers(0, 256, (256 * 4, 17), dtype=np.uint8)
    blocks[:, 0] = np.repeat(np.arange(256, dtype=np.uint8), 4)
    ours = MXFP4.dequantize(blocks.reshape(16, -1))
    with np.errstate(over="ignore"):                 # 12 * 2^127 is inf on both sides
        theirs = gguf.quants.dequantize(blocks.reshape(16, -1), gguf.GGMLQuantizationType.MXFP4)
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))


def test_round_trip_keeps_what_the_grid_holds():
    """Values on the grid of their block's scale come back exactly."""
    rng = np.random.default_rng(3)
    grid = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], dtype=np.float32)
    x = grid[rng.integers(0, 8, (64, 64))] * rng.choice([-1, 1], (64, 64)).astype(np.float32)
    x[:, ::32] = 6.0                                  # every block's max sets scale 2^0
    assert np.array_equal(MXFP4.dequantize(MXFP4.quantize(x)), x)


@pytest.fixture(scope="module")
def gpt_oss(tmp_path_factory, smollm2_hf):
    """A tiny gpt-oss in f32, and llama.cpp's own mxfp4_moe file of it."""
    folder = tmp_path_factory.mktemp("gpt-oss-mxfp4")
    make(folder, smollm2_hf)
    hf2gguf(str(folder), folder / "f32.gguf", outtype="f32", quiet=True)
    llamacpp_quantize(folder / "f32.gguf", folder / "llamacpp-mxfp4.gguf", MXFP4_MOE)
    return folder


def test_mxfp4_moe_mix_matches_llama_quantize(gpt_oss, tmp_path):
    quantized_like_llamacpp(gpt_oss / "f32.gguf", tmp_path, "mxfp4_moe")
    f = read_gguf(tmp_path / "ours.gguf")
    types = {t.name: f.type_name(t.ggml_type) for t in f.tensors}
    assert types["blk.0.ffn_down_exps.weight"] == "MXFP4"
    assert types["output.weight"] == types["blk.0.attn_q.weight"] == "Q8_0"


def test_upstream_mxfp4_file_inspects_as_mxfp4(gpt_oss):
    """id 39 means T-MAC's I4 only in files carrying our tinyconvert.tmac.* keys."""
    res = CliRunner().invoke(app, ["inspect", str(gpt_oss / "llamacpp-mxfp4.gguf"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert not any(k.startswith("tinyconvert.tmac") for k in info["metadata"])
    assert info["totals"]["MXFP4"]["tensors"] == 3 * 2          # three expert stacks, 2 layers
    assert {r["type"] for r in info["tensors"] if "_exps.weight" in r["name"]} == {"MXFP4"}


def _runtime_vs_llamacpp(path, ids) -> float:
    src = open_source(path)
    ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
    return kld_stats(llamacpp_logits(path, ids), ours)["kld_mean"]


def _nibbles_swapped(data: np.ndarray) -> np.ndarray:
    b = np.ascontiguousarray(data).reshape(-1, 17).copy()
    b[:, 1:] = (b[:, 1:] >> 4) | (b[:, 1:] << 4)
    return MXFP4.dequantize(b.reshape(data.shape))


def test_upstream_mxfp4_file_runs_as_llamacpp_runs_it(gpt_oss, tmp_path, monkeypatch):
    """Every MXFP4 tensor decodes as gguf-py decodes it, and our runtime on llama.cpp's file is
    as close to llama.cpp's logits as on llama.cpp's Q8_0 file (llama.cpp rounds activations to
    Q8_0 for both weight types; that, not the weights, is what the gap measures). A decoder with
    the nibble halves swapped lands far outside the bound, so the bound can fail."""
    path = gpt_oss / "llamacpp-mxfp4.gguf"
    f = read_gguf(path)
    mx = [t for t in f.tensors if t.ggml_type == 39]
    assert mx
    for t in mx:
        raw = f.tensor_bytes(t).reshape(-1, MXFP4.row_bytes(t.ne[0]))
        want = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.MXFP4).reshape(t.shape)
        assert np.array_equal(dequantize(f, t), want), t.name
    ids = ids_of(gpt_oss)
    llamacpp_quantize(gpt_oss / "f32.gguf", tmp_path / "q8_0.gguf", 7)
    bound = 3 * _runtime_vs_llamacpp(tmp_path / "q8_0.gguf", ids)
    kld = _runtime_vs_llamacpp(path, ids)
    print("runtime vs llama.cpp, mean KLD: mxfp4", kld, "bound (3x q8_0)", bound)
    assert kld < bound
    monkeypatch.setitem(REGISTRY, "mxfp4", replace(MXFP4, dequantize=_nibbles_swapped))
    broken = _runtime_vs_llamacpp(path, ids)
    print("with the nibbles swapped", broken)
    assert broken > 10 * bound


def test_upstream_mxfp4_file_requantizes_as_llama_quantize(gpt_oss, tmp_path):
    """quantize reads id 39 as MXFP4 (decoded, then Q8_0) exactly as llama_model_quantize does
    with --allow-requantize."""
    src = gpt_oss / "llamacpp-mxfp4.gguf"
    llamacpp_quantize(src, tmp_path / "theirs.gguf", 7, allow_requantize=True)
    quantize(src, tmp_path / "ours.gguf", qtype="q8_0", allow_requantize=True, quiet=True)
    same_file_contents(tmp_path / "ours.gguf", tmp_path / "theirs.gguf")


def test_cli_quantize_mxfp4_moe(gpt_oss, tmp_path):
    """`quantize --type mxfp4_moe --json` through the CLI; `--type mxfp4` alone is no mix
    (llama-quantize has none either) and is refused in one line naming the valid ones."""
    out = tmp_path / "cli.gguf"
    res = CliRunner().invoke(app, ["quantize", str(gpt_oss / "f32.gguf"), "-o", str(out),
                                   "--type", "mxfp4_moe", "--no-verify", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["types"]["mxfp4"] == 6 and result["mix"] == "mxfp4_moe", result
    bad = CliRunner().invoke(app, ["quantize", str(gpt_oss / "f32.gguf"), "-o",
                                   str(tmp_path / "x.gguf"), "--type", "mxfp4", "--no-verify"])
    assert bad.exit_code == 2 and "mxfp4_moe" in bad.stderr and not (tmp_path / "x.gguf").exists()
