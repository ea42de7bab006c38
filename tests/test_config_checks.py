"""config.json values from a hostile or broken checkpoint: wrong types, absurd sizes and counts
the tensors contradict are one line and exit 2 from hf2gguf, with no output and the input
untouched (and no billion-layer name map built on the way)."""
from __future__ import annotations

import json

import pytest

from tests.test_cli_errors import copy_model, expect_error, good  # noqa: F401 - fixture

CASES = [
    ("num_hidden_layers", 1_000_000_000, r"num_hidden_layers = 1000000000 is outside"),
    ("num_hidden_layers", 4000, r"claims 4000 layers but the checkpoint has only \d+ tensors"),
    ("num_hidden_layers", 2.0, r"num_hidden_layers is 2\.0 \(float\); it must be an integer"),
    ("hidden_size", 64.0, r"hidden_size is 64\.0 \(float\)"),
    ("num_attention_heads", "4", r"num_attention_heads is '4' \(str\)"),
    ("num_key_value_heads", True, r"num_key_value_heads is True \(bool\)"),
    ("num_key_value_heads", 3, r"not a multiple of num_key_value_heads 3"),
    ("intermediate_size", 1e30, r"intermediate_size is 1e\+30 \(float\)"),
    ("vocab_size", -5, r"vocab_size = -5 is outside"),
    ("vocab_size", "delta", r"vocab_size is 'delta'"),
    ("max_position_embeddings", 2**40, r"max_position_embeddings = 1099511627776 is outside"),
    ("rope_theta", "big", r"rope_theta is 'big'; it must be a positive finite number"),
    ("rms_norm_eps", -1e-5, r"rms_norm_eps is -1e-05"),
    ("rope_scaling", "linear", r"rope_scaling is 'linear'; it must be a JSON object"),
    ("architectures", "LlamaForCausalLM", r"architectures is 'LlamaForCausalLM'; it must be a list"),
    ("text_config", [1], r"text_config must be a JSON object"),
    # found by tests/test_fuzz_pipeline.py and its probes: these wrote a file (or crashed later)
    ("rope_parameters", {"rope_type": "default", "rope_theta": "x"},
     r"rope_parameters: rope_theta is 'x'; it must be a finite number"),
    ("rope_parameters", {"rope_type": "default", "rope_theta": -5},
     r"rope_parameters: rope_theta is -5; it must be positive"),
    ("rope_parameters", {"full_attention": 5}, r"rope_parameters\.full_attention is 5"),
    ("rope_parameters", {"rope_type": "linear", "factor": "x", "rope_theta": 1e4},
     r"factor is 'x'"),
    ("head_dim", 7, r"blk\.0\.attn_q has 64 rows, but config\.json gives 4 heads of 7"),
    ("num_key_value_heads", 1, r"blk\.0\.attn_k has 32 rows, but config\.json gives 1 heads of 16"),
    ("num_local_experts", 4, r"says 4 experts, but the checkpoint has no expert tensors"),
    ("num_experts_per_tok", 9, r"9 experts used per token, but only 0 experts"),
    ("tie_word_embeddings", "yes", r"tie_word_embeddings is 'yes', not true or false"),
    ("sliding_window", "x", r"sliding_window is 'x' \(str\)"),
]


@pytest.mark.parametrize("key,value,pattern", CASES, ids=[f"{k}={v!r}" for k, v, _ in CASES])
def test_config_value_refused(good, tmp_path, key, value, pattern):  # noqa: F811
    model = copy_model(good, tmp_path)
    cfg = json.loads((model / "config.json").read_text())
    cfg[key] = value
    (model / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, pattern)


def test_vocab_size_must_match_embedding(good, tmp_path):  # noqa: F811
    """The token list hf2gguf writes has vocab_size entries; llama.cpp refuses a token_embd with
    another row count, so the file would not load."""
    model = copy_model(good, tmp_path)
    cfg = json.loads((model / "config.json").read_text())
    cfg["vocab_size"] += 1
    (model / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, rf"vocab_size {cfg['vocab_size']} differs from the token "
                             rf"embedding's {cfg['vocab_size'] - 1} rows")


def test_hidden_size_must_match_embedding(good, tmp_path):  # noqa: F811
    model = copy_model(good, tmp_path)
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(hidden_size=128, head_dim=16)        # heads still fit; the embedding does not
    (model / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, r"hidden_size 128 differs from the token embedding's width 64")


def test_config_not_an_object(good, tmp_path):  # noqa: F811
    model = copy_model(good, tmp_path)
    (model / "config.json").write_text("[1, 2]")
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, "config.json is not a JSON object")
