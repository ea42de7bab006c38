"""PowerInfer's own sparse families beyond ReLU-LLaMA (shared/specs/powerinfer.md §1, §4.3, and
PowerInfer's llama.cpp build_opt / falcon loaders): ReluFalcon (FalconForCausalLM, new decoder
architecture, ReLU MLP, no gate) and OPT (OPTForCausalLM, ReLU), on tiny seeded checkpoints with
transformers' own classes and SmolLM2's byte-level BPE tokenizer.

- The PWRI file's exact tensor set, shapes and keys; ffn_down_t is the transposed down weight
  (OPT: its bias renamed ffn_down_t.bias); attach-predictor equals hf2gguf --powerinfer (Falcon).
- With a threshold below every score, the sparse run equals the dense run of the same file, and
  that matches transformers (f16 weights); OPT's checkpoint itself matches it in fp32 (< 1e-3,
  which needs the position offset of 2).
- Falcon's predictor reads the layer input (before attn_norm); with a real threshold neurons are
  skipped and the output changes; verify reports recall and what skipping costs.
- OPT has no llama.cpp architecture: a plain GGUF of it is refused in one line."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.support import layernorm_models as lm
from tests.support.compare import hf_logits
from tests.test_layernorm_families import ids_of
from tinyconvert.cli import app
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.formats.predictor import Predictor, save_predictors
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source
from tinyconvert.runtime.model import prefill_layers


def cli(*args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def build_opt(folder, smollm2_hf, seed: int = 0) -> None:
    import torch
    import transformers
    lm.copy_tokenizer(folder, smollm2_hf)
    config = transformers.OPTConfig(
        vocab_size=lm.N_VOCAB, hidden_size=64, ffn_dim=160, num_hidden_layers=2,
        num_attention_heads=4, word_embed_proj_dim=64, max_position_embeddings=256,
        activation_function="relu", do_layer_norm_before=True, init_std=0.08,
        bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    model = transformers.OPTForCausalLM(config)
    from tests.support import tiny
    tiny.perturb(model, sharpen=5.0, norm_names=lm.NORMS + ("layer_norm",))
    model.to(torch.float32).save_pretrained(folder)


@pytest.fixture(scope="module")
def opt_model(tmp_path_factory, smollm2_hf):
    d = tmp_path_factory.mktemp("opt")
    build_opt(d, smollm2_hf)
    return d


@pytest.mark.parametrize("flags", [(), ("--dense-relu",)])
def test_dense_opt_is_refused_in_one_line(opt_model, tmp_path, flags):
    out = tmp_path / "x.gguf"
    code, _, err = cli("hf2gguf", opt_model, "-o", out, "--no-verify", *flags)
    assert code == 2 and err.count("\n") == 1, err
    assert "no OPT architecture" in err and "--powerinfer" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def predictors(n_embd: int, n_ff: int, ranks=(8, 12), seed: int = 0):
    rng = np.random.default_rng(seed)
    return [Predictor((rng.standard_normal((r, n_embd)) * 0.2).astype(np.float32),
                      (rng.standard_normal((n_ff, r)) * 0.2).astype(np.float32)) for r in ranks]


FALCON_FF = 256


@pytest.fixture(scope="module")
def falcon_model(tmp_path_factory, smollm2_hf):
    """ReluFalcon-40B's layout: the new decoder architecture (ln_attn, ln_mlp), ReLU MLP."""
    d = tmp_path_factory.mktemp("relufalcon")
    lm.build(d, "falcon", smollm2_hf, activation="relu", new_decoder_architecture=True,
             num_kv_heads=2, ffn_hidden_size=FALCON_FF)
    save_predictors(d / "pred", predictors(64, FALCON_FF))
    return d


