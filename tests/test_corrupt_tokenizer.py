"""A corrupt SentencePiece tokenizer.model (truncated, random bytes, a piece that is not UTF-8,
a field cut short inside a piece) is one line and exit 2 from hf2gguf, with nothing written and
the checkpoint untouched."""
from __future__ import annotations

import random

import pytest

from tests.support import tiny
from tests.test_cli_errors import copy_model, expect_error
from tests.test_tiny_models import make_tokenizer


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spm")
    make_tokenizer(folder, "spm")
    tiny.build_model(folder, "llama")
    return folder


def _truncated(data: bytes, seed: int) -> bytes:
    return data[:len(data) * (seed + 1) // 7]


def _random(data: bytes, seed: int) -> bytes:
    return random.Random(seed).randbytes(len(data))


def _bad_utf8(data: bytes, seed: int) -> bytes:
    at = data.index(b"<unk>")
    return data[:at] + b"\xff\xfe\xfd\xfc\xfb" + data[at + 5:]


def _short_score(data: bytes, seed: int) -> bytes:
    """A first piece whose fixed32 score has only 3 bytes left inside the piece's message."""
    inner = b"\x0a\x05<unk>" + b"\x15\x00\x00\x80"       # field 1 "<unk>", field 2 cut short
    return b"\x0a" + bytes([len(inner)]) + inner + data


MUTATIONS = {"truncated": _truncated, "random": _random, "bad-utf8": _bad_utf8,
             "short-score": _short_score}


CASES = [("truncated", s) for s in range(3)] + [("random", s) for s in range(3)] + \
    [("bad-utf8", 0), ("short-score", 0)]


@pytest.mark.parametrize("kind,seed", CASES)
def test_corrupt_tokenizer_model(spm_model, tmp_path, kind, seed):
    model = copy_model(spm_model, tmp_path)
    path = model / "tokenizer.model"
    path.write_bytes(MUTATIONS[kind](path.read_bytes(), seed))
    out = tmp_path / "out"
    out.mkdir()
    expect_error(model, out, r"tokenizer\.model")
