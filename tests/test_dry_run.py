"""--dry-run on every writing command prints the plan and writes nothing, and the plan is what
the command then writes (paths and byte sizes); with too little free space at the target every
writing command refuses in one line before it writes anything (shutil.disk_usage patched)."""
from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.test_powerinfer import random_predictors
from tests.test_tiny_models import make_tokenizer
from tinyconvert.cli import app
from tinyconvert.formats.predictor import save_predictors
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.write.splitmerge import split

Usage = namedtuple("Usage", "total used free")


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """A tiny ReLU llama (so attach-predictor applies too), its dense f16 GGUF, predictors and
    a split copy of the GGUF."""
    d = tmp_path_factory.mktemp("dry")
    hf = d / "hf"
    hf.mkdir()
    make_tokenizer(hf, "spm")
    tiny.build_model(hf, "llama", hidden_act="relu")
    save_predictors(d / "pred", random_predictors())
    hf2gguf(str(hf), d / "dense.gguf", outtype="f16", quiet=True, dense_relu=True)
    split(d / "dense.gguf", out=d / "parts", split_max_tensors=8, quiet=True)
    return d


def commands(src: Path, out: Path) -> dict[str, list]:
    dense, first = src / "dense.gguf", src / "parts-00001-of-00003.gguf"
    return {
        "hf2gguf": ["hf2gguf", src / "hf", "-o", out / "h.gguf", "--outtype", "q8_0",
                    "--dense-relu", "--no-verify"],
        "hf2gguf-split": ["hf2gguf", src / "hf", "-o", out / "h.gguf", "--outtype", "q4_k_m",
                          "--dense-relu", "--split-max-tensors", "7", "--no-verify"],
        "quantize": ["quantize", dense, "-o", out / "q.gguf", "-t", "q4_0", "--no-verify"],
        "quantize-split": ["quantize", first, "-o", out / "q.gguf", "-t", "q8_0",
                           "--split-max-size", "100K", "--no-verify"],
        "set-metadata": ["set-metadata", dense, "general.name", "a name longer than before",
                         "-o", out / "s.gguf"],
        "split": ["split", dense, "-o", out / "p", "--split-max-tensors", "5"],
        "merge": ["merge", first, "-o", out / "m.gguf"],
        "attach-predictor": ["attach-predictor", dense, src / "pred", "-o", out / "a.gguf"],
    }


NAMES = sorted(commands(Path("."), Path(".")))


def snapshot(folder: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def invoke(args) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


@pytest.mark.parametrize("name", NAMES)
def test_dry_run_writes_nothing_and_plans_what_is_written(src, tmp_path, name):
    args = commands(src, tmp_path)[name]
    before = snapshot(src)
    code, output = invoke([*args, "--dry-run", "--json"])
    assert code == 0, output
    plan = json.loads(output.strip().splitlines()[-1])
    assert plan["dry_run"] is True and list(tmp_path.iterdir()) == []
    assert snapshot(src) == before
    assert plan["bytes_needed"] == sum(f["bytes"] for f in plan["files"]) > 0
    assert {t["type"] for t in plan["tensors"]} - {None} and \
        sum(f["tensors"] for f in plan["files"]) == len(plan["tensors"])
    code, output = invoke(args)
    assert code == 0, output
    written = sorted(p for p in tmp_path.iterdir())
    assert written == sorted(Path(f["path"]) for f in plan["files"])
    assert [Path(f["path"]).stat().st_size for f in plan["files"]] == \
        [f["bytes"] for f in plan["files"]]


def test_dry_run_text_shows_boundaries_and_space(src, tmp_path):
    code, output = invoke([*commands(src, tmp_path)["split"], "--dry-run"])
    assert code == 0, output
    assert "dry run: would write" in output and "free in" in output
    assert "file 1: " in output and "-00001-of-" in output and "blk.0." in output
    assert list(tmp_path.iterdir()) == []


def test_in_place_edit_dry_run(src, tmp_path):
    target = tmp_path / "d.gguf"
    shutil.copy(src / "dense.gguf", target)
    before = target.read_bytes()
    for value in ("same-size-name-x", "a much, much longer name than the one it has"):
        code, output = invoke(["set-metadata", target, "general.name", value, "--dry-run"])
        assert code == 0 and "dry run" in output, output
    assert target.read_bytes() == before


@pytest.mark.parametrize("name", NAMES)
def test_too_little_free_space_is_refused(src, tmp_path, name, monkeypatch):
    before = snapshot(src)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 4096, 4096))
    code, output = invoke(commands(src, tmp_path)[name])
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "not enough free space" in lines[0], output
    assert list(tmp_path.iterdir()) == [] and snapshot(src) == before


def test_json_results_without_dry_run(src, tmp_path):
    target = tmp_path / "d.gguf"
    shutil.copy(src / "dense.gguf", target)
    code, output = invoke(["set-metadata", target, "general.name", "x" * 40, "--json"])
    assert code == 0, output
    assert json.loads(output) == {"path": str(target), "edits": 1, "mode": "rewritten"}
    code, output = invoke(["attach-predictor", target, src / "pred", "-o", tmp_path / "a.gguf",
                           "--json"])
    assert code == 0, output
    res = json.loads(output)
    assert res["path"] == str(tmp_path / "a.gguf") and res["ranks"] == [8, 12]


def test_attach_predictor_reads_a_split_input(src, tmp_path):
    from tinyconvert.powerinfer.attach import attach_predictor
    whole = attach_predictor(src / "dense.gguf", src / "pred", tmp_path / "a.gguf", quiet=True)
    parts = attach_predictor(src / "parts-00001-of-00003.gguf", src / "pred",
                             tmp_path / "b.gguf", quiet=True)
    # the first shard's split.* keys are not carried over: the same PWRI file either way
    assert whole.path.read_bytes() == parts.path.read_bytes()
