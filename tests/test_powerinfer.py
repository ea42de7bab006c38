"""PowerInfer files from tiny ReLU-LLaMA checkpoints with predictors we make: the tensor set,
names, shapes, types and magic of shared/specs/powerinfer.md; attach-predictor equals
hf2gguf --powerinfer byte for byte; a perfect predictor makes the sparse run equal the dense one;
verify reports the predictor; the file survives set-metadata."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.support import tiny
from tests.support.compare import hf_logits
from tests.test_tiny_models import make_tokenizer
from tinyconvert.cli import app
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.formats.predictor import Predictor, save_predictors
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.runtime.model import prefill_layers
from tinyconvert.pipeline.sources import open_source

N_LAYER, N_EMBD, N_FF = 2, 64, 160
RANKS = (8, 12)


def random_predictors(seed: int = 0) -> list[Predictor]:
    rng = np.random.default_rng(seed)
    return [Predictor((rng.standard_normal((r, N_EMBD)) * 0.2).astype(np.float32),
                      (rng.standard_normal((N_FF, r)) * 0.2).astype(np.float32)) for r in RANKS]


@pytest.fixture(scope="module")
def relu_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("relu")
    make_tokenizer(d, "spm")
    tiny.build_model(d, "llama", hidden_act="relu")
    save_predictors(d / "pred", random_predictors())
    return d


def cli(*args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def test_tensor_set_shapes_types_magic(relu_model, tmp_path):
    out = tmp_path / "m.powerinfer.gguf"
    code, _, err = cli("hf2gguf", relu_model, "-o", out, "--powerinfer", "--predictor",
                       relu_model / "pred", "--sparse-threshold", "0.25", "--no-verify")
    assert code == 0, err
    f = read_gguf(out)
    assert f.magic == b"PWRI" and f.version == 3
    t = {x.name: x for x in f.tensors}
    per_layer = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm",
                 "ffn_gate", "ffn_up", "ffn_down_t", "fc1", "fc2")
    want = {"token_embd.weight", "output_norm.weight", "output.weight"} | {
        f"blk.{i}.{n}.weight" for i in range(N_LAYER) for n in per_layer}
    assert set(t) == want and len(t) == 3 + 11 * N_LAYER
    for i, r in enumerate(RANKS):
        assert t[f"blk.{i}.ffn_down_t.weight"].ne == (N_EMBD, N_FF)
        assert t[f"blk.{i}.fc1.weight"].ne == (N_EMBD, r)
        assert t[f"blk.{i}.fc2.weight"].ne == (r, N_FF)
        assert t[f"blk.{i}.ffn_down_t.weight"].ggml_type == 1                    # F16
        assert t[f"blk.{i}.fc1.weight"].ggml_type == 1
        assert t[f"blk.{i}.attn_norm.weight"].ggml_type == 0                     # F32
    assert abs(f.value("powerinfer.sparse_threshold") - 0.25) < 1e-7
    from safetensors.torch import load_file
    down = load_file(relu_model / "model.safetensors")["model.layers.1.mlp.down_proj.weight"]
    got = f.tensor_bytes(t["blk.1.ffn_down_t.weight"]).view(np.float16).reshape(N_FF, N_EMBD)
    assert np.array_equal(got, down.T.contiguous().to(torch.float16).numpy())


def test_q4_0_and_bad_outtype(relu_model, tmp_path):
    res = hf2gguf(str(relu_model), tmp_path / "q.gguf", outtype="q4_0", quiet=True,
                  powerinfer=relu_model / "pred")
    t = {x.name: x for x in read_gguf(res.path).tensors}
    assert t["blk.0.ffn_down_t.weight"].ggml_type == 2 and t["blk.0.fc1.weight"].ggml_type == 2
    for outtype in ("f32", "bf16", "q8_0"):
        with pytest.raises(InputError, match="f16 or q4_0"):
            hf2gguf(str(relu_model), tmp_path / "x.gguf", outtype=outtype, quiet=True,
                    powerinfer=relu_model / "pred")


def test_attach_equals_hf2gguf_byte_for_byte(relu_model, tmp_path):
    dense = tmp_path / "dense.gguf"
    code, _, err = cli("hf2gguf", relu_model, "-o", dense, "--outtype", "f16", "--dense-relu",
                       "--no-verify")
    assert code == 0, err
    code, _, err = cli("attach-predictor", dense, relu_model / "pred", "-o", tmp_path / "a.gguf",
                       "--sparse-threshold", "0.1")
    assert code == 0, err
    hf2gguf(str(relu_model), tmp_path / "b.gguf", outtype="f16", quiet=True,
            powerinfer=relu_model / "pred", sparse_threshold=0.1)
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()


def test_attach_from_q4_0_and_safetensors_predictors(relu_model, tmp_path):
    from safetensors.numpy import save_file
    pred = tmp_path / "pred_st"
    pred.mkdir()
    for i, p in enumerate(random_predictors(1)):
        save_file({"fc1.weight": p.fc1, "fc2.weight": p.fc2}, pred / f"model_{i}.safetensors")
    (pred / "config.json").write_text(json.dumps({"sparse_threshold": -0.5}))
    hf2gguf(str(relu_model), tmp_path / "d.gguf", outtype="q4_0", quiet=True, dense_relu=True)
    code, _, err = cli("attach-predictor", tmp_path / "d.gguf", pred, "-o", tmp_path / "p.gguf")
    assert code == 0, err
    f = read_gguf(tmp_path / "p.gguf")
    t = {x.name: x for x in f.tensors}
    assert f.magic == b"PWRI" and t["blk.0.ffn_down_t.weight"].ggml_type == 1
    assert t["blk.0.attn_q.weight"].ggml_type == 2 and f.value("powerinfer.sparse_threshold") == -0.5


@pytest.mark.parametrize("bad,message", [
    ("layers", "has a predictor for layer 2"), ("embd", "fc1.weight shape"),
    ("ff", "fc2.weight shape")])
def test_predictor_mismatches_are_named(relu_model, tmp_path, bad, message):
    preds = random_predictors()
    if bad == "layers":
        preds = preds + preds[:1]
    elif bad == "embd":
        preds[1] = Predictor(preds[1].fc1[:, :32].copy(), preds[1].fc2)
    else:
        preds[0] = Predictor(preds[0].fc1, preds[0].fc2[:100].copy())
    save_predictors(tmp_path / "pred", preds)
    code, _, err = cli("hf2gguf", relu_model, "-o", tmp_path / "x.gguf", "--powerinfer",
                       "--predictor", tmp_path / "pred", "--no-verify")
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.gguf").exists()


def test_perfect_predictor_sparse_equals_dense_and_transformers(relu_model, tmp_path):
    from dataclasses import replace
    out = tmp_path / "p.gguf"
    hf2gguf(str(relu_model), out, outtype="f16", quiet=True, powerinfer=relu_model / "pred",
            sparse_threshold=-1e30)                 # below every score: every neuron computed
    src = open_source(out)
    assert src.hparams.act == "relu" and src.hparams.sparse_threshold < -1e29
    ids = list(range(3, 50))
    sparse = prefill_layers(src.hparams, src.get, ids)
    dense = prefill_layers(replace(src.hparams, sparse_threshold=None), src.get, ids)
    assert torch.equal(sparse, dense)
    ref = hf_logits(relu_model, ids)                 # f16 weights vs transformers in f32
    assert np.abs(dense.double().numpy() - ref).max() < 0.05


def test_verify_reports_predictor(relu_model, tmp_path):
    out = tmp_path / "p.gguf"
    hf2gguf(str(relu_model), out, outtype="f16", quiet=True, powerinfer=relu_model / "pred")
    code, stdout, err = cli("verify", relu_model, out, "--json", "--tokens", "64",
                            "--max-kld", "100")
    assert code == 0, err
    sp = json.loads(stdout.strip().splitlines()[-1])["sparse"]
    for key in ("recall", "precision", "fraction_computed", "kld_mean_from_skipping"):
        assert key in sp
    assert 0 < sp["fraction_computed"] < 1 and sp["kld_mean_from_skipping"] > 0
    perfect = tmp_path / "perfect.gguf"
    hf2gguf(str(relu_model), perfect, outtype="f16", quiet=True, powerinfer=relu_model / "pred",
            sparse_threshold=-1e30)
    code, stdout, _ = cli("verify", relu_model, perfect, "--json", "--tokens", "64")
    sp = json.loads(stdout.strip().splitlines()[-1])["sparse"]
    assert sp["recall"] == 1.0 and sp["fraction_computed"] == 1.0
    assert sp["kld_mean_from_skipping"] == 0.0


def test_set_metadata_keeps_magic_and_tensors(relu_model, tmp_path):
    out = tmp_path / "p.gguf"
    hf2gguf(str(relu_model), out, outtype="f16", quiet=True, powerinfer=relu_model / "pred")
    before = read_gguf(out)
    data = {t.name: before.tensor_bytes(t).tobytes() for t in before.tensors}
    assert cli("set-metadata", out, "general.name", "a much longer new name for this file")[0] == 0
    assert cli("set-metadata", out, "powerinfer.sparse_threshold", "0.3", "--type", "f32")[0] == 0
    after = read_gguf(out)
    assert after.magic == b"PWRI"
    assert {t.name: after.tensor_bytes(t).tobytes() for t in after.tensors} == data
    assert abs(after.value("powerinfer.sparse_threshold") - 0.3) < 1e-6
    assert cli("inspect", out)[1].startswith(f"{out}: PWRI v3")


def test_dense_relu_refused_without_a_flag(relu_model, tmp_path):
    code, _, err = cli("hf2gguf", relu_model, "-o", tmp_path / "x.gguf")
    assert code == 2 and "hidden_act 'relu'" in err


def make_sparse_relu_model(folder) -> None:
    """A tiny ReLU-LLaMA whose FFNs are sparse the way trained ReLU models are: the residual
    stream shares a common direction, and most gate rows point away from it."""
    from safetensors.torch import load_file, save_file
    make_tokenizer(folder, "spm")
    tiny.build_model(folder, "llama", hidden_act="relu", num_hidden_layers=3, seed=5)
    t = load_file(folder / "model.safetensors")
    g = torch.Generator().manual_seed(0)
    c = torch.randn(N_EMBD, generator=g)
    c = c / c.norm()
    t["model.embed_tokens.weight"] = t["model.embed_tokens.weight"] + 0.6 * c
    for i in range(3):
        gate = t[f"model.layers.{i}.mlp.gate_proj.weight"]
        quiet = torch.rand(N_FF, generator=g) < 0.85            # 85% of neurons mostly off
        gate[quiet] -= 0.35 * c
        t[f"model.layers.{i}.mlp.gate_proj.weight"] = gate.contiguous()
        t[f"model.layers.{i}.post_attention_layernorm.weight"] = torch.ones(N_EMBD)
    save_file({k: v.contiguous() for k, v in t.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})


def test_train_predictor_reaches_recall_while_skipping(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    make_sparse_relu_model(model)
    text = tmp_path / "calib.txt"
    text.write_text("\n".join(tiny.CORPUS * 3), encoding="utf-8")
    code, stdout, err = cli("train-predictor", model, "--text", text, "--rank", "24", "-o",
                            tmp_path / "pred")
    assert code == 0, err
    rows = [ln.split() for ln in stdout.splitlines() if ln.startswith("layer")]
    assert len(rows) == 3
    recalls = [float(r[5].rstrip("%")) for r in rows]
    computed = [float(r[9].rstrip("%")) for r in rows]
    print(stdout)
    assert min(recalls) >= 95.0, stdout
    assert max(computed) <= 60.0, stdout            # well under the full FFN
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == [
        "config.json", "model_0.pt", "model_1.pt", "model_2.pt"]
    out = tmp_path / "m.powerinfer.gguf"
    code, _, err = cli("hf2gguf", model, "-o", out, "--powerinfer", "--predictor",
                       tmp_path / "pred", "--no-verify")
    assert code == 0, err
    code, stdout, _ = cli("verify", model, out, "--json", "--tokens", "256", "--max-kld", "100")
    sp = json.loads(stdout.strip().splitlines()[-1])["sparse"]
    assert sp["recall"] >= 0.95 and sp["fraction_computed"] < 0.6, sp


@pytest.mark.parametrize("arch_class,model_type,act,gguf_arch,runtime_act", [
    ("SparseLlamaForCausalLM", "sparsellama", "fatrelu", "llama", "relu"),      # ProSparse
    ("BambooForCausalLM", "bamboo", "relu", "bamboo", "drelu"),                 # Bamboo
])
def test_prosparse_and_bamboo_configs(relu_model, tmp_path, arch_class, model_type, act,
                                      gguf_arch, runtime_act):
    import shutil
    model = tmp_path / "m"
    shutil.copytree(relu_model, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(architectures=[arch_class], model_type=model_type, hidden_act=act)
    (model / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "p.gguf"
    hf2gguf(str(model), out, outtype="f16", quiet=True, powerinfer=model / "pred")
    f = read_gguf(out)
    assert f.magic == b"PWRI" and f.value("general.architecture") == gguf_arch
    assert f.value(f"{gguf_arch}.feed_forward_length") == N_FF
    assert open_source(out).hparams.act == runtime_act
    with pytest.raises(InputError, match=f"hidden_act '{act}'"):
        hf2gguf(str(model), tmp_path / "x.gguf", quiet=True)
