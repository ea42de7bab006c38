"""PowerInfer commands: attach-predictor (dense ReLU GGUF + predictors -> PWRI file) and
train-predictor (fit the predictors from the model's own activations)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tinyconvert.cli.errors import cli_errors
from tinyconvert.cli.split import DRY_HELP, print_plan
from tinyconvert.io.threads import THREADS_HELP, use_torch_threads


@cli_errors
def attach_predictor_cmd(
    inp: Path = typer.Argument(..., metavar="IN.gguf", help="dense ReLU-LLaMA GGUF (f16 or q4_0)"),
    predictor_dir: Path = typer.Argument(..., metavar="PREDICTOR_DIR"),
    out: Path = typer.Option(..., "-o", "--out", help="output .powerinfer.gguf"),
    sparse_threshold: Optional[float] = typer.Option(None, "--sparse-threshold"),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_HELP),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout (with "
                                 "--dry-run: the plan)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
):
    """Turn a dense ReLU-LLaMA GGUF plus predictors into a PowerInfer (PWRI) file."""
    from tinyconvert.powerinfer.attach import attach_predictor
    res = attach_predictor(inp, predictor_dir, out, sparse_threshold=sparse_threshold,
                           quiet=quiet, dry_run=dry_run, threads=threads)
    if res.dry_run:
        print_plan(res.plan, as_json)
    elif as_json:
        import json
        typer.echo(json.dumps({"path": str(res.path), "tensors": res.n_tensors,
                               "ranks": res.ranks, "threshold": res.threshold}))
    elif not quiet:
        typer.echo(f"wrote {res.path} (PWRI, {res.n_tensors} tensors, predictor ranks "
                   f"{min(res.ranks)}-{max(res.ranks)}, threshold "
                   f"{res.threshold if res.threshold is not None else 'default 0.0'})")


@cli_errors
def train_predictor_cmd(
    model: str = typer.Argument(..., help="ReLU model: HF checkpoint or GGUF"),
    text: Path = typer.Option(..., "--text", help="calibration text file"),
    rank: int = typer.Option(..., "--rank", help="predictor rank (hidden width of fc1)"),
    out: Path = typer.Option(..., "-o", "--out", help="predictor folder to write"),
    epochs: int = typer.Option(60, "--epochs"),
    target_recall: float = typer.Option(0.98, "--target-recall",
                                        help="recall every layer must reach on training tokens"),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
):
    """Fit PowerInfer predictors (model_{i}.pt) from the model's own activations."""
    from tinyconvert.formats.errors import InputError
    from tinyconvert.powerinfer.train_predictor import train_predictors
    if not text.is_file():
        raise InputError(f"{text}: no such text file")
    use_torch_threads(threads)
    threshold, rows = train_predictors(model, text.read_text(encoding="utf-8"), rank=rank,
                                       out=out, epochs=epochs, target_recall=target_recall)
    typer.echo(f"wrote {out} (threshold {threshold:.4g} in config.json); held-out tokens:")
    for r in rows:
        typer.echo(f"layer {r.layer:3d}  rank {r.rank:5d}  recall {r.recall:7.2%}  precision "
                   f"{r.precision:7.2%}  computed {r.computed:7.2%}  active {r.active:7.2%}")
