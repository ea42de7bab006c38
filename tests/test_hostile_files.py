"""Hostile and broken files: mutated real GGUF and safetensors files must either parse or give
an InputError (one line, exit 2 from the CLI), within a second and a few MB; never another
exception, a hang or a huge allocation. Hypothesis drives the mutations."""
from __future__ import annotations

import struct
import subprocess
import sys
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import tiny
from tests.test_tiny_models import make_tokenizer
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.formats.safetensors_file import read_header
from tinyconvert.pipeline.hf2gguf import hf2gguf

CASES = {"gguf": 0, "safetensors": 0}
MAX_SECONDS, MAX_BYTES = 1.0, 16 << 20


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    make_tokenizer(d, "gpt-2")
    tiny.build_model(d, "llama")
    hf2gguf(str(d), d / "m.gguf", outtype="q8_0", quiet=True)
    g = read_gguf(d / "m.gguf")
    return {"gguf": (d / "m.gguf").read_bytes(), "gguf_header": g.data_start,
            "safetensors": (d / "model.safetensors").read_bytes()}


def mutations(header_len_key: str):
    flip = st.tuples(st.just("flip"), st.integers(0, 10**9), st.integers(0, 255))
    big = st.tuples(st.just("u64"), st.integers(0, 10**9),
                    st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**32, 2**48, 2**63, 2**64 - 1]))
    cut = st.tuples(st.just("truncate"), st.integers(0, 10**9), st.just(0))
    grow = st.tuples(st.just("insert"), st.integers(0, 10**9), st.integers(0, 255))
    return st.lists(st.one_of(flip, big, cut, grow), min_size=1, max_size=4)


def apply(data: bytes, ops, hot: int) -> bytes:
    """Positions mostly land in the first `hot` bytes (header, keys, tensor infos)."""
    b = bytearray(data)
    for kind, pos, val in ops:
        at = pos % max(1, min(len(b), hot + 64)) if pos % 4 else pos % max(1, len(b))
        if kind == "flip" and b:
            b[at] = val
        elif kind == "u64":
            b[at:at + 8] = struct.pack("<Q", val)
        elif kind == "truncate":
            del b[at:]
        elif kind == "insert":
            b[at:at] = bytes([val]) * (1 + pos % 7)
    return bytes(b)


def check_bounded(fn, path):
    tracemalloc.start()
    t = time.perf_counter()
    try:
        result = fn(path)
    except InputError as e:
        assert "\n" not in str(e)
        result = None
    finally:
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert seconds < MAX_SECONDS, f"took {seconds:.2f}s"
    assert peak < MAX_BYTES, f"allocated {peak / 2**20:.1f} MiB"
    return result


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(ops=mutations("gguf"))
def test_mutated_gguf(originals, tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("g", numbered=True) / "x.gguf"
    path.write_bytes(apply(originals["gguf"], ops, originals["gguf_header"]))
    g = check_bounded(read_gguf, path)
    if g is not None:                       # parsed: every tensor's bytes are really there
        for t in g.tensors:
            assert len(g.tensor_bytes(t)) == t.nbytes
    CASES["gguf"] += 1


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(ops=mutations("safetensors"))
def test_mutated_safetensors(originals, tmp_path_factory, ops):
    data = originals["safetensors"]
    hot = 8 + struct.unpack_from("<Q", data)[0]
    path = tmp_path_factory.mktemp("s", numbered=True) / "x.safetensors"
    path.write_bytes(apply(data, ops, hot))
    check_bounded(read_header, path)
    CASES["safetensors"] += 1


def test_case_counts_reported():
    print(f"hostile-input cases run: {CASES}")
    assert CASES["gguf"] >= 600 and CASES["safetensors"] >= 300


@pytest.mark.parametrize("seed", range(8))
def test_cli_on_mutated_files(originals, tmp_path, seed):
    import random
    rnd = random.Random(seed)
    ops = [(rnd.choice(["flip", "u64", "truncate", "insert"]), rnd.randrange(10**9),
            rnd.choice([0, 255, 2**63])) for _ in range(rnd.randint(1, 3))]
    ops = [(k, p, v if k == "u64" else v % 256) for k, p, v in ops]
    path = tmp_path / "x.gguf"
    path.write_bytes(apply(originals["gguf"], ops, originals["gguf_header"]))
    proc = subprocess.run([sys.executable, "-m", "tinyconvert", "inspect", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode in (0, 2)
    if proc.returncode == 2:
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("patch,message", [
    ((8, struct.pack("<Q", 2**40)), "more than"),            # tensor count
    ((16, struct.pack("<Q", 2**40)), "more than"),           # key count
    ((4, struct.pack("<I", 7)), "unsupported GGUF version"),
    ((4, struct.pack(">I", 3)), r"big-endian GGUF \(version 3\)"),
    ((4, struct.pack(">I", 2)), r"big-endian GGUF \(version 2\)"),
    ((0, b"GGML"), "not a GGUF file"),
])
def test_specific_header_attacks(originals, tmp_path, patch, message):
    at, raw = patch
    data = bytearray(originals["gguf"])
    data[at:at + len(raw)] = raw
    path = tmp_path / "x.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=message):
        read_gguf(path)


def test_truncated_data_section(originals, tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(originals["gguf"][:-100])
    with pytest.raises(InputError, match="truncated"):
        read_gguf(path)
