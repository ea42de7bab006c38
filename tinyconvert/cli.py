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
    no_verify: bool = typer.Option(False, "--no-verify", help="skip the accuracy check"),
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
    if not no_verify:
        _post_verify(str(res.source), res.path)


def _post_verify(reference: str, candidate: Path) -> None:
    """The short accuracy check every converting command ends with."""
    from tinyconvert.verify import verify
    report = verify(reference, candidate, tokens=POST_VERIFY_TOKENS)
    typer.echo(report.summary_line())
    if not report.passed:
        typer.echo(f"error: {candidate} was written but does not pass verify "
                   f"({'; '.join(report.vocab_mismatches) or 'KL divergence too high'})", err=True)
        raise typer.Exit(1)


POST_VERIFY_TOKENS = 128


@app.command("verify")
@cli_errors
def verify_cmd(
    reference: str = typer.Argument(..., help="HF checkpoint (folder or hub id) or a GGUF file"),
    candidate: Path = typer.Argument(..., help="the GGUF file to check"),
    text: Optional[Path] = typer.Option(None, "--text", help="evaluation text file "
                                        "(default: a built-in mixed text)"),
    tokens: int = typer.Option(512, "--tokens", help="how many tokens of the text to use"),
    max_kld: Optional[float] = typer.Option(None, "--max-kld",
                                            help="fail above this mean KLD (default by type)"),
    engine: str = typer.Option("runtime", "--engine", help="runtime or llama.cpp"),
    as_json: bool = typer.Option(False, "--json", help="last line of stdout is a JSON object"),
):
    """Compare a GGUF file's predictions with its reference model's."""
    import json

    from tinyconvert.formats.errors import InputError
    from tinyconvert.verify import verify
    if text is not None and not text.is_file():
        raise InputError(f"{text}: no such text file")
    body = text.read_text(encoding="utf-8") if text is not None else None
    report = verify(reference, candidate, text=body, tokens=tokens, max_kld=max_kld, engine=engine)
    if not as_json:
        _print_report(report)
    typer.echo(report.summary_line() if not as_json else json.dumps(report.as_json()))
    if not report.passed:
        raise typer.Exit(1)


def _print_report(report) -> None:
    s = report.stats
    typer.echo(f"tokens            {s['tokens']}  (engine: {report.engine})")
    typer.echo(f"KL divergence     mean {s['kld_mean']:.6g}  p99 {s['kld_p99']:.6g}  "
               f"max {s['kld_max']:.6g}")
    typer.echo(f"top-1 agreement   {s['top1']:.2%}")
    typer.echo(f"perplexity        reference {s['ppl_reference']:.4f}  "
               f"candidate {s['ppl_candidate']:.4f}")
    typer.echo(f"max |logit diff|  {s['max_abs_logit_diff']:.6g}")
    if report.layers:
        worst = max(range(len(report.layers)), key=report.layers.__getitem__)
        typer.echo("layer rel. error  " + " ".join(f"{e:.2g}" for e in report.layers)
                   + f"  (worst: layer {worst})")
    for m in report.vocab_mismatches:
        typer.echo(f"vocabulary        MISMATCH: {m}")


@app.command("run")
@cli_errors
def run_cmd(
    model: str = typer.Argument(..., help="GGUF file, HF checkpoint folder or hub id"),
    prompt: str = typer.Option(..., "-p", "--prompt", help="the prompt"),
    chat: bool = typer.Option(False, "--chat", help="wrap the prompt in the model's chat template"),
    max_tokens: int = typer.Option(128, "--max-tokens", help="stop after this many tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 is greedy"),
    top_p: float = typer.Option(1.0, "--top-p", help="nucleus sampling mass"),
    seed: int = typer.Option(0, "--seed", help="sampling seed"),
):
    """Generate text with the bundled runtime (streams the output)."""
    import sys

    from tinyconvert.generate import generate

    def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
    generate(model, prompt, chat=chat, max_tokens=max_tokens, temperature=temperature,
             top_p=top_p, seed=seed, on_text=show)
    sys.stdout.write("\n")


@app.callback()
def _root():
    """tinyconvert: Hugging Face checkpoints to GGUF files that llama.cpp-family runtimes run."""


def main() -> None:
    app()
