"""`tinyconvert archs`: the architectures hf2gguf converts, read from the registry in
tinyconvert.archs (never a copy of it). The README's table is this module's Markdown, so the two
cannot drift apart (tests/test_readme.py checks it)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import typer

from tinyconvert.cli.errors import cli_errors

POWERINFER_NOTE = "Converted for PowerInfer only (ReLU FFN; `hf2gguf --powerinfer` or `--dense-relu`)"


@dataclass(frozen=True)
class ArchRow:
    hf_class: str
    gguf_arch: str
    powerinfer_only: bool = False


def arch_rows() -> list[ArchRow]:
    """Every registered HF class: the plain-GGUF ones first, then the PowerInfer-only ones."""
    # imported here: the registry pulls in gguf-py, which `inspect` should not wait for
    from tinyconvert.archs import ARCHITECTURES, POWERINFER_ONLY, supported_table
    plain = [ArchRow(hf_class, arch) for hf_class, arch in supported_table()]
    sparse = [ArchRow(hf_class, arch.arch_name, True) for hf_class, arch in ARCHITECTURES.items()
              if hf_class in POWERINFER_ONLY]
    return plain + sparse


def markdown(rows: list[ArchRow]) -> str:
    """A Markdown table padded to line up in a terminal too, and a line for PowerInfer-only
    classes (they are listed apart: llama.cpp's own graph would run their ReLU FFN wrong)."""
    cells = [("HF class", "GGUF architecture")]
    cells += [(r.hf_class, r.gguf_arch) for r in rows if not r.powerinfer_only]
    w0, w1 = (max(len(c[i]) for c in cells) for i in (0, 1))
    lines = [f"| {a:<{w0}} | {b:<{w1}} |" for a, b in cells]
    lines.insert(1, f"| {'-' * w0} | {'-' * w1} |")
    sparse = [f"{r.hf_class} ({r.gguf_arch})" for r in rows if r.powerinfer_only]
    if sparse:
        lines += ["", f"{POWERINFER_NOTE}: {', '.join(sparse)}."]
    return "\n".join(lines)


@cli_errors
def archs_cmd(
    as_json: bool = typer.Option(False, "--json", help="a JSON list of {hf_class, gguf_arch, "
                                 "powerinfer_only} on stdout"),
):
    """List the Hugging Face architectures hf2gguf converts, and their GGUF architectures."""
    rows = arch_rows()
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows]))
    else:
        typer.echo(markdown(rows))
