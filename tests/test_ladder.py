"""Quant ladders (issue 17): several types in one pass. Each output's bytes equal a separate
run's (GGUF and HF inputs, converter types and mixes, whose tensor orders differ); each source
byte is read once; one verify pass runs the reference once; table, JSON and plot; a failure
leaves none of the outputs; bad input is one line."""
from __future__ import annotations

import json
import os
import weakref

import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.test_tiny_models import make_tokenizer
from tinyconvert.checks.ladder import verify as ladder_verify
from tinyconvert.checks.ladder import weights as ladder_weights
from tinyconvert.checks import verify as verify_mod
from tinyconvert.checks.ladder.verify import verify_ladder
from tinyconvert.checks.verify import verify
from tinyconvert.cli import app
from tinyconvert.formats import safetensors_file
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.formats.records import rows_and_len
from tinyconvert.io import atomic_set
from tinyconvert.pipeline.ladder import tasks as ladder_tasks
from tinyconvert.pipeline.write.inflight import in_flight_limit
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.ladder.run import hf2gguf_ladder, quantize_ladder
from tinyconvert.pipeline.quantize import quantize

GGUF_TYPES = ["q8_0", "q4_k_m", "q3_k_m"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny llama with 256-wide rows (k-quants fit), GQA (a Q/K permute to get right), and
    its f32 GGUF."""
    d = tmp_path_factory.mktemp("ladder") / "tiny-llama"
    d.mkdir()
    make_tokenizer(d, "gpt-2")
    tiny.build_model(d, "llama", hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                     n_kv_head=1, sharpen=5.0)
    hf2gguf(str(d), d.parent / "tiny-F32.gguf", outtype="f32", quiet=True)
    return d


def _count_preads(monkeypatch) -> list[int]:
    seen = []
    real = os.pread

    def pread(fd, n, offset):
        data = real(fd, n, offset)
        seen.append(len(data))
        return data
    monkeypatch.setattr(os, "pread", pread)
    return seen


def _count_encoded_rows(monkeypatch) -> dict:
    """Rows each quantizer call encodes, summed per type."""
    rows: dict = {}
    real = ladder_tasks.encode_rows

    def encode_rows(data, src_dtype, qtype):
        rows[qtype.name] = rows.get(qtype.name, 0) + data.shape[0]
        return real(data, src_dtype, qtype)
    monkeypatch.setattr(ladder_tasks, "encode_rows", encode_rows)
    return rows


def _count_live_chunks(monkeypatch) -> list[int]:
    """[chunks alive now, most alive at once]: each holds a chunk of source rows in memory."""
    live = [0, 0]

    class Counted(ladder_tasks.SharedChunk):
        def __init__(self, *a):
            super().__init__(*a)
            live[0] += 1
            live[1] = max(live)

        def __del__(self):
            live[0] -= 1
    monkeypatch.setattr(ladder_tasks, "SharedChunk", Counted)
    return live


def _distinct_rows(paths) -> dict:
    """Rows per type when each tensor is encoded once per distinct type among the files."""
    rows: dict = {}
    files = [read_gguf(p) for p in paths]
    for t in files[0].tensors:
        types = {f.type_name(next(u for u in f.tensors if u.name == t.name).ggml_type).lower()
                 for f in files}
        for name in types:
            rows[name] = rows.get(name, 0) + rows_and_len(t.shape)[0]
    return rows


def test_gguf_ladder_equals_separate_runs_and_reads_once(model, tmp_path, monkeypatch):
    """...and encodes each tensor once per distinct type among the outputs (the q6_k
    output.weight of q4_k_m and q3_k_m is encoded once), with a bounded number of chunks of
    source rows in memory however many outputs there are."""
    src = model.parent / "tiny-F32.gguf"
    preads = _count_preads(monkeypatch)
    encoded, live = _count_encoded_rows(monkeypatch), _count_live_chunks(monkeypatch)
    res = quantize_ladder(src, tmp_path / "out", qtypes=GGUF_TYPES, threads=2, quiet=True)
    # every stored byte of the input read exactly once for all three outputs
    assert sum(preads) == sum(t.nbytes for t in read_gguf(src).tensors)
    monkeypatch.undo()
    assert encoded == _distinct_rows([f.path for f in res.files])
    assert sum(encoded.values()) < 3 * sum(rows_and_len(t.shape)[0]
                                           for t in read_gguf(src).tensors)
    assert live[0] == 0 and 2 <= live[1] <= in_flight_limit(2) + 1
    assert [f.path.name for f in res.files] == ["tiny-Q8_0.gguf", "tiny-Q4_K_M.gguf",
                                                "tiny-Q3_K_M.gguf"]
    for f in res.files:
        alone = quantize(src, tmp_path / f"alone-{f.qtype}.gguf", qtype=f.qtype, threads=2,
                         quiet=True)
        assert f.path.read_bytes() == alone.path.read_bytes(), f.qtype
        assert f.n_bytes == f.path.stat().st_size
    assert len({f.path.read_bytes() for f in res.files}) == 3


def test_bf16_source_is_converted_to_float32_once_per_chunk(model, tmp_path, monkeypatch):
    """From a bf16 GGUF, q8_0 and q4_k_m both quantize float32 rows: one conversion of each chunk
    serves both (one thread, so each conversion is counted in its own chunk), and the bytes are
    still those of separate runs."""
    src = tmp_path / "tiny-BF16.gguf"
    hf2gguf(str(model), src, outtype="bf16", quiet=True)
    converted, per_chunk = [0], []
    real_f32 = ladder_tasks.to_f32

    def to_f32(rows, src_dtype):
        converted[0] += 1
        return real_f32(rows, src_dtype)

    class Counted(ladder_tasks.SharedChunk):
        def __init__(self, *a):
            super().__init__(*a)
            per_chunk.append(0)

        def source(self, p):
            before = converted[0]
            out = super().source(p)
            per_chunk[-1] += converted[0] - before
            return out
    monkeypatch.setattr(ladder_tasks, "to_f32", to_f32)
    monkeypatch.setattr(ladder_tasks, "SharedChunk", Counted)
    res = quantize_ladder(src, tmp_path / "out", qtypes=["q8_0", "q4_k_m"], threads=1,
                          quiet=True)
    monkeypatch.undo()
    assert converted[0] > 0 and max(per_chunk) == 1
    for f in res.files:
        alone = quantize(src, tmp_path / f"alone-{f.qtype}.gguf", qtype=f.qtype, quiet=True)
        assert f.path.read_bytes() == alone.path.read_bytes(), f.qtype


def _count_rows(monkeypatch) -> dict:
    """Rows read from the checkpoint's safetensors, per tensor (by its data offset)."""
    rows: dict = {}
    real = safetensors_file._row_reader

    def row_reader(path, data_start, entry):
        read = real(path, data_start, entry)

        def counted(r0, r1):
            key = entry["data_offsets"][0]
            rows[key] = rows.get(key, 0) + (r1 - r0)
            return read(r0, r1)
        return counted
    monkeypatch.setattr(safetensors_file, "_row_reader", row_reader)
    return rows


@pytest.mark.parametrize("door", ["hf2gguf", "quantize"])
def test_hf_ladder_equals_separate_runs_and_converts_once(model, tmp_path, monkeypatch, door):
    """hf2gguf: f16/q8_0 follow the converter (checkpoint order), q4_k_m the quantizer
    (llama.cpp's order): one read serves outputs laid out in different orders."""
    types = ["f16", "q8_0", "q4_k_m"] if door == "hf2gguf" else ["q8_0", "q5_k_s"]
    rows = _count_rows(monkeypatch)
    if door == "hf2gguf":
        res = hf2gguf_ladder(str(model), tmp_path / "out", outtypes=types, quiet=True)
    else:
        res = quantize_ladder(str(model), tmp_path / "out", qtypes=types, threads=2, quiet=True)
    header = safetensors_file.read_header(model / "model.safetensors")[0]
    n_rows = {e["data_offsets"][0]: rows_and_len(tuple(e["shape"]))[0] for e in header.values() if isinstance(e, dict) and "data_offsets" in e}
    assert rows == n_rows                  # each row of each tensor read (and converted) once
    monkeypatch.undo()
    assert [f.path.name for f in res.files] == [f"tiny-llama-{t.upper()}.gguf" for t in types]
    for f in res.files:
        out = tmp_path / f"alone-{f.qtype}.gguf"
        if door == "hf2gguf":
            hf2gguf(str(model), out, outtype=f.qtype, quiet=True)
        else:
            quantize(str(model), out, qtype=f.qtype, threads=2, quiet=True)
        assert f.path.read_bytes() == out.read_bytes(), f.qtype


@pytest.fixture(scope="module")
def ladder_files(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("lad") / "out"
    return quantize_ladder(model.parent / "tiny-F32.gguf", out, qtypes=GGUF_TYPES, quiet=True)


def test_one_verify_pass_runs_the_reference_once(model, ladder_files, monkeypatch):
    """The reference's forward passes are counted at the embedding (every pass starts there);
    each report equals what verify gives that file alone, verdict and limit included."""
    calls, sources = [], []
    real_embed, real_open = verify_mod.embed, ladder_verify.open_source

    def embed(hp, get, ids):
        calls.append(get)
        return real_embed(hp, get, ids)

    def open_source(model):
        sources.append(real_open(model))
        return sources[-1]
    monkeypatch.setattr(verify_mod, "embed", embed)
    monkeypatch.setattr(ladder_verify, "open_source", open_source)
    paths = [f.path for f in ladder_files.files]
    reports = verify_ladder(str(model), paths, tokens=96)
    assert len(sources) == 1 and sum(g is sources[0].get for g in calls) == 1
    assert sorted(str(g.path) for g in calls if hasattr(g, "path")) == sorted(map(str, paths))
    assert any(r.limit_why.startswith("1.25 x") for r in reports)    # the yardstick was used
    monkeypatch.undo()
    for path, r in zip(paths, reports):
        alone = verify(str(model), path, tokens=96)
        for key in ("kld_mean", "top1", "ppl_reference", "ppl_candidate", "kld_p99"):
            assert r.stats[key] == pytest.approx(alone.stats[key], rel=1e-9, abs=1e-12), key
        assert (r.max_kld, r.passed, r.limit_why) == pytest.approx(
            (alone.max_kld, alone.passed, alone.limit_why))
        assert r.layers == pytest.approx(alone.layers)


def _runs(keys: list) -> int:
    """How many times a one-slot cache fed these keys in order must load."""
    return sum(1 for i, k in enumerate(keys) if i == 0 or k != keys[i - 1])


def test_ladder_verify_memory_does_not_grow_with_the_files(model, ladder_files, monkeypatch):
    """Each candidate's tensors are read by pread (no file map whose pages would stay in the
    process), and ONE dequantized token_embd is alive at a time: reloaded only when the next
    candidate's stored bytes differ."""
    made, alive, loads = [], weakref.WeakSet(), []
    real_source, real_load = ladder_verify.gguf_source, ladder_weights.LadderWeights._load

    def gguf_source(path):
        made.append(real_source(path))
        return made[-1]

    def load(self, name):
        out = real_load(self, name)
        alive.add(out)
        loads.append(len(alive))
        return out
    monkeypatch.setattr(ladder_verify, "gguf_source", gguf_source)
    monkeypatch.setattr(ladder_weights.LadderWeights, "_load", load)
    verify_ladder(str(model), [f.path for f in ladder_files.files], tokens=96)
    assert len(made) == 3 and loads and set(loads) == {1}
    assert all(s._map is None for m in made for s in m.get.file._model.shards)
    files = [read_gguf(f.path) for f in ladder_files.files]
    keys = [(f.type_name(t.ggml_type), f.tensor_bytes(t).tobytes()) for f in files
            for t in f.tensors if t.name == "token_embd.weight"]
    tied = all("output.weight" not in {t.name for t in f.tensors} for f in files)
    assert len(loads) == _runs(keys + keys if tied else keys)


def test_cli_table_json_and_plot(model, tmp_path):
    src = model.parent / "tiny-F32.gguf"
    res = CliRunner().invoke(app, ["quantize", str(src), "-o", str(tmp_path / "q"), "-t",
                                   "q8_0", "-t", "q4_k_m", "-t", "q3_k_m", "--json", "--plot",
                                   str(tmp_path / "ladder.png")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert [o["type"] for o in doc["outputs"]] == GGUF_TYPES
    for o in doc["outputs"]:
        assert o["bytes"] == os.path.getsize(o["path"])
        assert o["passed"] is True and o["verify"]["passed"] is True
        assert 0 <= o["kld_mean"] == o["verify"]["kld_mean"] and 0 < o["top1"] <= 1
        assert o["ppl_reference"] == doc["outputs"][0]["ppl_reference"]
    bpw = [o["bpw"] for o in doc["outputs"]]
    assert bpw == sorted(bpw, reverse=True) and 3 < bpw[-1] < bpw[0] < 9
    assert (tmp_path / "ladder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "ladder.png").stat().st_size > 10_000

    res = CliRunner().invoke(app, ["hf2gguf", str(model), "-o", str(tmp_path / "h"), "-t",
                                   "bf16", "-t", "q8_0"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("type "))
    assert [line.split()[0] for line in lines[head + 1:head + 3]] == ["BF16", "Q8_0"]
    assert all(line.rstrip().split()[-3] == "PASS" for line in lines[head + 1:head + 3])
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == ["tiny-llama-BF16.gguf",
                                                                 "tiny-llama-Q8_0.gguf"]


def _fail_on(n: int, real):
    calls = []

    def boom(*args, **kw):
        calls.append(1)
        if len(calls) == n:
            raise RuntimeError("injected failure")
        return real(*args, **kw)
    return boom


@pytest.mark.parametrize("where", ["encode", "rename", "existing-folder"])
def test_failure_leaves_no_output(model, tmp_path, monkeypatch, where):
    out = tmp_path / "out"
    if where == "existing-folder":
        out.mkdir()
    if where == "rename":           # the second rename fails: the first output is taken back
        real, n = os.replace, []

        def replace(a, b):
            n.append(1)
            if len(n) == 2:
                raise OSError("injected rename failure")
            return real(a, b)
        monkeypatch.setattr(atomic_set.os, "replace", replace)
    else:                           # an encode half-way through the model fails
        monkeypatch.setattr(ladder_tasks, "encode_rows", _fail_on(12, ladder_tasks.encode_rows))
    res = CliRunner().invoke(app, ["quantize", str(model.parent / "tiny-F32.gguf"), "-o",
                                   str(out), "-t", "q8_0", "-t", "q4_k_m", "--no-verify"])
    assert res.exit_code == 1 and "injected" in res.output
    if where == "existing-folder":
        assert os.listdir(out) == []        # no output, no temporary file
    else:
        assert not out.exists()             # the folder the ladder made is gone too


@pytest.mark.parametrize("args, message", [
    (["-t", "q8_0", "-t", "Q8_0"], "type q8_0 is given twice"),
    (["-t", "q4_k", "-t", "q4_k_m"], "type q4_k_m is given twice"),
    (["-t", "q8_0", "-t", "q4_0", "-b", "8"], "-b makes one file"),
    (["-t", "q8_0", "-t", "tmac_w2g64_0"], "T-MAC files cannot be made in a ladder"),
    (["-t", "q8_0", "-t", "q9_9"], "unknown type 'q9_9'"),
    (["-t", "q8_0", "-t", "q4_0", "--plot", "p.png", "--no-verify"], "cannot be used with --no-verify"),
    (["-t", "q8_0", "--plot", "p.png"], "--plot goes with several types"),
])
def test_bad_ladder_input_is_one_line(model, tmp_path, args, message):
    res = CliRunner().invoke(app, ["quantize", str(model.parent / "tiny-F32.gguf"), "-o",
                                   str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_output_folder_must_be_a_folder(model, tmp_path):
    (tmp_path / "file").write_text("x")
    res = CliRunner().invoke(app, ["hf2gguf", str(model), "-o", str(tmp_path / "file"), "-t",
                                   "f16", "-t", "q8_0"])
    assert res.exit_code == 2 and "is a file" in res.output
    res = CliRunner().invoke(app, ["hf2gguf", str(model), "-o", str(tmp_path / "no" / "o"),
                                   "-t", "f16", "-t", "q8_0"])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = CliRunner().invoke(app, ["hf2gguf", str(model), "-o", str(tmp_path / "o.gguf"),
                                   "-t", "f16", "-t", "q8_0"])
    assert res.exit_code == 2 and "names a folder" in res.output
    assert not (tmp_path / "o.gguf").exists()
    res = CliRunner().invoke(app, ["hf2gguf", str(model), "-o", str(tmp_path / "o"), "-t",
                                   "f16", "-t", "q8_0", "--dense-relu"])
    assert res.exit_code == 2 and "--dense-relu makes one file" in res.output
