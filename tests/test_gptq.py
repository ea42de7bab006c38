"""GPTQ import (issue 6): checkpoints packed here from known codes, in both zero-point conventions,
convert to T-MAC tensors whose codes, scales and zero points are exactly the known ones (with
llama's Q/K row permutation applied); the file runs like the float model those codes define
(transformers-loadable, checked by verify); act-order and unsupported configs are clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from tests.test_tmac_files import build_tiny, decode_canonical, hf_rows_in_gguf_order
from tinyconvert.cli import app
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.runtime.lut import LutLinear
from tinyconvert.runtime.weights import GgufWeights
from tinyconvert.checks.verify import verify

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def pack_along_rows(v: np.ndarray, bits: int) -> np.ndarray:
    """uint [R, C] -> int32 [R bits/32, C], LSB-first: row j*per + i in bits i*n.. of word j."""
    per = 32 // bits
    v = v.astype(np.uint64).reshape(-1, per, v.shape[1])
    words = (v << (bits * np.arange(per, dtype=np.uint64))[None, :, None]).sum(1)
    return words.astype(np.uint32).view(np.int32)


def make_gptq(src, dst, *, bits, group, sym, v2, desc_act=False, seed=0):
    """Known codes q, zero points z and scales s for every linear layer; the GPTQ checkpoint in
    dst and, in src (overwritten), the float model w = s (q - z) they define."""
    rng = np.random.default_rng(seed)
    tensors = load_file(str(src / "model.safetensors"))
    gptq, floats, known = {}, {}, {}
    for name, w in tensors.items():
        prefix = name[: -len(".weight")]
        if not any(prefix.endswith(p) for p in LINEAR):
            gptq[name] = floats[name] = w
            continue
        M, K = w.shape
        q = rng.integers(0, 1 << bits, (M, K), dtype=np.uint8)
        z = (np.full((K // group, M), 1 << (bits - 1)) if sym else
             rng.integers(1, (1 << bits) - 1, (K // group, M)))
        s = (np.abs(w).reshape(M, K // group, group).max(-1).T / (1 << (bits - 1))).astype(
            np.float16)
        floats[name] = (np.repeat(s.astype(np.float32), group, 0).T
                        * (q.astype(np.float32) - np.repeat(z, group, 0).T)).astype(np.float32)
        stored_z = z if v2 else z - 1
        gptq[prefix + ".qweight"] = pack_along_rows(q.T, bits)                  # [K n/32, M]
        gptq[prefix + ".qzeros"] = pack_along_rows(stored_z.T.astype(np.uint32), bits).T.copy()
        gptq[prefix + ".scales"] = s
        g_idx = np.arange(K, dtype=np.int32) // group
        gptq[prefix + ".g_idx"] = rng.permutation(g_idx) if desc_act else g_idx
        gptq[prefix + ".bias"] = np.zeros(M, np.float16)                        # AutoGPTQ does this
        known[name] = (q, z.T, s.astype(np.float32).T)
    cfg = json.loads((src / "config.json").read_text())
    for f in src.iterdir():
        if f.name not in ("model.safetensors", "config.json"):
            (dst / f.name).write_bytes(f.read_bytes())
    qc = {"quant_method": "gptq", "bits": bits, "group_size": group, "sym": sym,
          "desc_act": desc_act}
    if v2:
        qc["meta"] = {"quantizer": ["gptqmodel:2.0.0"]}
    (dst / "config.json").write_text(json.dumps({**cfg, "quantization_config": qc}))
    for d, arrays in ((dst, gptq), (src, floats)):     # save_file writes memory order
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                  str(d / "model.safetensors"))
    return known


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("gptq_base"))


def _copy(base, dst):
    dst.mkdir()
    for f in base.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize("bits, group, sym, v2", [(4, 128, False, False), (2, 64, False, True),
                                                  (4, 64, True, False), (2, 128, True, True)])
def test_codes_carried_over_exactly(base, tmp_path, bits, group, sym, v2):
    floats, q_dir = _copy(base, tmp_path / "float"), tmp_path / "gptq"
    q_dir.mkdir()
    known = make_gptq(floats, q_dir, bits=bits, group=group, sym=sym, v2=v2)
    out = tmp_path / "g.gguf"
    res = hf2gguf(str(q_dir), out, outtype="auto", quiet=True)
    name = f"tmac_w{bits}g{group}_{int(not sym)}"
    assert res.outtype == name and res.types[name] == 14
    f = read_gguf(out)
    tensors = {t.name: t for t in f.tensors}
    for hf_name, (q, z, s) in known.items():
        layer = hf_name.split(".")[2]
        short = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                 "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}[
            hf_name.split(".")[-2]]
        t = tensors[f"blk.{layer}.{short}.weight"]
        assert f.type_name(t.ggml_type) == name
        gq, gs, gzf = decode_canonical(f.tensor_bytes(t), *t.shape, bits, group, not sym)
        assert np.array_equal(gq, hf_rows_in_gguf_order(q, hf_name))
        assert np.array_equal(gs, hf_rows_in_gguf_order(s, hf_name))
        if not sym:
            zf = (z - (1 << (bits - 1))) * s
            assert np.allclose(gzf, hf_rows_in_gguf_order(zf, hf_name), rtol=1e-6, atol=0)
    # the file runs like the float model the codes define (loaded by transformers elsewhere;
    # here through the runtime checked against it) and like the GPTQ checkpoint itself
    for ref in (floats, q_dir):
        report = verify(str(ref), out, tokens=64)
        assert report.stats["kld_mean"] < 5e-3, report.summary_line()    # int8 tables only
    # with float tables the LUT product is the float model's product
    weights, float_w = GgufWeights(out), load_file(str(floats / "model.safetensors"))
    x = torch.randn(3, 384)
    lin = LutLinear(weights("blk.1.ffn_down.weight").w, int8=False)
    ref = x @ torch.from_numpy(float_w["model.layers.1.mlp.down_proj.weight"]).T
    assert (lin(x) - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_float_reference_is_what_transformers_computes(base, tmp_path):
    """The float model built from the codes (verify's reference above) as transformers runs it."""
    import transformers

    from tinyconvert.runtime.model import prefill_layers
    from tinyconvert.pipeline.sources import open_source
    floats, q_dir = _copy(base, tmp_path / "float"), tmp_path / "gptq"
    q_dir.mkdir()
    make_gptq(floats, q_dir, bits=4, group=128, sym=False, v2=False)
    ids = [1, 5, 9, 3, 7, 11]
    model = transformers.AutoModelForCausalLM.from_pretrained(floats)
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits[0]
    for src in (open_source(floats), open_source(q_dir)):    # float and GPTQ (dequantized)
        ours = prefill_layers(src.hparams, src.get, ids)
        assert (ours - theirs).abs().max() < 1e-3


def test_act_order_is_a_clear_error(base, tmp_path):
    floats, q_dir = _copy(base, tmp_path / "float"), tmp_path / "gptq"
    q_dir.mkdir()
    make_gptq(floats, q_dir, bits=4, group=128, sym=False, v2=False, desc_act=True)
    r = CliRunner().invoke(app, ["hf2gguf", str(q_dir), "-o", str(tmp_path / "x.gguf")])
    assert r.exit_code == 2 and "desc_act" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize("change, message", [
    ({"bits": 3}, "bits=3"),
    ({"group_size": 32}, "group_size=32"),
    ({"quant_method": "awq"}, "'awq' is not supported"),
])
def test_unsupported_configs(base, tmp_path, change, message):
    floats, q_dir = _copy(base, tmp_path / "float"), tmp_path / "gptq"
    q_dir.mkdir()
    make_gptq(floats, q_dir, bits=4, group=128, sym=False, v2=False)
    cfg = json.loads((q_dir / "config.json").read_text())
    cfg["quantization_config"].update(change)
    (q_dir / "config.json").write_text(json.dumps(cfg))
    r = CliRunner().invoke(app, ["hf2gguf", str(q_dir), "-o", str(tmp_path / "x.gguf")])
    assert r.exit_code == 2 and message in r.output, r.output


def test_outtype_must_match(base, tmp_path):
    floats, q_dir = _copy(base, tmp_path / "float"), tmp_path / "gptq"
    q_dir.mkdir()
    make_gptq(floats, q_dir, bits=4, group=128, sym=False, v2=False)
    r = CliRunner().invoke(app, ["hf2gguf", str(q_dir), "-o", str(tmp_path / "x.gguf"),
                                 "--outtype", "q8_0"])
    assert r.exit_code == 2 and "tmac_w4g128_1" in r.output
