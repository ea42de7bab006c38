"""Commands that write a model: hf2gguf and quantize. Both end with the short accuracy check.
The pipelines (and torch) are imported inside the commands so that `inspect` starts fast."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tinyconvert.cli.errors import VERIFY_FAILED, cli_errors
from tinyconvert.io.threads import THREADS_HELP

POST_VERIFY_TOKENS = 128
JSON_HELP = "last line of stdout is a JSON object: the result, its notes and the check"


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
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
    no_verify: bool = typer.Option(False, "--no-verify", help="skip the accuracy check"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Convert a Hugging Face checkpoint to GGUF.

    `tinyconvert archs` lists the supported architectures.
    """
    from tinyconvert.formats.errors import InputError
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    if powerinfer != (predictor is not None):
        raise InputError("--powerinfer and --predictor DIR go together")
    if sparse_threshold is not None and not powerinfer:
        raise InputError("--sparse-threshold goes with --powerinfer")
    res = hf2gguf(model, out, outtype=outtype.lower(), quiet=quiet, model_name=model_name,
                  powerinfer=predictor, sparse_threshold=sparse_threshold, dense_relu=dense_relu,
                  threads=threads)
    _print_fallbacks(res.fallbacks)
    _print_notes(res.notes)
    if not quiet and not as_json:
        typer.echo(f"wrote {res.path} ({res.outtype}, {res.n_tensors} tensors, "
                   f"{res.n_bytes / 2**20:.1f} MiB, {len(res.fallbacks)} fallbacks) "
                   f"in {res.seconds:.1f}s")
    _finish(str(res.source), res.path, no_verify, as_json, threads,
            {"outtype": res.outtype, "tensors": res.n_tensors, "bytes": res.n_bytes,
             "seconds": res.seconds, "types": res.types, "notes": res.notes,
             "fallbacks": [list(f) for f in res.fallbacks]})


def _print_notes(notes: list[str]) -> None:
    """Tokenizer and gguf-py warnings: the file was written, but the user should know."""
    for note in notes:
        typer.echo(f"warning: {note}", err=True)


def _finish(reference: str, candidate: Path, no_verify: bool, as_json: bool,
            threads: int | None, result: dict):
    """The check (on the command's threads), then (with --json) one JSON line; a failed check
    exits 3 after both."""
    import json
    report = None if no_verify else _post_verify(reference, candidate, echo=not as_json,
                                                 threads=threads)
    if as_json:
        typer.echo(json.dumps({"path": str(candidate), **result,
                               "verify": report.as_json() if report else None}))
    if report is not None and not report.passed:
        raise typer.Exit(VERIFY_FAILED)


def _print_fallbacks(fallbacks) -> None:
    """One line per kind of fallback: which type, what it fell back to, and which tensors."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, wanted, got in fallbacks:
        groups.setdefault((wanted, got), []).append(name)
    for (wanted, got), names in groups.items():
        shown = ", ".join(names[:4]) + (f", ... ({len(names)} in all)" if len(names) > 4 else "")
        typer.echo(f"note: row length does not fit {wanted}, fell back to {got}: {shown}",
                   err=True)


def _post_verify(reference: str, candidate: Path, echo: bool = True, threads: int | None = None):
    """The short accuracy check every converting command ends with."""
    from tinyconvert.checks.verify import verify
    from tinyconvert.io.threads import use_torch_threads
    use_torch_threads(threads)
    report = verify(reference, candidate, tokens=POST_VERIFY_TOKENS)
    if echo:
        typer.echo(report.summary_line())
    for f in report.chat:
        typer.echo(f"chat {f.check}: {'MISMATCH' if f.fails else 'warning'}: {f.message}",
                   err=True)
    if not report.passed:
        typer.echo(f"error: {candidate} was written but does not pass verify "
                   f"({'; '.join(report.problems()) or 'KL divergence too high'})", err=True)
    return report


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
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
    allow_requantize: bool = typer.Option(False, "--allow-requantize",
                                          help="dequantize and requantize a quantized input"),
    no_verify: bool = typer.Option(False, "--no-verify", help="skip the accuracy check"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
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
    opts = Options(pure, output_tensor_type and output_tensor_type.lower(),
                   token_embedding_type and token_embedding_type.lower(), leave_output_tensor,
                   _tensor_types(tensor_type))
    res = quantize(inp, out, qtype=qtype, bits=bits, group_size=group_size, options=opts,
                   threads=threads, allow_requantize=allow_requantize, quiet=quiet,
                   tmac=tmac_opts)
    _report_quantize(res, quiet or as_json)
    _finish(res.source, res.path, no_verify, as_json, threads,
            {"mix": res.tmac or res.mix, "types": res.types, "bytes_in": res.bytes_in,
             "bytes": res.bytes_out, "bpw": res.bpw, "seconds": res.seconds,
             "requantized": res.requantized, "notes": res.notes,
             "fallbacks": [list(f) for f in res.fallbacks]})


def _tensor_types(items: list[str]) -> tuple[tuple[str, str], ...]:
    """--tensor-type PATTERN=TYPE, split at the last '=' (a regex may hold one)."""
    from tinyconvert.formats.errors import InputError
    patterns = []
    for item in items:
        pattern, sep, t = item.rpartition("=")
        if not sep or not pattern:
            raise InputError(f"--tensor-type takes PATTERN=TYPE, got {item!r}")
        patterns.append((pattern, t.lower()))
    return tuple(patterns)


def _report_quantize(res, quiet: bool) -> None:
    if res.requantized:
        typer.echo(f"warning: {res.requantized} tensors were already quantized and were "
                   f"dequantized and requantized (quality loss)", err=True)
    if res.int8_group:
        typer.echo(f"WARNING: {res.path} uses tinyconvert's grouped INT8 layout (group "
                   f"{res.int8_group}); llama.cpp CANNOT run this file. tinyconvert run/verify "
                   f"can.", err=True)
    _print_fallbacks(res.fallbacks)
    _print_notes(res.notes)
    if not quiet:
        counts = ", ".join(f"{n} {t}" for t, n in sorted(res.types.items()))
        label = (f"int8, groups of {res.int8_group}" if res.int8_group
                 else res.tmac or res.mix)
        typer.echo(f"wrote {res.path} ({label}): {counts}; {res.bytes_in / 2**20:.1f} MiB -> "
                   f"{res.bytes_out / 2**20:.1f} MiB, {res.bpw:.2f} bits/weight, "
                   f"{len(res.fallbacks)} fallbacks, {res.seconds:.1f}s")
