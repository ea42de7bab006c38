"""tinyconvert imatrix: compute an importance matrix (llama-imatrix's), merge several, or report
on one (llama-imatrix --show-statistics)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tinyconvert.cli.errors import cli_errors

USAGE = ("give MODEL --text FILE -o OUT (compute), --merge A B ... -o OUT (merge), or an "
         "imatrix FILE with --show-statistics / --json / --plot (report)")


@cli_errors
def imatrix_cmd(
    inputs: Optional[list[str]] = typer.Argument(None, metavar="MODEL | FILE...",
                                                 help="HF checkpoint (folder or hub id) or GGUF "
                                                 "model; with --merge the imatrix files; "
                                                 "alone, an imatrix file to report on"),
    text: Optional[Path] = typer.Option(None, "--text", help="calibration text file"),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="output imatrix file"),
    chunk_size: int = typer.Option(512, "--chunk-size", help="tokens per chunk (llama-imatrix's "
                                   "-c); each chunk starts with BOS"),
    chunks: Optional[int] = typer.Option(None, "--chunks", help="use at most this many chunks"),
    from_chunk: int = typer.Option(0, "--from-chunk", help="skip this many chunks first"),
    process_output: bool = typer.Option(False, "--process-output",
                                        help="also record output.weight's input"),
    output_format: str = typer.Option("gguf", "--format", help="gguf (default) or dat "
                                      "(legacy)"),
    merge: bool = typer.Option(False, "--merge", help="merge the imatrix files given"),
    show_statistics: bool = typer.Option(False, "--show-statistics", help="print per-tensor "
                                         "statistics"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="draw energy and top-column "
                                        "share per layer to this PNG (needs matplotlib)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
    as_json: bool = typer.Option(False, "--json", help="last line of stdout is a JSON object "
                                 "(with the statistics)"),
):
    """Compute an importance matrix on a text, merge matrices, or show their statistics."""
    from tinyconvert.formats.errors import InputError
    from tinyconvert.imatrix import api, files
    inputs = inputs or []
    if not inputs:
        raise InputError(f"nothing to do: {USAGE}")
    if merge:
        if text is not None or out is None:
            raise InputError("--merge takes imatrix files and -o OUT, no --text")
        res = api.merge_files([Path(p) for p in inputs], out, chunk_size=chunk_size,
                              output_format=output_format)
    elif text is not None:
        if len(inputs) != 1 or out is None:
            raise InputError("computing takes one MODEL, --text FILE and -o OUT (several "
                             "files: --merge)")
        res = api.imatrix(inputs[0], out, text=text, chunk_size=chunk_size, chunks=chunks,
                          from_chunk=from_chunk, process_output=process_output,
                          output_format=output_format, quiet=quiet or as_json)
    else:
        if len(inputs) != 1 or out is not None or not (show_statistics or as_json or plot):
            raise InputError(f"no --text: {USAGE}")
        res = api.ImatrixResult(Path(inputs[0]), files.read(Path(inputs[0])), 0.0)
    _report(res, show_statistics, plot, quiet, as_json)


def _report(res, show_statistics: bool, plot: Optional[Path], quiet: bool,
            as_json: bool) -> None:
    import json

    from tinyconvert.imatrix import api, stats
    st = stats.statistics(res.imatrix) if (show_statistics or plot or as_json) else None
    if plot is not None:
        api.plot_to(st, plot)
    if show_statistics and not as_json:
        typer.echo(stats.table(st))
    im = res.imatrix
    if not quiet and not as_json and res.seconds:
        typer.echo(f"wrote {res.path}: {len(im.entries)} entries, {im.chunk_count} chunks of "
                   f"{im.chunk_size} tokens, in {res.seconds:.1f}s")
    if as_json:
        typer.echo(json.dumps({**res.as_json(), **stats.as_json(im, st)}))


# quantize's and hf2gguf's importance-matrix options (the same OptionInfo serves both commands)
IMATRIX = typer.Option(None, "--imatrix", help="importance matrix (GGUF or legacy .dat) for the "
                       "quantizers, as llama-quantize --imatrix")
IMATRIX_TEXT = typer.Option(None, "--imatrix-text", help="compute the importance matrix on this "
                            "text (512-token chunks, at least 1024 tokens) and use it")
IMATRIX_OUT = typer.Option(None, "--imatrix-out", help="with --imatrix-text: also keep the "
                           "matrix in this file (GGUF; legacy format if it ends in .dat)")
INCLUDE_WEIGHTS = typer.Option([], "--include-weights", help="use only the matrix entries whose "
                               "name contains this (repeatable)")
EXCLUDE_WEIGHTS = typer.Option([], "--exclude-weights", help="drop the matrix entries whose name "
                               "contains this (repeatable)")


def imatrix_options(imatrix, imatrix_text, imatrix_out, include_weights, exclude_weights):
    from tinyconvert.imatrix.apply import ImatrixOptions
    return ImatrixOptions(imatrix, imatrix_text, imatrix_out, tuple(include_weights),
                          tuple(exclude_weights))
