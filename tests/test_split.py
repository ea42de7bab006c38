"""Split GGUF models (issue 17): our shards are byte for byte what llama.cpp's llama-gguf-split
writes (the real tool, compiled from the sdist: tests/support/gguf_split_tool.py), llama.cpp
loads them with the logits of the unsplit file, every reading command takes the first shard,
and a broken set is a one-line error naming the file."""
from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.support import gguf_split_tool, tiny
from tests.support.compare import llamacpp_logits
from tinyconvert.cli import app
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.formats.gguf_model import open_gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.quantize import quantize
from tinyconvert.pipeline.write.splitmerge import merge, split

IDS = [1, 17, 42, 99, 5, 230, 64, 3, 77, 12, 150, 8]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny llama of about 3.4 MB in f32 (so that 1M shards are several), its f32 GGUF and
    a llama-gguf-split binary."""
    from tokenizers import pre_tokenizers as p
    root = tmp_path_factory.mktemp("split")
    folder = root / "hf"
    folder.mkdir()
    tiny.train_bpe(folder, [p.ByteLevel(add_prefix_space=False, use_regex=True)])
    tiny.build_model(folder, "llama", sharpen=5.0, num_hidden_layers=4, intermediate_size=1024)
    f32 = root / "model.gguf"
    hf2gguf(str(folder), f32, outtype="f32", quiet=True)
    tool = gguf_split_tool.build(tmp_path_factory.mktemp("tool"))
    return folder, f32, tool


def same_files(a: list[Path], b: list[Path]) -> bool:
    return [p.name for p in a] == [p.name for p in b] and \
        all(filecmp.cmp(x, y, shallow=False) for x, y in zip(a, b))


def shards(folder: Path, prefix: str) -> list[Path]:
    return sorted(folder.glob(f"{prefix}-*-of-*.gguf"))


@pytest.mark.parametrize("option", [("--split-max-size", "1M"), ("--split-max-tensors", "9")])
def test_split_and_merge_match_llama_gguf_split(model, tmp_path, option):
    _, f32, tool = model
    (tmp_path / "ref").mkdir()
    gguf_split_tool.run(tool, "--split", *option, f32, tmp_path / "ref" / "m")
    kw = {"split_max_size": option[1]} if option[0] == "--split-max-size" else \
        {"split_max_tensors": int(option[1])}
    ours = split(f32, out=tmp_path / "m", quiet=True, **kw).paths
    assert len(ours) > 2
    assert same_files(ours, shards(tmp_path / "ref", "m"))
    gguf_split_tool.run(tool, "--merge", ours[0], tmp_path / "ref" / "merged.gguf")
    merge(ours[0], tmp_path / "merged.gguf", quiet=True)
    assert filecmp.cmp(tmp_path / "merged.gguf", tmp_path / "ref" / "merged.gguf", shallow=False)


def test_quantized_split_matches_tool_and_quantize_takes_shards(model, tmp_path):
    """A quantized file, split by the tool and by quantize --split-max-tensors in one pass; and a
    split f32 input quantizes to the very bytes of the unsplit input."""
    _, f32, tool = model
    q = tmp_path / "q.gguf"
    quantize(f32, q, qtype="q8_0", quiet=True)
    (tmp_path / "ref").mkdir()
    gguf_split_tool.run(tool, "--split", "--split-max-tensors", "7", q, tmp_path / "ref" / "q")
    ours = quantize(f32, tmp_path / "q.gguf", qtype="q8_0", quiet=True,
                    split_max_tensors=7).plan.paths
    assert same_files(ours, shards(tmp_path / "ref", "q"))
    parts = split(f32, out=tmp_path / "f", split_max_tensors=5, quiet=True).paths
    res = quantize(parts[0], tmp_path / "from-split.gguf", qtype="q8_0", quiet=True)
    assert filecmp.cmp(res.path, q, shallow=False)


def test_hf2gguf_split_is_split_of_the_file_and_llamacpp_logits_equal(model, tmp_path):
    folder, f32, tool = model
    res = hf2gguf(str(folder), tmp_path / "m.gguf", outtype="f32", quiet=True,
                  split_max_size="1M")
    ours = res.plan.paths
    assert res.path == ours[0] and len(ours) >= 3
    assert res.n_bytes == sum(p.stat().st_size for p in ours)
    (tmp_path / "ref").mkdir()
    gguf_split_tool.run(tool, "--split", "--split-max-size", "1M", f32, tmp_path / "ref" / "m")
    assert same_files(ours, shards(tmp_path / "ref", "m"))
    whole, parts = llamacpp_logits(f32, IDS), llamacpp_logits(ours[0], IDS)
    assert np.isfinite(whole).all() and whole.std() > 0.1
    assert np.array_equal(whole, parts)


def test_round_trips(model, tmp_path):
    _, f32, _ = model
    parts = split(f32, out=tmp_path / "a", split_max_tensors=6, quiet=True).paths
    merged = merge(parts[0], tmp_path / "merged.gguf", quiet=True).paths[0]
    # llama-gguf-split's merge keeps split.no / split.tensors.count and sets split.count 0:
    # the merged file is x plus those keys, its tensors and data the same bytes
    x, m = read_gguf(f32), read_gguf(merged)
    assert list(m.fields) == list(x.fields) + ["split.no", "split.tensors.count", "split.count"]
    assert (m.value("split.count"), m.value("split.no")) == (0, 0)
    assert [(t.name, t.ne, t.ggml_type, t.offset) for t in m.tensors] == \
        [(t.name, t.ne, t.ggml_type, t.offset) for t in x.tensors]
    assert all(np.array_equal(m.tensor_bytes(a), x.tensor_bytes(b))
               for a, b in zip(m.tensors, x.tensors))
    # a merged file is a fixed point: merge(split(x)) == x byte for byte
    again = split(merged, out=tmp_path / "b", split_max_tensors=6, quiet=True).paths
    assert merge(again[0], tmp_path / "again.gguf", quiet=True).paths[0].read_bytes() == \
        merged.read_bytes()
    # and split(merge(shards)) == shards, by any rule; re-splitting a split set too
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in parts]
    resplit = split(parts[0], out=tmp_path / "c", split_max_size="1M", quiet=True).paths
    direct = split(f32, out=tmp_path / "d", split_max_size="1M", quiet=True).paths
    assert [p.read_bytes() for p in resplit] == [p.read_bytes() for p in direct]


def test_readers_take_the_first_shard(model, tmp_path):
    folder, f32, _ = model
    parts = split(f32, out=tmp_path / "m", split_max_size="1M", quiet=True).paths
    with open_gguf(parts[0]) as m, open_gguf(f32) as whole:
        assert m.is_split and len(m.shards) == len(parts)
        assert [t.name for t in m.tensors] == [t.name for t in whole.tensors]
        assert all(np.array_equal(m.tensor_bytes(a), whole.tensor_bytes(b))
                   for a, b in zip(m.tensors, whole.tensors))
    runner = CliRunner()
    res = runner.invoke(app, ["inspect", str(parts[0]), "--json"])
    assert res.exit_code == 0, res.output
    import json
    info = json.loads(res.output)
    assert info["tensor_count"] == len(read_gguf(f32).tensors)
    assert info["shards"] == [str(p) for p in parts]
    res = runner.invoke(app, ["verify", str(f32), str(parts[0]), "--tokens", "48", "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output.strip().splitlines()[-1])
    assert stats["kld_mean"] == 0.0 and stats["top1"] == 1.0


@pytest.fixture()
def split_set(model, tmp_path):
    _, f32, _ = model
    return split(f32, out=tmp_path / "m", split_max_tensors=10, quiet=True).paths


def _one_line_error(args, *needles):
    res = CliRunner().invoke(app, args)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and all(n in lines[0] for n in needles), res.output


@pytest.mark.parametrize("command", ["inspect", "quantize", "run", "verify"])
def test_missing_shard_is_one_line_naming_it(split_set, command, tmp_path):
    split_set[1].unlink()
    args = {"inspect": ["inspect", str(split_set[0])],
            "quantize": ["quantize", str(split_set[0]), "-o", str(tmp_path / "q.gguf"), "-t", "q8_0"],
            "run": ["run", str(split_set[0]), "-p", "hi"],
            "verify": ["verify", str(split_set[0]), str(split_set[0])]}[command]
    _one_line_error(args, str(split_set[1]), "missing")
    assert not (tmp_path / "q.gguf").exists()


def test_truncated_and_foreign_shards(split_set, model, tmp_path):
    data = split_set[2].read_bytes()
    split_set[2].write_bytes(data[:len(data) - 100])
    _one_line_error(["inspect", str(split_set[0])], str(split_set[2]), "truncated")
    other = split(model[1], out=tmp_path / "other", split_max_tensors=5, quiet=True).paths
    shutil.copy(other[2], split_set[2])            # shard 3 of another count
    _one_line_error(["inspect", str(split_set[0])], str(split_set[2]), "not shard 3")
    _one_line_error(["inspect", str(split_set[1])], str(split_set[1]), "first shard")
    renamed = tmp_path / "renamed.gguf"
    shutil.copy(split_set[0], renamed)
    _one_line_error(["inspect", str(renamed)], str(renamed), f"-00001-of-{len(split_set):05d}.gguf")


def test_set_metadata_edits_the_first_shard(split_set, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["set-metadata", str(split_set[0]), "general.name", "Renamed model"])
    assert res.exit_code == 0, res.output
    with open_gguf(split_set[0]) as m:
        assert m.value("general.name") == "Renamed model" and m.is_split
    assert "general.name" not in read_gguf(split_set[1]).fields
    from tinyconvert.checks.llamacpp import open_llama
    llm = open_llama(split_set[0], vocab_only=True, verbose=False)
    assert llm.metadata["general.name"] == "Renamed model"
    llm.close()
    _one_line_error(["set-metadata", str(split_set[1]), "general.name", "x"], str(split_set[1]),
                    "first shard")
    _one_line_error(["set-metadata", str(split_set[0]), "split.count", "2"], "split.count")
    _one_line_error(["set-metadata", str(split_set[0]), "general.name", "x", "-o",
                     str(tmp_path / "o.gguf")], "-o")


@pytest.mark.parametrize("args,needle", [
    (["--split-max-size", "1.5G"], "positive whole number"),
    (["--split-max-size", "0"], "positive whole number"),
    (["--split-max-tensors", "0"], "at least 1"),
    (["--split-max-size", "1M", "--split-max-tensors", "3"], "not both"),
    ([], "--split-max-size SIZE"),
    (["--split-max-size", "100"], "smaller than the first tensor"),
])
def test_split_cli_bad_options(model, tmp_path, args, needle):
    _one_line_error(["split", str(model[1]), "-o", str(tmp_path / "x"), *args], needle)
    assert not list(tmp_path.iterdir())


def test_split_cli_json_and_merge_refuses_single_file(model, tmp_path):
    import json
    res = CliRunner().invoke(app, ["split", str(model[1]), "-o", str(tmp_path / "s"),
                                   "--split-max-tensors", "20", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["paths"] == [str(p) for p in shards(tmp_path, "s")] and len(out["paths"]) > 1
    _one_line_error(["merge", str(model[1]), "-o", str(tmp_path / "m.gguf")], "not a split model")


def test_failure_leaves_no_shard(model, tmp_path, monkeypatch):
    from tinyconvert.pipeline.write import shards as shards_mod
    calls = []
    real = shards_mod.copy_range

    def failing(src, dst, offset, length):
        calls.append(1)
        if len(calls) == 15:
            raise OSError("disk on fire")
        return real(src, dst, offset, length)
    monkeypatch.setattr(shards_mod, "copy_range", failing)
    with pytest.raises(OSError):
        split(model[1], out=tmp_path / "s", split_max_tensors=4, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_trailing_unit_dims_and_odd_sizes_match_the_tool(model, tmp_path):
    """gguf-py writes a [1, 64] tensor with 2 dims; llama-gguf-split writes ggml_n_dims (1):
    our shards must too. Odd byte sizes check the per-tensor padding."""
    import gguf
    tool = model[2]
    src = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(src, "llama")
    w.add_string("general.name", "odd shapes")
    w.add_array("some.list", [1, 2, 3])
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(1, 64), (3, 1, 7), (5,), (2, 1, 1), (1, 1, 9)]):
        w.add_tensor(f"t{i}", rng.standard_normal(shape).astype(np.float32))
    w.add_tensor("h", rng.standard_normal((3, 5)).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    (tmp_path / "ref").mkdir()
    gguf_split_tool.run(tool, "--split", "--split-max-tensors", "2", src, tmp_path / "ref" / "o")
    ours = split(src, out=tmp_path / "o", split_max_tensors=2, quiet=True).paths
    assert len(ours) == 3 and same_files(ours, shards(tmp_path / "ref", "o"))
    gguf_split_tool.run(tool, "--merge", ours[0], tmp_path / "ref" / "m.gguf")
    merge(ours[0], tmp_path / "m.gguf", quiet=True)
    assert filecmp.cmp(tmp_path / "m.gguf", tmp_path / "ref" / "m.gguf", shallow=False)


def test_hf2gguf_cli_split_ends_with_verify_of_the_set(model, tmp_path):
    import json
    res = CliRunner().invoke(app, ["hf2gguf", str(model[0]), "-o", str(tmp_path / "c.gguf"),
                                   "--outtype", "q8_0", "--split-max-tensors", "12", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["paths"] == [str(p) for p in shards(tmp_path, "c")] and len(out["paths"]) == 4
    assert out["path"] == out["paths"][0] and out["bytes"] == \
        sum(Path(p).stat().st_size for p in out["paths"])
    assert out["verify"]["passed"] and out["verify"]["top1"] > 0.9


def test_writer_entries_are_gguf_py_bytes(smollm2_hf):
    """hf2gguf's shard headers encode the keys faster than gguf-py; the bytes must be its own."""
    import gguf
    from tinyconvert.formats.tokenizers.vocab import add_vocab, load_vocab
    from tinyconvert.pipeline.write.shards import writer_entries
    w = gguf.GGUFWriter(None, "llama")
    add_vocab(w, load_vocab(smollm2_hf, 49152))
    w.add_array("x.floats", [0.1, 2.5, -3.0, 1e-40])
    w.add_array("x.ints", [1, -2, 3])
    w.add_array("x.bools", [True, False])
    w.add_array("x.mixed", ["a", b"b"])
    w.add_key_value("x.u8", [1, 2, 255], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT8)
    ref = [w._pack_val(k, gguf.GGUFValueType.STRING, add_vtype=False) +
           w._pack_val(v.value, v.type, add_vtype=True, sub_type=v.sub_type)
           for k, v in w.kv_data[0].items()]
    assert len(ref) > 10 and writer_entries(w) == ref
