"""`tinyconvert archs` lists exactly the registry's architectures, as text and as JSON, and
`hf2gguf --help` points to it."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from tinyconvert.archs import ARCHITECTURES, POWERINFER_ONLY
from tinyconvert.cli import app


def test_json_is_the_registry():
    res = CliRunner().invoke(app, ["archs", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {r["hf_class"]: r["gguf_arch"] for r in rows} == {
        name: arch.arch_name for name, arch in ARCHITECTURES.items()}
    assert {r["hf_class"] for r in rows if r["powerinfer_only"]} == set(POWERINFER_ONLY)
    flags = [r["powerinfer_only"] for r in rows]
    assert flags == sorted(flags), "PowerInfer-only classes come last"


def test_text_lists_every_class_once():
    res = CliRunner().invoke(app, ["archs"])
    assert res.exit_code == 0, res.output
    table = [ln for ln in res.stdout.splitlines() if ln.startswith("| ")]
    assert [c.strip() for c in table[0].split("|")[1:3]] == ["HF class", "GGUF architecture"]
    listed = [ln.split("|")[1].strip() for ln in table[2:]]
    assert listed == [n for n in ARCHITECTURES if n not in POWERINFER_ONLY]
    assert len({len(ln) for ln in table}) == 1, "columns line up"
    powerinfer = [ln for ln in res.stdout.splitlines() if ln.startswith("Converted for PowerInfer")]
    assert len(powerinfer) == 1 and all(n in powerinfer[0] for n in POWERINFER_ONLY)


def test_hf2gguf_help_points_to_archs():
    res = CliRunner().invoke(app, ["hf2gguf", "--help"], terminal_width=200)
    assert "tinyconvert archs" in res.stdout and "supported architectures" in res.stdout
