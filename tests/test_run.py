"""`tinyconvert run`: greedy generation from the real SmolLM2 GGUF (as llama.cpp wrote it, Q4_1)
equals transformers' greedy generation token for token."""
from __future__ import annotations

import torch
from typer.testing import CliRunner

from tests.support.smollm2 import smollm2_gguf
from tinyconvert.cli import app
from tinyconvert.checks.generate import generate, render_chat
from tinyconvert.pipeline.sources import open_source
from tinyconvert.checks.tokenizers.tokenizer import tokenizer_for

PROMPT = "Give three facts about the Moon."


def test_greedy_equals_transformers(smollm2_hf):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    hf_tok = AutoTokenizer.from_pretrained(smollm2_hf)
    chat = hf_tok.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False,
                                      add_generation_prompt=True)
    ours_chat = render_chat(tokenizer_for(open_source(smollm2_gguf())), PROMPT)
    assert ours_chat == chat
    ids = hf_tok(chat, add_special_tokens=False, return_tensors="pt")["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(smollm2_hf, dtype=torch.float32)
    want = model.generate(ids, max_new_tokens=48, do_sample=False)[0, ids.shape[1]:].tolist()
    if hf_tok.eos_token_id in want:
        want = want[: want.index(hf_tok.eos_token_id)]
    got = generate(str(smollm2_gguf()), PROMPT, chat=True, max_tokens=48)
    assert got == want
    assert len(got) >= 20


def test_cli_streams_text(tmp_path):
    res = CliRunner().invoke(app, ["run", str(smollm2_gguf()), "-p",
                                   "What is the capital of France?", "--chat", "--max-tokens",
                                   "16"])
    assert res.exit_code == 0, res.output
    assert "Paris" in res.stdout


def test_sampling_is_seeded():
    a = generate(str(smollm2_gguf()), "Once upon a time", max_tokens=12, temperature=0.9,
                 top_p=0.9, seed=7)
    b = generate(str(smollm2_gguf()), "Once upon a time", max_tokens=12, temperature=0.9,
                 top_p=0.9, seed=7)
    assert a == b and len(a) == 12
