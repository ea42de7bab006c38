"""PowerInfer's own sparse families beyond ReLU-LLaMA (shared/specs/powerinfer.md §1, §4.3):
ReluFalcon (FalconForCausalLM with a ReLU MLP, no gate) and OPT, on tiny seeded checkpoints with
transformers' own classes and SmolLM2's byte-level BPE tokenizer. OPT has no llama.cpp
architecture, so a plain GGUF of it is refused."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.support import layernorm_models as lm
from tinyconvert.cli import app


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
