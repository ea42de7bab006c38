"""The tinyconvert command line. Each option is the library parameter of the same name."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tinyconvert.cli.errors import cli_errors

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Convert Hugging Face checkpoints to GGUF, and prove each file is right.")


@app.command("hf2gguf")
@cli_errors
def hf2gguf_cmd(
    model: str = typer.Argument(..., help="HF checkpoint folder or hub repo id (org/name)"),
    out: Path = typer.Option(..., "-o", "--out", help="output .gguf path"),
    outtype: str = typer.Option("auto", "--outtype",
                                help="f32, f16, bf16, q8_0, auto (bf16 or f16 from the tensors), "
                                "or any quantize type or mix, e.g. q4_k_m"),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="override general.name"),
    powerinfer: bool = typer.Option(False, "--powerinfer", help="write PowerInfer's sparse PWRI "
                                    "file for a ReLU model (needs --predictor)"),
    predictor: Optional[Path] = typer.Option(None, "--predictor", help="predictor folder "
                                             "(model_{i}.pt or model_{i}.safetensors)"),
    sparse_threshold: Optional[float] = typer.Option(None, "--sparse-threshold",
                                                     help="powerinfer.sparse_threshold"),
    dense_relu: bool = typer.Option(False, "--dense-relu", help="write a ReLU model as a plain "
                                    "GGUF for attach-predictor (llama.cpp cannot run it right)"),
    no_verify: bool = typer.Option(False, "--no-verify", help="skip the accuracy check"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
):
    """Convert a Hugging Face llama-family checkpoint to GGUF."""
    from tinyconvert.formats.errors import InputError
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    if powerinfer != (predictor is not None):
        raise InputError("--powerinfer and --predictor DIR go together")
    if sparse_threshold is not None and not powerinfer:
        raise InputError("--sparse-threshold goes with --powerinfer")
    res = hf2gguf(model, out, outtype=outtype.lower(), quiet=quiet, model_name=model_name,
                  powerinfer=predictor, sparse_threshold=sparse_threshold, dense_relu=dense_relu)
    _print_fallbacks(res.fallbacks)
    for note in res.notes:
        typer.echo(f"warning: {note}", err=True)
    if not quiet:
        typer.echo(f"wrote {res.path} ({res.outtype}, {res.n_tensors} tensors, "
                   f"{res.n_bytes / 2**20:.1f} MiB, {len(res.fallbacks)} fallbacks) "
                   f"in {res.seconds:.1f}s")
    if not no_verify:
        _post_verify(str(res.source), res.path)


def _print_fallbacks(fallbacks) -> None:
    """One line per kind of fallback: which type, what it fell back to, and which tensors."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, wanted, got in fallbacks:
        groups.setdefault((wanted, got), []).append(name)
    for (wanted, got), names in groups.items():
        shown = ", ".join(names[:4]) + (f", ... ({len(names)} in all)" if len(names) > 4 else "")
        typer.echo(f"note: row length does not fit {wanted}, fell back to {got}: {shown}",
                   err=True)


def _post_verify(reference: str, candidate: Path) -> None:
    """The short accuracy check every converting command ends with."""
    from tinyconvert.checks.verify import verify
    report = verify(reference, candidate, tokens=POST_VERIFY_TOKENS)
    typer.echo(report.summary_line())
    if not report.passed:
        typer.echo(f"error: {candidate} was written but does not pass verify "
                   f"({'; '.join(report.vocab_mismatches) or 'KL divergence too high'})", err=True)
        raise typer.Exit(1)


POST_VERIFY_TOKENS = 128


