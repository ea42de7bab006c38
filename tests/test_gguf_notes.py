"""gguf-py's warnings and the tokenizer entries a GGUF cannot hold are not silenced: each is a
note in the command's output (stderr, and the --json object), and where the file would run
wrongly in llama.cpp the conversion is refused (one line, exit 2, nothing written)."""
from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.test_cli_errors import copy_model, expect_error, good  # noqa: F401 - fixture
from tests.test_tiny_models import make_tokenizer
from tinyconvert.cli import app


def convert_json(model, out):
    r = CliRunner().invoke(app, ["hf2gguf", str(model), "-o", str(out), "--outtype", "f16",
                                 "--no-verify", "--json"])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_gguf_logger_is_left_as_found(good, tmp_path):  # noqa: F811
    logger = logging.getLogger("gguf")
    before = (logger.level, logger.propagate, list(logger.handlers))
    convert_json(good, tmp_path / "x.gguf")
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_special_id_out_of_range_is_a_note(good, tmp_path):  # noqa: F811
    model = copy_model(good, tmp_path)
    edit_json(model / "tokenizer_config.json", pad_token=None)
    edit_json(model / "config.json", pad_token_id=99999)
    result, err = convert_json(model, tmp_path / "x.gguf")
    notes = [n for n in result["notes"] if "pad" in n and "99999" in n]
    assert len(notes) == 1, result["notes"]
    assert f"warning: {notes[0]}" in err
    assert result["verify"] is None and (tmp_path / "x.gguf").is_file()


def test_eos_out_of_range_is_refused(good, tmp_path):  # noqa: F811
    model = copy_model(good, tmp_path)
    edit_json(model / "tokenizer_config.json", eos_token=None)
    edit_json(model / "config.json", eos_token_id=99999)
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, r"eos token id 99999 is past the vocabulary")


def test_bpe_without_merges_is_refused(good, tmp_path):  # noqa: F811
    model = copy_model(good, tmp_path)
    tj = json.loads((model / "tokenizer.json").read_text())
    tj["model"]["merges"] = []
    (model / "tokenizer.json").write_text(json.dumps(tj))
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, r"no BPE merges")


@pytest.fixture(scope="module")
def spm_small_vocab(tmp_path_factory):
    """A 1000-piece tokenizer.model on a model with 990 embedding rows (vocab_size 990)."""
    folder = tmp_path_factory.mktemp("spm990")
    make_tokenizer(folder, "spm")
    tiny.build_model(folder, "llama", n_vocab=990)
    return folder


def test_pieces_and_added_tokens_past_vocab_are_notes(spm_small_vocab, tmp_path):
    model = copy_model(spm_small_vocab, tmp_path)
    (model / "added_tokens.json").write_text(json.dumps({"<extra>": 5000}))
    result, err = convert_json(model, tmp_path / "x.gguf")
    pieces = [n for n in result["notes"] if "10 tokenizer.model piece(s)" in n]
    added = [n for n in result["notes"] if "1 added token(s)" in n and "5000 '<extra>'" in n]
    assert len(pieces) == 1 and len(added) == 1, result["notes"]
    assert "past vocab_size 990" in pieces[0]
    assert f"warning: {pieces[0]}" in err and f"warning: {added[0]}" in err


def test_quantize_from_checkpoint_carries_the_notes(spm_small_vocab, tmp_path):
    r = CliRunner().invoke(app, ["quantize", str(spm_small_vocab), "-o", str(tmp_path / "q.gguf"),
                                 "--type", "q8_0", "--no-verify", "--json"])
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["mix"] == "q8_0" and result["path"] == str(tmp_path / "q.gguf")
    assert any("10 tokenizer.model piece(s)" in n for n in result["notes"]), result["notes"]
    assert "warning: " in r.stderr
