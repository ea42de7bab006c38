"""hf2gguf / quantize with several types (-t q8_0 -t q4_k_m ...): a quant ladder written in one
pass into the folder -o, then checked in one verify pass, and shown as one table (--json, --plot).
convert.py's commands call in here when they are given more than one type."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from tinyconvert.cli.errors import VERIFY_FAILED
from tinyconvert.formats.errors import InputError


def check_ladder_options(n_types: int, plot: Path | None, no_verify: bool, **single_only) -> None:
    """single_only: options a ladder does not take (name -> whether it was given)."""
    if n_types < 2:
        if plot is not None:
            raise InputError("--plot goes with several types (a ladder); for one file use "
                             "`tinyconvert verify --plot`")
        return
    given = [name for name, on in single_only.items() if on]
    if given:
        raise InputError(f"{given[0]} makes one file; it cannot be used with several types")
    if plot is not None and no_verify:
        raise InputError("--plot draws the check's numbers; it cannot be used with --no-verify")


def hf2gguf_ladder_cmd(model: str, outdir: Path, outtypes: list[str], *, model_name, no_verify,
                       quiet, as_json, plot, threads=None) -> None:
    from tinyconvert.pipeline.ladder.run import hf2gguf_ladder
    res = hf2gguf_ladder(model, outdir, outtypes=[t.lower() for t in outtypes],
                         model_name=model_name, quiet=quiet, threads=threads)
    finish_ladder(res, no_verify=no_verify, quiet=quiet, as_json=as_json, plot=plot)


def quantize_ladder_cmd(inp: str, outdir: Path, qtypes: list[str], *, options, threads,
                        allow_requantize, no_verify, quiet, as_json, plot) -> None:
    from tinyconvert.pipeline.ladder.run import quantize_ladder
    res = quantize_ladder(inp, outdir, qtypes=[t.lower() for t in qtypes], options=options,
                          threads=threads, allow_requantize=allow_requantize, quiet=quiet)
    if res.requantized:
        typer.echo(f"warning: {res.requantized} tensors were already quantized and were "
                   f"dequantized and requantized (quality loss)", err=True)
    finish_ladder(res, no_verify=no_verify, quiet=quiet, as_json=as_json, plot=plot)


def finish_ladder(res, *, no_verify: bool, quiet: bool, as_json: bool, plot: Path | None):
    """The one verify pass, the table (or JSON), the plot; exit 3 when any file fails."""
    from tinyconvert.checks.ladder.report import ladder_rows, plot_ladder, table
    from tinyconvert.cli.convert import POST_VERIFY_TOKENS, _print_fallbacks, _print_notes
    for f in res.files:
        _print_fallbacks(f.fallbacks)
    _print_notes(res.notes)
    if not quiet and not as_json:
        typer.echo(f"wrote {len(res.files)} files to {res.outdir} in {res.seconds:.1f}s "
                   f"(each source tensor read once): "
                   f"{', '.join(f.path.name for f in res.files)}")
    reports = None
    if not no_verify:
        from tinyconvert.checks.ladder.verify import verify_ladder
        reports = verify_ladder(res.source, [f.path for f in res.files],
                                tokens=POST_VERIFY_TOKENS)
    rows = ladder_rows(res.files, reports)
    if not as_json:
        typer.echo(table(rows))
    failed = [r for r in rows if r.report is not None and not r.report.passed]
    for r in failed:
        typer.echo(f"error: {r.path} was written but does not pass verify "
                   f"({'; '.join(r.report.problems()) or 'KL divergence too high'})", err=True)
    if plot is not None:
        plot_ladder(rows, plot)
    if as_json:
        typer.echo(json.dumps({"source": res.source, "outdir": str(res.outdir),
                               "seconds": res.seconds, "notes": res.notes,
                               "outputs": [r.as_json() for r in rows]}))
    if failed:
        raise typer.Exit(VERIFY_FAILED)