@app.command("quantize")
@cli_errors
def quantize_cmd(
    inp: str = typer.Argument(..., metavar="IN", help="GGUF file or HF checkpoint folder / hub id"),
    out: Path = typer.Option(..., "-o", "--out", help="output .gguf path"),
    qtype: Optional[str] = typer.Option(None, "--type", "-t", help="q4_k_m, q8_0, q6_k, ... "
                                        "(a llama.cpp type or mix)"),
    bits: Optional[int] = typer.Option(None, "-b", "--bits", help="8 (q8_0, or grouped INT8 "
                                       "with --group-size) or 4 (q4_0)"),
    group_size: Optional[int] = typer.Option(None, "--group-size", help="with -b 8: 64, 128 or "
                                             "256 (tinyconvert layout; llama.cpp cannot run it); "
                                             "with --tmac: 64 or 128"),
    tmac: bool = typer.Option(False, "--tmac", help="T-MAC lookup-table types (-b 2|4, "
                              "--group-size 64|128; llama.cpp PR #13206 ids)"),
    sym: bool = typer.Option(False, "--sym", help="with --tmac: symmetric, no zero points"),
    tmac_layout: Optional[str] = typer.Option(None, "--tmac-layout", help="canonical (PR "
                                              "#13206, default) or kernel (T-MAC's own "
                                              "pipeline; needs --tmac-bm/-kfactor)"),
    tmac_bm: Optional[int] = typer.Option(None, "--tmac-bm", help="kernel layout tile height"),
    tmac_kfactor: Optional[int] = typer.Option(None, "--tmac-kfactor", help="kernel layout "
                                               "tables per k-block (8 or 16)"),
    tmac_quantizer: Optional[str] = typer.Option(None, "--tmac-quantizer", help="search "
                                                 "(weighted least-squares scales, default) or "
                                                 "minmax (T-MAC's own)"),
    pure: bool = typer.Option(False, "--pure", help="one type for every tensor, no mix rules"),
    output_tensor_type: Optional[str] = typer.Option(None, "--output-tensor-type"),
    token_embedding_type: Optional[str] = typer.Option(None, "--token-embedding-type"),
    leave_output_tensor: bool = typer.Option(False, "--leave-output-tensor",
                                             help="keep output.weight as it is"),
    tensor_type: list[str] = typer.Option([], "--tensor-type", help="PATTERN=TYPE, a regex "
                                          "searched in tensor names; repeatable, first wins"),
    threads: int = typer.Option(2, "--threads", help="worker threads"),
    allow_requantize: bool = typer.Option(False, "--allow-requantize",
                                          help="dequantize and requantize a quantized input"),
    no_verify: bool = typer.Option(False, "--no-verify", help="skip the accuracy check"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
):
    """Quantize a GGUF or HF checkpoint (bytes identical to llama.cpp's quantizer)."""
    from tinyconvert.formats.errors import InputError
    from tinyconvert.pipeline.mixes import Options
    from tinyconvert.pipeline.quantize import TmacOptions, quantize
    given = {k: v for k, v in dict(layout=tmac_layout, bm=tmac_bm, kfactor=tmac_kfactor,
                                   method=tmac_quantizer).items() if v is not None}
    if not tmac and (sym or given):
        raise InputError("--sym and --tmac-* options go with --tmac")
    tmac_opts = TmacOptions(sym=sym, **given) if tmac else None
    patterns = []
    for item in tensor_type:
        pattern, sep, t = item.rpartition("=")
        if not sep or not pattern:
            raise InputError(f"--tensor-type takes PATTERN=TYPE, got {item!r}")
        patterns.append((pattern, t.lower()))
    opts = Options(pure, output_tensor_type and output_tensor_type.lower(),
                   token_embedding_type and token_embedding_type.lower(), leave_output_tensor,
                   tuple(patterns))
    res = quantize(inp, out, qtype=qtype, bits=bits, group_size=group_size, options=opts,
                   threads=threads, allow_requantize=allow_requantize, quiet=quiet,
                   tmac=tmac_opts)
    if res.requantized:
        typer.echo(f"warning: {res.requantized} tensors were already quantized and were "
                   f"dequantized and requantized (quality loss)", err=True)
    if res.int8_group:
        typer.echo(f"WARNING: {res.path} uses tinyconvert's grouped INT8 layout (group "
                   f"{res.int8_group}); llama.cpp CANNOT run this file. tinyconvert run/verify "
                   f"can.", err=True)
    _print_fallbacks(res.fallbacks)
    if not quiet:
        counts = ", ".join(f"{n} {t}" for t, n in sorted(res.types.items()))
        label = (f"int8, groups of {res.int8_group}" if res.int8_group
                 else res.tmac or res.mix)
        typer.echo(f"wrote {res.path} ({label}): {counts}; {res.bytes_in / 2**20:.1f} MiB -> "
                   f"{res.bytes_out / 2**20:.1f} MiB, {res.bpw:.2f} bits/weight, "
                   f"{len(res.fallbacks)} fallbacks, {res.seconds:.1f}s")
    if not no_verify:
        _post_verify(res.source, res.path)


@app.command("attach-predictor")
@cli_errors
def attach_predictor_cmd(
    inp: Path = typer.Argument(..., metavar="IN.gguf", help="dense ReLU-LLaMA GGUF (f16 or q4_0)"),
    predictor_dir: Path = typer.Argument(..., metavar="PREDICTOR_DIR"),
    out: Path = typer.Option(..., "-o", "--out", help="output .powerinfer.gguf"),
    sparse_threshold: Optional[float] = typer.Option(None, "--sparse-threshold"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Turn a dense ReLU-LLaMA GGUF plus predictors into a PowerInfer (PWRI) file."""
    from tinyconvert.powerinfer.attach import attach_predictor
    res = attach_predictor(inp, predictor_dir, out, sparse_threshold=sparse_threshold,
                           quiet=quiet)
    if not quiet:
        typer.echo(f"wrote {res.path} (PWRI, {res.n_tensors} tensors, predictor ranks "
                   f"{min(res.ranks)}-{max(res.ranks)}, threshold "
                   f"{res.threshold if res.threshold is not None else 'default 0.0'})")


@app.command("train-predictor")
@cli_errors
def train_predictor_cmd(
    model: str = typer.Argument(..., help="ReLU model: HF checkpoint or GGUF"),
    text: Path = typer.Option(..., "--text", help="calibration text file"),
    rank: int = typer.Option(..., "--rank", help="predictor rank (hidden width of fc1)"),
    out: Path = typer.Option(..., "-o", "--out", help="predictor folder to write"),
    epochs: int = typer.Option(60, "--epochs"),
    target_recall: float = typer.Option(0.98, "--target-recall",
                                        help="recall every layer must reach on training tokens"),
):
    """Fit PowerInfer predictors (model_{i}.pt) from the model's own activations."""
    from tinyconvert.formats.errors import InputError
    from tinyconvert.powerinfer.train_predictor import train_predictors
    if not text.is_file():
        raise InputError(f"{text}: no such text file")
    threshold, rows = train_predictors(model, text.read_text(encoding="utf-8"), rank=rank,
                                       out=out, epochs=epochs, target_recall=target_recall)
    typer.echo(f"wrote {out} (threshold {threshold:.4g} in config.json); held-out tokens:")
    for r in rows:
        typer.echo(f"layer {r.layer:3d}  rank {r.rank:5d}  recall {r.recall:7.2%}  precision "
                   f"{r.precision:7.2%}  computed {r.computed:7.2%}  active {r.active:7.2%}")


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
    plot: Optional[Path] = typer.Option(None, "--plot", help="draw per-layer error and the KLD "
                                        "distribution to this PNG (needs matplotlib)"),
):
    """Compare a GGUF file's predictions with its reference model's."""
    import json

    from tinyconvert.formats.errors import InputError
    from tinyconvert.checks.verify import verify
    if text is not None and not text.is_file():
        raise InputError(f"{text}: no such text file")
    body = text.read_text(encoding="utf-8") if text is not None else None
    report = verify(reference, candidate, text=body, tokens=tokens, max_kld=max_kld, engine=engine)
    if plot is not None:
        from tinyconvert.checks.plot import plot_report
        plot_report(report, plot)
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
    if report.sparse:
        sp = report.sparse
        typer.echo(f"predictor         recall {sp['recall']:.2%}  precision {sp['precision']:.2%}  "
                   f"computed {sp['fraction_computed']:.2%} of neurons (active "
                   f"{sp['fraction_active']:.2%}), threshold {sp['threshold']:g}")
        typer.echo(f"skipping alone    KLD mean {sp['kld_mean_from_skipping']:.6g}  max "
                   f"{sp['kld_max_from_skipping']:.6g} (sparse vs dense run of this file)")


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

    from tinyconvert.checks.generate import generate

    def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
    generate(model, prompt, chat=chat, max_tokens=max_tokens, temperature=temperature,
             top_p=top_p, seed=seed, on_text=show)
    sys.stdout.write("\n")


@app.command("inspect")
@cli_errors
def inspect_cmd(
    file: Path = typer.Argument(..., help="a GGUF (or PowerInfer PWRI) file"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
    tensors: Optional[str] = typer.Option(None, "--tensors", help="only tensors matching this "
                                          "glob, e.g. 'blk.0.*'"),
    full: bool = typer.Option(False, "--full", help="show long strings and arrays whole"),
):
    """Show a GGUF file's header, keys and tensors (reads the header only)."""
    import json

    from tinyconvert.edit.inspect_gguf import inspect, render
    info = inspect(file, tensors=tensors, full=full)
    if as_json:
        info.pop("metadata_text")
        typer.echo(json.dumps(info, ensure_ascii=False))
    else:
        typer.echo("\n".join(render(info)))


@app.command("set-metadata")
@cli_errors
def set_metadata_cmd(
    file: Path = typer.Argument(..., help="the GGUF file to edit"),
    key: Optional[str] = typer.Argument(None, help="key to set"),
    value: Optional[str] = typer.Argument(None, help="its new value"),
    vtype: Optional[str] = typer.Option(None, "--type", help="u8 i8 u16 i16 u32 i32 u64 i64 f32 "
                                        "f64 bool str, or array-of-<type>"),
    from_json: bool = typer.Option(False, "--from-json", help="VALUE is JSON (arrays, numbers)"),
    delete: list[str] = typer.Option([], "--delete", help="delete a key (repeatable)"),
    rename: list[str] = typer.Option([], "--rename", help="OLD=NEW (repeatable)"),
    chat_template_file: Optional[Path] = typer.Option(None, "--chat-template-file",
                                                      help="set tokenizer.chat_template from a file"),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="write a new file instead of "
                                       "editing in place"),
):
    """Set, delete or rename GGUF keys; in place (crash-safe) or into a new file."""
    from tinyconvert.formats.errors import InputError
    from tinyconvert.formats.gguf_file import read_gguf
    from tinyconvert.edit.metaedit import apply_edits, make_delete, make_rename, make_set
    f = read_gguf(file, strict_types=False)
    edits = []
    if key is not None:
        if value is None:
            raise InputError(f"{key}: give a value (or use --delete / --rename)")
        edits.append(make_set(f, key, value, vtype, from_json))
    if chat_template_file is not None:
        if not chat_template_file.is_file():
            raise InputError(f"{chat_template_file}: no such file")
        edits.append(make_set(f, "tokenizer.chat_template",
                              chat_template_file.read_text(encoding="utf-8"), "str"))
    edits += [make_delete(f, k) for k in delete]
    for r in rename:
        old, sep, new = r.partition("=")
        if not sep:
            raise InputError(f"--rename takes OLD=NEW, got {r!r}")
        edits.append(make_rename(f, old, new))
    if not edits:
        raise InputError("nothing to do: give KEY VALUE, --delete, --rename or "
                         "--chat-template-file")
    res = apply_edits(file, edits, out)
    for note in res.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"{res.path}: {len(edits)} edit(s), {res.mode}")


@app.callback()
def _root():
    """tinyconvert: Hugging Face checkpoints to GGUF files that llama.cpp-family runtimes run."""


def _click_exceptions():
    try:                                    # recent typer vendors its own click
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def main() -> None:
    """The console script: like app(), but usage errors are one line too."""
    import sys
    cx = _click_exceptions()
    try:
        code = app(standalone_mode=False)
    except cx.UsageError as e:
        command = e.ctx.command_path if e.ctx else "tinyconvert"
        print(f"error: {e.format_message()} (see `{command} --help`)", file=sys.stderr)
        sys.exit(2)
    except cx.Abort:
        print("error: aborted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
