"""The T-MAC w4g128 recipe (tinyconvert/pipeline/recipes/tmac_plan.py): ffn_down at groups of 64, every
other matrix at 128, reported as a choice and not as a fallback; --pure keeps every matrix at
128. Bytes are checked against the T-MAC quantizer run here at each tensor's group, and the
mixed file runs in the runtime (LUT path at both groups)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.test_tmac_files import build_tiny
from tinyconvert.checks.verify import verify
from tinyconvert.cli import app
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.recipes.mixes import Options
from tinyconvert.pipeline.quantize import TmacOptions, quantize
from tinyconvert.quant.tmac import core as tmac
from tinyconvert.runtime.lut import LutLinear
from tinyconvert.runtime.weights import GgufWeights


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The tiny llama (rows 256 and 384 wide, both multiples of 128) and its F32 GGUF."""
    d = build_tiny(tmp_path_factory.mktemp("tmac_recipe"))
    hf2gguf(str(d), d / "f32.gguf", outtype="f32", quiet=True)
    return d


@pytest.fixture(scope="module", params=["recipe", "pure"])
def made(request, model):
    out = model / f"{request.param}.gguf"
    res = quantize(model / "f32.gguf", out, bits=4, group_size=128, tmac=TmacOptions(),
                   options=Options(pure=request.param == "pure"), quiet=True)
    return request.param, out, res


def expected_group(name: str, kind: str) -> int:
    return 64 if kind == "recipe" and ".ffn_down." in name else 128


def test_groups_and_bytes(model, made):
    """Every block matrix at its expected group, its bytes the quantizer's output at that group
    (codes MSB-first, then f32 scales, then f32 zero points); nothing reported as a fallback."""
    kind, out, res = made
    f, src = read_gguf(out), read_gguf(model / "f32.gguf")
    rows = {t.name: src.tensor_bytes(t).view("<f4").reshape(t.shape) for t in src.tensors}
    matrices = [t for t in f.tensors if t.name.startswith("blk.") and len(t.shape) == 2]
    assert len(matrices) == 14
    for t in matrices:
        group = expected_group(t.name, kind)
        assert f.type_name(t.ggml_type) == f"tmac_w4g{group}_1", t.name
        ref = tmac.quantize(rows[t.name], 4, group, method="search")
        want = tmac.pack_codes(ref) + ref.scales.astype("<f4").tobytes() + \
            ref.zf.astype("<f4").tobytes()
        assert f.tensor_bytes(t).tobytes() == want, t.name
    assert res.fallbacks == []
    n_down = sum(".ffn_down." in t.name for t in matrices)
    assert res.types.get("tmac_w4g64_1", 0) == (n_down if kind == "recipe" else 0) == (
        2 if kind == "recipe" else 0)


def test_runtime_runs_the_mixed_file(model, made):
    kind, out, _ = made
    w = GgufWeights(out)
    for name in ("blk.0.ffn_down.weight", "blk.0.ffn_up.weight"):
        lin = w(name)
        assert isinstance(lin, LutLinear) and lin.w.group == expected_group(name, kind)
    report = verify(str(model), out, tokens=64)
    assert report.passed and report.stats["kld_mean"] < 0.3, report.summary_line()


@pytest.mark.parametrize("args, ffn_down, rest", [
    ([], "tmac_w4g64_1", "tmac_w4g128_1"),
    (["--pure"], "tmac_w4g128_1", "tmac_w4g128_1"),
    (["--sym"], "tmac_w4g64_0", "tmac_w4g128_0"),
    (["-b", "2"], "tmac_w2g128_1", "tmac_w2g128_1"),              # the recipe is 4-bit only
    (["--tmac-layout", "kernel", "--tmac-bm", "256", "--tmac-kfactor", "16"], "tmac_i4",
     "tmac_i4"),                                          # one group per file in this layout
])
def test_cli_dry_run_reports_the_recipe(model, tmp_path, args, ffn_down, rest):
    argv = ["quantize", str(model / "f32.gguf"), "-o", str(tmp_path / "x.gguf"), "--tmac",
            "--group-size", "128", "--dry-run", "--json", *args]
    if "-b" not in args:
        argv += ["-b", "4"]
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 0, r.output
    types = {t["name"]: t["type"] for t in json.loads(r.stdout.strip().splitlines()[-1])["tensors"]
             if t["name"].startswith("blk.") and len(t["shape"]) == 2}
    assert {n: t for n, t in types.items() if ".ffn_down." in n} == {
        "blk.0.ffn_down.weight": ffn_down, "blk.1.ffn_down.weight": ffn_down}
    assert {t for n, t in types.items() if ".ffn_down." not in n} == {rest}
    note = [ln for ln in r.stderr.splitlines() if ln.startswith("note:")]
    if ffn_down == rest:
        assert note == []
    else:
        assert note == [f"note: {rest} recipe: 2 tensors at {ffn_down} (blk.0.ffn_down.weight, "
                        f"...); --pure keeps every matrix at {rest}"]
    assert not (tmp_path / "x.gguf").exists()


def test_hf2gguf_outtype_is_the_recipe(model, tmp_path):
    r = CliRunner().invoke(app, ["hf2gguf", str(model), "-o", str(tmp_path / "x.gguf"),
                                 "--outtype", "tmac_w4g128_1", "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    types = {t["name"]: t["type"] for t in json.loads(r.stdout.strip().splitlines()[-1])["tensors"]}
    assert types["blk.1.ffn_down.weight"] == "tmac_w4g64_1"
    assert types["blk.1.ffn_gate.weight"] == types["blk.1.attn_v.weight"] == "tmac_w4g128_1"
    assert "tmac_w4g128_1 recipe: 2 tensors at tmac_w4g64_1" in r.stderr
    assert "fell back" not in r.stderr
