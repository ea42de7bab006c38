"""The tinyconvert command line. Each option is the library parameter of the same name."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tinyconvert.errors import cli_errors

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Convert Hugging Face checkpoints to GGUF, and prove each file is right.")


@app.command("hf2gguf")
@cli_errors
def hf2gguf_cmd(
    model: str = typer.Argument(..., help="HF checkpoint folder or hub repo id (org/name)"),
    out: Path = typer.Option(..., "-o", "--out", help="output .gguf path"),
    outtype: str = typer.Option("auto", "--outtype",
                                help="f32, f16, bf16, q8_0, or auto (bf16 or f16 from the tensors)"),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="override general.name"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
):
    """Convert a Hugging Face llama-family checkpoint to GGUF."""
    from tinyconvert.hf2gguf import hf2gguf
    res = hf2gguf(model, out, outtype=outtype.lower(), quiet=quiet, model_name=model_name)
    for name, wanted, got in res.fallbacks:
        typer.echo(f"note: {name}: row length does not fit {wanted}; wrote {got}", err=True)
    for note in res.notes:
        typer.echo(f"warning: {note}", err=True)
    if not quiet:
        typer.echo(f"wrote {res.path} ({res.outtype}, {res.n_tensors} tensors, "
                   f"{res.n_bytes / 2**20:.1f} MiB, {len(res.fallbacks)} fallbacks) "
                   f"in {res.seconds:.1f}s")


@app.callback()
def _root():
    """tinyconvert: Hugging Face checkpoints to GGUF files that llama.cpp-family runtimes run."""


def main() -> None:
    app()