def test_falcon_tensor_set_and_keys(falcon_model, tmp_path):
    out = tmp_path / "f.powerinfer.gguf"
    code, _, err = cli("hf2gguf", falcon_model, "-o", out, "--powerinfer", "--predictor",
                       falcon_model / "pred", "--sparse-threshold", "0.25", "--no-verify")
    assert code == 0, err
    f = read_gguf(out)
    assert f.magic == b"PWRI" and f.value("general.architecture") == "falcon"
    assert f.value("falcon.tensor_data_layout") == "jploski"
    assert f.value("falcon.feed_forward_length") == FALCON_FF
    assert abs(f.value("powerinfer.sparse_threshold") - 0.25) < 1e-7
    t = {x.name: x for x in f.tensors}
    per_layer = ("attn_norm.weight", "attn_norm.bias", "attn_norm_2.weight", "attn_norm_2.bias",
                 "attn_qkv.weight", "attn_output.weight", "ffn_up.weight", "ffn_down_t.weight",
                 "fc1.weight", "fc2.weight")
    want = {"token_embd.weight", "output_norm.weight", "output_norm.bias", "output.weight"} | {
        f"blk.{i}.{n}" for i in range(2) for n in per_layer}
    assert set(t) == want                       # no gate, no ffn_down
    # tied, but PowerInfer's falcon loader requires output.weight: token_embd's copy
    assert f.tensor_bytes(t["output.weight"]).tobytes() == \
        f.tensor_bytes(t["token_embd.weight"]).tobytes()
    for i, r in enumerate((8, 12)):
        assert t[f"blk.{i}.ffn_down_t.weight"].ne == (64, FALCON_FF)
        assert t[f"blk.{i}.ffn_up.weight"].ne == (64, FALCON_FF)
        assert t[f"blk.{i}.fc1.weight"].ne == (64, r)
        assert t[f"blk.{i}.fc2.weight"].ne == (r, FALCON_FF)
        assert t[f"blk.{i}.ffn_down_t.weight"].ggml_type == 1
    from safetensors.torch import load_file
    down = load_file(falcon_model / "model.safetensors")[
        "transformer.h.1.mlp.dense_4h_to_h.weight"]
    got = f.tensor_bytes(t["blk.1.ffn_down_t.weight"]).view(np.float16).reshape(FALCON_FF, 64)
    assert np.array_equal(got, down.T.contiguous().to(torch.float16).numpy())


def sparse_dense_hf(model, out, ids):
    """Logits of the PWRI file run sparsely, the same file run densely, and transformers."""
    src = open_source(out)
    assert src.hparams.act == "relu"
    sparse = prefill_layers(src.hparams, src.get, ids)
    dense = prefill_layers(replace(src.hparams, sparse_threshold=None), src.get, ids)
    return sparse, dense, hf_logits(model, ids)


def test_falcon_perfect_predictor_sparse_equals_dense_and_transformers(falcon_model, tmp_path):
    out = tmp_path / "p.gguf"
    hf2gguf(str(falcon_model), out, outtype="f16", quiet=True,
            powerinfer=falcon_model / "pred", sparse_threshold=-1e30)   # every neuron kept
    ids = ids_of(falcon_model)
    sparse, dense, ref = sparse_dense_hf(falcon_model, out, ids)
    assert torch.equal(sparse, dense)
    diff = np.abs(dense.double().numpy() - ref).max()
    print("relufalcon f16 file vs transformers: max |dlogit|", diff)
    assert diff < 0.05


def test_falcon_skipping_neurons_changes_the_output(falcon_model, tmp_path):
    """A threshold the random predictor misses neurons at: the sparse run differs from the
    dense one (the predictor is in the path), and verify counts recall below 1."""
    out = tmp_path / "p.gguf"
    hf2gguf(str(falcon_model), out, outtype="f16", quiet=True, powerinfer=falcon_model / "pred")
    sparse, dense, _ = sparse_dense_hf(falcon_model, out, ids_of(falcon_model))
    assert not torch.allclose(sparse, dense, atol=1e-3)
    sp = verify_sparse(falcon_model, out, "--max-kld", "100")
    assert 0 < sp["fraction_computed"] < 1 and sp["recall"] < 1
    assert sp["kld_mean_from_skipping"] > 0


def test_falcon_verify_reports_perfect_recall(falcon_model, tmp_path):
    out = tmp_path / "p.gguf"
    hf2gguf(str(falcon_model), out, outtype="f16", quiet=True,
            powerinfer=falcon_model / "pred", sparse_threshold=-1e30)
    sp = verify_sparse(falcon_model, out)
    assert sp["recall"] == 1.0 and sp["fraction_computed"] == 1.0
    assert sp["kld_mean_from_skipping"] == 0.0


def verify_sparse(model, out, *extra) -> dict:
    code, stdout, err = cli("verify", model, out, "--json", "--tokens", "64", *extra)
    assert code == 0, err
    return json.loads(stdout.strip().splitlines()[-1])["sparse"]


