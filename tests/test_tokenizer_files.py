"""Hostile or broken tokenizer.json / tokenizer_config.json fields (found by
tests/test_fuzz_pipeline.py and probes around it): one line, exit 2, nothing written, never a
TypeError from deep inside the vocabulary builder or gguf-py."""
from __future__ import annotations

import json

import pytest

from tests.test_cli_errors import copy_model, expect_error, good  # noqa: F401 - fixture


def _vocab_id(tj, value):
    tj["model"]["vocab"][sorted(tj["model"]["vocab"])[0]] = value


def _merge(tj, value):
    tj["model"]["merges"][0] = value


def _added(tj, value):
    tj["added_tokens"][0]["id"] = value


def _top(key):
    def edit(tj, value):
        tj[key] = value
    return edit


TOKENIZER_JSON = [
    ("vocab-none", _vocab_id, None, r"has id None, not an integer"),
    ("vocab-negative", _vocab_id, -1, r"has id -1, not an integer"),
    ("vocab-bool", _vocab_id, True, r"has id True, not an integer"),
    ("merge-int", _merge, 5, r"merge 5 is neither"),
    ("merge-triple", _merge, ["a", "b", "c"], r"is neither 'a b' nor a pair"),
    ("added-id-string", _added, "3", r"needs a string content and an integer id"),
    ("added-tokens-int", _top("added_tokens"), -1, r"added_tokens is not a list"),
    ("model-list", _top("model"), [], r"has no model object"),
    ("post-processor-list", _top("post_processor"), [1], r"post_processor is \[1\], not an object"),
    ("pre-tokenizer-string", _top("pre_tokenizer"), "x", r"pre_tokenizer is 'x', not an object"),
]


@pytest.mark.parametrize("name,edit,value,pattern", TOKENIZER_JSON,
                         ids=[c[0] for c in TOKENIZER_JSON])
def test_tokenizer_json_field(good, tmp_path, name, edit, value, pattern):  # noqa: F811
    model = copy_model(good, tmp_path)
    tj = json.loads((model / "tokenizer.json").read_text())
    edit(tj, value)
    (model / "tokenizer.json").write_text(json.dumps(tj))
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, r"tokenizer\.json: .*" + pattern)


TOKENIZER_CONFIG = [
    ("bos_token", 5, r"bos_token is 5; expected a token string"),
    ("eos_token", {"content": 7}, r"eos_token is \{'content': 7\}"),
    ("add_bos_token", "yes", r"add_bos_token is 'yes', not true or false"),
    ("chat_template", 5, r"chat_template is neither a string nor a list"),
    ("added_tokens_decoder", [], r"added_tokens_decoder is not an object"),
    ("added_tokens_decoder", {"x": {}}, r"added_tokens_decoder entry 'x' is not an id"),
    ("added_tokens_decoder", {"5": {"content": 7}}, r"added_tokens_decoder entry '5' is not"),
]


@pytest.mark.parametrize("key,value,pattern", TOKENIZER_CONFIG,
                         ids=[f"{k}={v!r}" for k, v, _ in TOKENIZER_CONFIG])
def test_tokenizer_config_field(good, tmp_path, key, value, pattern):  # noqa: F811
    model = copy_model(good, tmp_path)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg[key] = value
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, r"tokenizer_config\.json: .*" + pattern)


def test_negative_special_id_in_config_json(good, tmp_path):  # noqa: F811
    """gguf-py raises ValueError on it; that is still the input's fault."""
    model = copy_model(good, tmp_path)
    cfg = json.loads((model / "config.json").read_text())
    cfg["pad_token_id"] = -3
    (model / "config.json").write_text(json.dumps(cfg))
    tc = json.loads((model / "tokenizer_config.json").read_text())
    tc["pad_token"] = None
    (model / "tokenizer_config.json").write_text(json.dumps(tc))
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, r"gguf-py cannot read the tokenizer files \(ValueError: invalid "
                             r"value for special token type pad: -3\)")
