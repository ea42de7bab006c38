"""Commands that run a model with the bundled runtime: verify and run. torch is imported inside
the commands, so that the CLI as a whole starts fast."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tinyconvert.cli.errors import VERIFY_FAILED, cli_errors
from tinyconvert.io.threads import THREADS_HELP, use_torch_threads


@cli_errors
def verify_cmd(
    reference: str = typer.Argument(..., help="HF checkpoint (folder or hub id) or a GGUF file"),
    candidate: Path = typer.Argument(..., help="the GGUF file to check"),
    text: Optional[Path] = typer.Option(None, "--text", help="evaluation text file "
                                        "(default: a built-in mixed text)"),
    tokens: int = typer.Option(512, "--tokens", help="how many tokens of the text to use"),
    max_kld: Optional[float] = typer.Option(None, "--max-kld",
                                            help="fail above this mean KLD (default by type)"),
    engine: str = typer.Option("runtime", "--engine", help="what computes the candidate: "
                               "runtime, or llama.cpp (our runtime's number is shown beside it)"),
    reference_engine: str = typer.Option("runtime", "--reference-engine", help="what computes an "
                                         "HF reference: runtime (streamed, one layer in memory) "
                                         "or transformers (whole model in memory; independent "
                                         "of tinyconvert's architecture tables)"),
    as_json: bool = typer.Option(False, "--json", help="last line of stdout is a JSON object"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="draw per-layer error and the KLD "
                                        "distribution to this PNG (needs matplotlib)"),
    lora: list[str] = typer.Option([], "--lora", help="PEFT adapter (folder or hub id) applied "
                                   "to the HF reference; repeatable"),
    lora_scale: list[float] = typer.Option([], "--lora-scale", help="scale for all adapters, or "
                                           "one per --lora"),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
):
    """Compare a GGUF file's predictions with its reference model's."""
    import json

    from tinyconvert.formats.errors import InputError
    from tinyconvert.checks.verify import verify
    if text is not None and not text.is_file():
        raise InputError(f"{text}: no such text file")
    body = text.read_text(encoding="utf-8") if text is not None else None
    use_torch_threads(threads)
    report = verify(reference, candidate, text=body, tokens=tokens, max_kld=max_kld, engine=engine,
                    reference_engine=reference_engine, lora=lora, lora_scale=lora_scale)
    if plot is not None:
        from tinyconvert.checks.plot import plot_report
        plot_report(report, plot)
    if not as_json:
        _print_report(report)
    typer.echo(report.summary_line() if not as_json else json.dumps(report.as_json()))
    if not report.passed:
        raise typer.Exit(VERIFY_FAILED)


def _print_report(report) -> None:
    s = report.stats
    typer.echo(f"tokens            {s['tokens']}  (candidate: {report.engine}, reference: "
               f"{report.reference_engine})")
    typer.echo(f"KL divergence     mean {s['kld_mean']:.6g}  p99 {s['kld_p99']:.6g}  "
               f"max {s['kld_max']:.6g}  (default limit: {report.limit_why})")
    if "kld_mean_runtime" in s:
        typer.echo(f"                  mean {s['kld_mean_runtime']:.6g} with tinyconvert's runtime "
                   f"computing the candidate (activations kept in f32)")
    elif report.activation_note:
        typer.echo(f"note              {report.activation_note}")
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
    for f in report.chat:
        typer.echo(f"chat {f.check:<12} {'MISMATCH' if f.fails else 'warning'}: {f.message}")
    if report.experts:
        from tinyconvert.checks.experts import ExpertCounter
        typer.echo(f"experts           {ExpertCounter.summary(report.experts)}")
    if report.sparse:
        sp = report.sparse
        typer.echo(f"predictor         recall {sp['recall']:.2%}  precision {sp['precision']:.2%}  "
                   f"computed {sp['fraction_computed']:.2%} of neurons (active "
                   f"{sp['fraction_active']:.2%}), threshold {sp['threshold']:g}")
        typer.echo(f"skipping alone    KLD mean {sp['kld_mean_from_skipping']:.6g}  max "
                   f"{sp['kld_max_from_skipping']:.6g} (sparse vs dense run of this file)")


@cli_errors
def run_cmd(
    model: str = typer.Argument(..., help="GGUF file, HF checkpoint folder or hub id"),
    prompt: str = typer.Option(..., "-p", "--prompt", help="the prompt"),
    chat: bool = typer.Option(False, "--chat", help="wrap the prompt in the model's chat template"),
    max_tokens: int = typer.Option(128, "--max-tokens", help="stop after this many tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 is greedy"),
    top_p: float = typer.Option(1.0, "--top-p", help="nucleus sampling mass"),
    seed: int = typer.Option(0, "--seed", help="sampling seed"),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
):
    """Generate text with the bundled runtime (streams the output)."""
    import sys

    from tinyconvert.checks.generate import generate
    use_torch_threads(threads)

    def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
    generate(model, prompt, chat=chat, max_tokens=max_tokens, temperature=temperature,
             top_p=top_p, seed=seed, on_text=show)
    sys.stdout.write("\n")