def test_falcon_attach_equals_hf2gguf_byte_for_byte(falcon_model, tmp_path):
    dense = tmp_path / "dense.gguf"
    code, _, err = cli("hf2gguf", falcon_model, "-o", dense, "--outtype", "f16", "--dense-relu",
                       "--no-verify")
    assert code == 0, err
    code, _, err = cli("attach-predictor", dense, falcon_model / "pred", "-o", tmp_path / "a.gguf",
                       "--sparse-threshold", "0.1")
    assert code == 0, err
    hf2gguf(str(falcon_model), tmp_path / "b.gguf", outtype="f16", quiet=True,
            powerinfer=falcon_model / "pred", sparse_threshold=0.1)
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()


def test_falcon_predictor_reads_the_layer_input(falcon_model, tmp_path):
    """The neurons kept in layer i are those whose score fc2(relu(fc1(x))) on the layer's input x
    (before attn_norm; spec §1) reaches the threshold, computed here in numpy from the file."""
    from tinyconvert.runtime.model import block, embed, rope_tables
    out = tmp_path / "p.gguf"
    hf2gguf(str(falcon_model), out, outtype="f16", quiet=True, powerinfer=falcon_model / "pred",
            sparse_threshold=0.05)
    src = open_source(out)
    hp, ids = src.hparams, ids_of(falcon_model)
    h, seen = embed(hp, src.get, ids), {}
    ropes = rope_tables(hp, src.get, 0, len(ids))
    for i in range(hp.n_layer):
        x = h.double().numpy()
        fc1, fc2 = (src.get(f"blk.{i}.{n}.weight").double().numpy() for n in ("fc1", "fc2"))
        want = np.maximum(x @ fc1.T, 0) @ fc2.T >= 0.05
        h = block(hp, src.get, i, h, *ropes[i], observe=lambda j, keep, active:
                  seen.update({j: keep.numpy()}))
        assert 0.05 < want.mean() < 0.95
        assert (seen[i] == want).mean() > 0.999, i      # fp32 vs fp64 at the threshold's edge


OPT_FF = 160


@pytest.fixture(scope="module")
def opt_pwri(opt_model, tmp_path_factory):
    save_predictors(opt_model / "pred", predictors(64, OPT_FF, seed=1))
    out = tmp_path_factory.mktemp("optp") / "opt.powerinfer.gguf"
    code, _, err = cli("hf2gguf", opt_model, "-o", out, "--powerinfer", "--predictor",
                       opt_model / "pred", "--sparse-threshold", "-1e30", "--no-verify")
    assert code == 0, err
    return out


def test_opt_tensor_set_and_keys(opt_model, opt_pwri):
    f = read_gguf(opt_pwri)
    assert f.magic == b"PWRI" and f.value("general.architecture") == "opt"
    assert f.value("opt.context_length") == 256 + 2 and f.value("opt.feed_forward_length") == OPT_FF
    assert f.value("opt.embedding_length") == 64 and f.value("opt.attention.head_count") == 4
    t = {x.name: x for x in f.tensors}
    per_layer = [f"{n}.{wb}" for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                       "ffn_norm", "ffn_up", "ffn_down_t") for wb in ("weight", "bias")]
    want = {"token_embd.weight", "position_embd.weight", "output_norm.weight",
            "output_norm.bias"} | {f"blk.{i}.{n}" for i in range(2)
                                   for n in per_layer + ["fc1.weight", "fc2.weight"]}
    assert set(t) == want                     # no output (tied), no gate, no ffn_down
    assert t["position_embd.weight"].ne == (64, 256 + 2)
    assert t["blk.0.ffn_down_t.weight"].ne == (64, OPT_FF) and t["blk.0.ffn_down_t.bias"].ne == (64,)
    assert t["blk.0.ffn_up.bias"].ne == (OPT_FF,)
    from safetensors.torch import load_file
    hf = load_file(opt_model / "model.safetensors")
    got = f.tensor_bytes(t["blk.1.ffn_down_t.weight"]).view(np.float16).reshape(OPT_FF, 64)
    want_t = hf["model.decoder.layers.1.fc2.weight"].T.contiguous().to(torch.float16).numpy()
    assert np.array_equal(got, want_t)
    assert np.array_equal(f.tensor_bytes(t["blk.1.ffn_down_t.bias"]).view(np.float32),
                          hf["model.decoder.layers.1.fc2.bias"].numpy())


