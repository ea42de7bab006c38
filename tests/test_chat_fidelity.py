"""Chat fidelity (issue 15, section 2): the template, end-of-generation ids and BOS of a GGUF are
checked against the HF checkpoint, with llama.cpp's own EOG set and transformers' own
apply_chat_template as the oracles; broken files are caught, good ones pass."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.support.llamacpp_src import vocab_files
from tests.test_tiny_models import bpe
from tinyconvert.checks.tokenizers import chat
from tinyconvert.checks.llamacpp import open_llama
from tinyconvert.checks.tokenizers.special_tokens import special_tokens
from tinyconvert.checks.tokenizers.tokenizer import hf_tokenizer
from tinyconvert.checks.verify import verify
from tinyconvert.cli import app
from tinyconvert.edit.metaedit import apply_edits, make_set
from tinyconvert.formats import gguf_file as gf
from tinyconvert.pipeline.hf2gguf import hf2gguf

LLAMA2_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + "
                   "m['content'] + ' [/INST]' }}{% else %}{{ ' ' + m['content'] + eos_token }}"
                   "{% endif %}{% endfor %}")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return vocab_files(tmp_path_factory.mktemp("llamacpp"))


@pytest.fixture(scope="module")
def smollm2_gguf(smollm2_hf, tmp_path_factory):
    out = tmp_path_factory.mktemp("smol") / "smollm2.gguf"
    hf2gguf(str(smollm2_hf), out, outtype="f16", quiet=True)
    return out


@pytest.fixture(scope="module")
def chatml(tmp_path_factory):
    """A tiny ChatML model whose generation_config also stops on a token of its own."""
    folder = tmp_path_factory.mktemp("chatml")
    steps, ignore = bpe("qwen2")
    tiny.train_bpe(folder, steps, ignore_merges=ignore, extra_tokens=("<|turn_end|>",))
    tiny.build_model(folder, "qwen2", sharpen=5.0)
    out = folder.parent / "chatml.gguf"
    hf2gguf(str(folder), out, outtype="f32", quiet=True)
    return folder, out


def _eog_by_llamacpp(path) -> set[int]:
    import llama_cpp
    llm = open_llama(path, vocab_only=True, verbose=False)
    try:
        vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        return {i for i in range(llama_cpp.llama_vocab_n_tokens(vocab))
                if llama_cpp.llama_vocab_is_eog(vocab, i)}
    finally:
        llm.close()


@pytest.mark.parametrize("name", ["qwen2", "llama-bpe", "phi-3", "llama-spm", "command-r",
                                  "deepseek-llm", "starcoder", "gpt-2", "nomic-bert-moe"])
def test_eog_set_is_llamacpps(models, name):
    path = models / f"ggml-vocab-{name}.gguf"
    assert set(special_tokens(gf.read_gguf(path).values()).eog) == _eog_by_llamacpp(path)


def test_hf_side_renders_like_transformers(smollm2_hf, chatml):
    from transformers import AutoTokenizer
    for folder in (smollm2_hf, chatml[0]):
        theirs, ours = AutoTokenizer.from_pretrained(folder), hf_tokenizer(folder)
        for name, messages, gen in chat.CONVERSATIONS:
            want = theirs.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen)
            want = want["input_ids"] if hasattr(want, "keys") else want
            text = chat.render(ours.chat_template, messages, add_generation_prompt=gen,
                               tokens=chat.hf_special_texts(folder, ours))
            assert ours.encode(text, add_special=False) == list(want), (folder.name, name)


def test_smollm2_conversion_chats_like_hf(smollm2_hf, smollm2_gguf):
    fields = gf.read_gguf(smollm2_gguf).values()
    assert chat.check_against_hf(smollm2_hf, fields) == []
    assert set(special_tokens(fields).eog) == _eog_by_llamacpp(smollm2_gguf)


def test_wrong_template_and_missing_eog_fail_verify(tmp_path, chatml):
    folder, good = chatml
    (folder / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [2, hf_tokenizer(folder).backend.token_to_id("<|turn_end|>")]}))
    report = verify(str(folder), good, tokens=16)
    assert [f.check for f in report.chat] == ["eog"] and not report.passed
    assert "<|turn_end|>" in report.chat[0].message
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    assert verify(str(folder), good, tokens=16).passed
    bad = tmp_path / "bad.gguf"
    apply_edits(good, [make_set(gf.read_gguf(good), "tokenizer.chat_template",
                                LLAMA2_TEMPLATE)], bad)
    report = verify(str(folder), bad, tokens=16)
    assert {f.check for f in report.chat} == {"template"} and not report.passed
    assert len(report.as_json()["chat"]) == len(report.chat) == len(chat.CONVERSATIONS)


def test_set_metadata_checks_the_template_against_the_file(tmp_path, chatml):
    _, good = chatml
    target = tmp_path / "m.gguf"
    target.write_bytes(good.read_bytes())
    ok = tmp_path / "ok.jinja"
    ok.write_text(tiny.CHAT_TEMPLATE)
    res = CliRunner().invoke(app, ["set-metadata", str(target), "--chat-template-file", str(ok)])
    assert res.exit_code == 0, res.output
    never_stops = tmp_path / "never.jinja"
    never_stops.write_text(tiny.CHAT_TEMPLATE.replace("<|im_end|>", "<|im_start|>"))
    res = CliRunner().invoke(app, ["set-metadata", str(target), "--chat-template-file",
                                   str(never_stops)])
    assert res.exit_code == 3 and "end_of_turn" in res.output, res.output
    bos_first = tmp_path / "bos.jinja"
    bos_first.write_text("{{ eos_token }}" + tiny.CHAT_TEMPLATE)
    fields = dict(gf.read_gguf(target).values(), **{
        "tokenizer.chat_template": bos_first.read_text(), "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.bos_token_id": gf.read_gguf(target).value("tokenizer.ggml.eos_token_id")})
    findings = chat.check_file(fields)
    assert [(f.check, f.fails) for f in findings] == [("bos", False)]
