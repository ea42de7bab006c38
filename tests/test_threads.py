"""--threads (issue 19, speed): one default, the cores this process may use, for every command
that computes; hf2gguf --outtype q4_k_m quantizes on the same threads as quantize; a bad count
is one line and exit 2."""
from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.test_tiny_models import make_tokenizer
from tinyconvert.cli import COMMANDS, app
from tinyconvert.formats.errors import InputError
from tinyconvert.io.threads import machine_threads, resolve_threads
from tinyconvert.pipeline import hf2gguf as hf2gguf_mod
from tinyconvert.pipeline import quantize as quantize_mod

COMPUTING = ("hf2gguf", "quantize", "attach-predictor", "train-predictor", "verify", "run")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("threads")
    make_tokenizer(d, "gpt-2")
    tiny.build_model(d, "llama", hidden_size=256, intermediate_size=512, num_hidden_layers=1,
                     n_kv_head=1)
    return d


def test_default_is_this_process_cores():
    assert machine_threads() == len(os.sched_getaffinity(0))
    assert resolve_threads(None) == machine_threads()
    assert resolve_threads(3) == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="--threads"):
            resolve_threads(bad)


def test_every_computing_command_has_the_option():
    for name in COMPUTING:
        r = CliRunner().invoke(app, [name, "--help"], terminal_width=200)
        assert r.exit_code == 0 and "--threads" in r.stdout, name
    assert set(COMPUTING) <= set(COMMANDS)


def _capture_threads(monkeypatch) -> list[int]:
    seen = []
    for mod in (hf2gguf_mod, quantize_mod):
        real = mod.stream_tensors

        def spy(f, planned, alignment, bar=None, threads=1, real=real):
            seen.append(threads)
            return real(f, planned, alignment, bar, threads)
        monkeypatch.setattr(mod, "stream_tensors", spy)
    return seen


def test_hf2gguf_q4_k_m_and_quantize_use_the_same_threads(tiny_model, tmp_path, monkeypatch):
    seen = _capture_threads(monkeypatch)
    runner = CliRunner()
    for args in (["hf2gguf", tiny_model, "-o", tmp_path / "a.gguf", "--outtype", "q4_k_m"],
                 ["quantize", tiny_model, "-o", tmp_path / "b.gguf", "-t", "q4_k_m"]):
        r = runner.invoke(app, [str(a) for a in args] + ["--no-verify", "-q"])
        assert r.exit_code == 0, r.output
    assert seen == [machine_threads()] * 2
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()
    r = runner.invoke(app, ["hf2gguf", str(tiny_model), "-o", str(tmp_path / "c.gguf"),
                            "--outtype", "q4_k_m", "--threads", "3", "--no-verify", "-q"])
    assert r.exit_code == 0 and seen[-1] == 3


@pytest.mark.parametrize("name", ["hf2gguf", "quantize", "verify"])
def test_bad_thread_count_is_one_line(tiny_model, tmp_path, name):
    args = {"hf2gguf": ["hf2gguf", tiny_model, "-o", tmp_path / "x.gguf"],
            "quantize": ["quantize", tiny_model, "-o", tmp_path / "x.gguf", "-t", "q8_0"],
            "verify": ["verify", tiny_model, tmp_path / "none.gguf"]}[name]
    r = CliRunner().invoke(app, [str(a) for a in args] + ["--threads", "0"])
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0 and "--threads" in r.stderr, r.stderr
    assert not (tmp_path / "x.gguf").exists()