def test_opt_perfect_predictor_sparse_equals_dense_and_transformers(opt_model, opt_pwri):
    ids = ids_of(opt_model)
    sparse, dense, ref = sparse_dense_hf(opt_model, opt_pwri, ids)
    assert torch.equal(sparse, dense)
    diff = np.abs(dense.double().numpy() - ref).max()
    print("opt f16 file vs transformers: max |dlogit|", diff)
    assert diff < 0.05
    src = open_source(opt_model)                     # the checkpoint itself, in fp32
    ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
    print("opt checkpoint vs transformers: max |dlogit|", np.abs(ours - ref).max())
    assert np.abs(ours - ref).max() < 1e-3


def test_opt_verify_reports_recall(opt_model, opt_pwri, tmp_path):
    sp = verify_sparse(opt_model, opt_pwri)
    assert sp["recall"] == 1.0 and sp["fraction_computed"] == 1.0
    assert sp["kld_mean_from_skipping"] == 0.0
    out = tmp_path / "p.gguf"
    hf2gguf(str(opt_model), out, outtype="f16", quiet=True, powerinfer=opt_model / "pred")
    sp = verify_sparse(opt_model, out, "--max-kld", "100")
    assert 0 < sp["fraction_computed"] < 1 and sp["recall"] < 1
    assert sp["kld_mean_from_skipping"] > 0


def hf_ffn_inputs(model, ids, family: str):
    """Per layer, from transformers' own modules: (what the predictor reads, neurons whose ReLU
    output is not zero). Falcon: the decoder layer's input; OPT: the residual entering
    final_layer_norm."""
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    layers = m.transformer.h if family == "falcon" else m.model.decoder.layers
    xs, acts, hooks = {}, {}, []
    for i, layer in enumerate(layers):
        reads = layer if family == "falcon" else layer.final_layer_norm
        act = layer.mlp.act if family == "falcon" else layer.activation_fn
        def read(mod, args, kw, i=i):
            x = args[0] if args else kw["hidden_states"]
            xs[i] = x.reshape(-1, x.shape[-1])          # OPT flattens the batch before its MLP

        def fired(mod, args, out, i=i):
            acts[i] = out.reshape(-1, out.shape[-1])
        hooks += [reads.register_forward_pre_hook(read, with_kwargs=True),
                  act.register_forward_hook(fired)]
    with torch.no_grad():
        m(torch.tensor([ids]))
    for hk in hooks:
        hk.remove()
    return xs, acts


@pytest.mark.parametrize("family", ["falcon", "opt"])
def test_ffn_inputs_are_transformers_predictor_inputs_and_activity(family, request):
    """What train-predictor learns from (runtime.model.ffn_inputs, on the checkpoint) is what
    transformers computes: the predictor's input and the ReLU's nonzero neurons."""
    from tinyconvert.runtime.model import ffn_inputs
    model = request.getfixturevalue(f"{family}_model")
    ids = ids_of(model)
    xs, acts = hf_ffn_inputs(model, ids, family)
    src = open_source(model)
    n = 0
    for i, x, active in ffn_inputs(replace(src.hparams, sparse_threshold=None), src.get, ids):
        assert torch.allclose(x.float(), xs[i], atol=1e-4), (family, i)
        assert (active == (acts[i] > 0)).float().mean() > 0.999, (family, i)
        assert 0.1 < active.float().mean() < 0.9
        n += 1
    assert n == 2


@pytest.mark.parametrize("family", ["falcon", "opt"])
def test_train_predictor_then_verify(family, request, tmp_path):
    """train-predictor learns these families' predictors from ffn_inputs; the file they make is
    verified against transformers, with the predictor's recall on other text reported. (Random
    tiny models fire about half their neurons, so there is less to skip than in a trained one.)"""
    from tests.support import tiny
    model = request.getfixturevalue(f"{family}_model")
    text = tmp_path / "calib.txt"
    text.write_text("\n".join(tiny.CORPUS * 3), encoding="utf-8")
    code, stdout, err = cli("train-predictor", model, "--text", text, "--rank", "24", "-o",
                            tmp_path / "pred")
    assert code == 0, err
    print(stdout)
    out = tmp_path / "p.gguf"
    code, _, err = cli("hf2gguf", model, "-o", out, "--powerinfer", "--predictor",
                       tmp_path / "pred", "--no-verify")
    assert code == 0, err
    sp = verify_sparse(model, out, "--max-kld", "100")
    print(family, sp)
    assert sp["recall"] >= 0.9 and sp["fraction_computed"] < 0.85, sp
