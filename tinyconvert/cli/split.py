"""split and merge (llama.cpp's split GGUF layout, byte-compatible with llama-gguf-split), and
how every writing command prints its --dry-run plan."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from tinyconvert.cli.errors import cli_errors

SIZE_HELP = "largest shard: tensor bytes, e.g. 45G, 500M (decimal units, as llama.cpp)"
TENSORS_HELP = "at most N tensors per shard"
DRY_HELP = "print the plan (files, sizes, per-tensor types, disk needed) and write nothing"


def print_plan(plan, as_json: bool, **extra) -> None:
    """The --dry-run report of any writing command."""
    if as_json:
        typer.echo(json.dumps({**plan.as_json(), **extra}))
    else:
        typer.echo("\n".join(plan.lines()))


def shards_note(plan) -> str:
    """' (first of N shards, ...)' after a written path, for split outputs."""
    if plan is None or not plan.split:
        return ""
    return f" (first of {len(plan.files)} shards; give this one to llama.cpp and tinyconvert)"


def _report(res, quiet: bool, as_json: bool, verb: str) -> None:
    if res.dry_run:
        print_plan(res.plan, as_json)
    elif as_json:
        typer.echo(json.dumps(res.as_json()))
    elif not quiet:
        typer.echo(f"{verb} {res.n_tensors} tensors into {len(res.paths)} file(s), "
                   f"{res.n_bytes / 2**20:.1f} MiB in {res.seconds:.1f}s: "
                   f"{', '.join(str(p) for p in res.paths)}")


@cli_errors
def split_cmd(
    inp: Path = typer.Argument(..., metavar="IN.gguf", help="a GGUF file (or a split model's "
                               "first shard, to re-split it)"),
    split_max_size: Optional[str] = typer.Option(None, "--split-max-size", help=SIZE_HELP),
    split_max_tensors: Optional[int] = typer.Option(None, "--split-max-tensors",
                                                    help=TENSORS_HELP),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="shard prefix: writes "
                                       "PREFIX-00001-of-0000N.gguf ... (default: IN without "
                                       ".gguf)"),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
):
    """Split a GGUF into llama.cpp's shards (as llama-gguf-split --split)."""
    from tinyconvert.pipeline.write.splitmerge import split
    res = split(inp, split_max_size=split_max_size, split_max_tensors=split_max_tensors, out=out,
                dry_run=dry_run, quiet=quiet)
    _report(res, quiet, as_json, "split")


@cli_errors
def merge_cmd(
    inp: Path = typer.Argument(..., metavar="FIRST-SHARD.gguf",
                               help="the first shard: NAME-00001-of-0000N.gguf"),
    out: Path = typer.Option(..., "-o", "--out", help="the merged .gguf"),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
):
    """Merge a split model into one GGUF (as llama-gguf-split --merge)."""
    from tinyconvert.pipeline.write.splitmerge import merge
    res = merge(inp, out, dry_run=dry_run, quiet=quiet)
    _report(res, quiet, as_json, "merged")
