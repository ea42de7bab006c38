"""Commands that write a model: hf2gguf and quantize. Both end with the short accuracy check.
The pipelines (and torch) are imported inside the commands so that `inspect` starts fast."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tinyconvert.cli.errors import VERIFY_FAILED, cli_errors
from tinyconvert.cli.split import DRY_HELP, SIZE_HELP, TENSORS_HELP, print_plan, shards_note
from tinyconvert.cli.imatrix import (EXCLUDE_WEIGHTS, IMATRIX, IMATRIX_OUT, IMATRIX_TEXT,
                                     INCLUDE_WEIGHTS, imatrix_options)
from tinyconvert.io.threads import THREADS_HELP
from tinyconvert.checks.post_check import CHECK_HELP, DEFAULT_CHECK, POST_VERIFY_TOKENS  # noqa: F401

JSON_HELP = "last line of stdout is a JSON object: the result, its notes and the check"
PLOT_HELP = "with several types: draw KL divergence against file size to this PNG"


@cli_errors
def hf2gguf_cmd(
    model: str = typer.Argument(..., help="HF checkpoint folder or hub repo id (org/name)"),
    out: Path = typer.Option(..., "-o", "--out", help="output .gguf path (a folder with "
                             "several types)"),
    outtype: list[str] = typer.Option([], "--outtype", "-t",
                                      help="f32, f16, bf16, q8_0, auto (bf16 or f16 from the "
                                      "tensors, the default), or any quantize type or mix, e.g. "
                                      "q4_k_m; repeat it for a ladder in one pass"),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="override general.name"),
    powerinfer: bool = typer.Option(False, "--powerinfer", help="write PowerInfer's sparse PWRI "
                                    "file for a ReLU model (needs --predictor)"),
    predictor: Optional[Path] = typer.Option(None, "--predictor", help="predictor folder "
                                             "(model_{i}.pt or model_{i}.safetensors)"),
    sparse_threshold: Optional[float] = typer.Option(None, "--sparse-threshold",
                                                     help="powerinfer.sparse_threshold"),
    dense_relu: bool = typer.Option(False, "--dense-relu", help="write a ReLU model as a plain "
                                    "GGUF for attach-predictor (llama.cpp cannot run it right)"),
    split_max_size: Optional[str] = typer.Option(None, "--split-max-size", help=SIZE_HELP),
    split_max_tensors: Optional[int] = typer.Option(None, "--split-max-tensors",
                                                    help=TENSORS_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_HELP),
    imatrix: Optional[Path] = IMATRIX,
    imatrix_text: Optional[Path] = IMATRIX_TEXT,
    imatrix_out: Optional[Path] = IMATRIX_OUT,
    include_weights: list[str] = INCLUDE_WEIGHTS,
    exclude_weights: list[str] = EXCLUDE_WEIGHTS,
    lora: list[str] = typer.Option([], "--lora", help="PEFT LoRA adapter (folder or hub id) "
                                   "merged into the weights; repeatable"),
    lora_scale: list[float] = typer.Option([], "--lora-scale", help="scale for all adapters, or "
                                           "one per --lora (default 1)"),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
    no_verify: bool = typer.Option(False, "--no-verify", help="skip the accuracy check"),
    check: str = typer.Option(DEFAULT_CHECK, "--check", help=CHECK_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    plot: Optional[Path] = typer.Option(None, "--plot", help=PLOT_HELP),
):
    """Convert a Hugging Face checkpoint to GGUF.

    `tinyconvert archs` lists the supported architectures.
    """
    from tinyconvert.formats.errors import InputError
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    from tinyconvert.checks.post_check import check_before
    check = check_before(check, (outtype or ["auto"])[0], n_types=len(outtype))
    if powerinfer != (predictor is not None):
        raise InputError("--powerinfer and --predictor DIR go together")
    if sparse_threshold is not None and not powerinfer:
        raise InputError("--sparse-threshold goes with --powerinfer")
    from tinyconvert.cli.ladder import check_ladder_options, hf2gguf_ladder_cmd
    check_ladder_options(len(outtype), plot, no_verify, **{
        "--powerinfer": powerinfer, "--dense-relu": dense_relu, "--dry-run": dry_run,
        "--split-max-size": split_max_size is not None,
        "--split-max-tensors": split_max_tensors is not None,
        "--imatrix": imatrix is not None, "--imatrix-text": imatrix_text is not None,
        "--lora": bool(lora)})
    if len(outtype) > 1:
        return hf2gguf_ladder_cmd(model, out, outtype, model_name=model_name,
                                  no_verify=no_verify, quiet=quiet, as_json=as_json, plot=plot,
                                  threads=threads)
    res = hf2gguf(model, out, outtype=(outtype or ["auto"])[0].lower(), quiet=quiet,
                  model_name=model_name,
                  powerinfer=predictor, sparse_threshold=sparse_threshold, dense_relu=dense_relu,
                  split_max_size=split_max_size, split_max_tensors=split_max_tensors,
                  dry_run=dry_run,
                  imatrix=imatrix_options(imatrix, imatrix_text, imatrix_out,
                                          include_weights, exclude_weights),
                  lora=lora, lora_scale=lora_scale, threads=threads)
    _print_recipe(res.plan, res.outtype, res.fallbacks)
    if res.dry_run:
        return print_plan(res.plan, as_json)
    _print_fallbacks(res.fallbacks)
    _print_notes(res.notes)
    if not quiet and not as_json:
        typer.echo(f"wrote {res.path} ({res.outtype}, {res.n_tensors} tensors, "
                   f"{res.n_bytes / 2**20:.1f} MiB, {len(res.fallbacks)} fallbacks) "
                   f"in {res.seconds:.1f}s{shards_note(res.plan)}")
    _finish(str(res.source), res.path, no_verify, as_json,
            {"outtype": res.outtype, "tensors": res.n_tensors, "bytes": res.n_bytes,
             "seconds": res.seconds, "types": res.types, "notes": res.notes,
             "fallbacks": [list(f) for f in res.fallbacks],
             "paths": [str(p) for p in res.plan.paths]},
            threads=threads, check=check, lora=lora, lora_scale=lora_scale)


def _print_notes(notes: list[str]) -> None:
    """Tokenizer and gguf-py warnings: the file was written, but the user should know."""
    for note in notes:
        typer.echo(f"warning: {note}", err=True)


def _finish(reference: str, candidate: Path, no_verify: bool, as_json: bool, result: dict, *,
            threads: int | None = None, check: str = DEFAULT_CHECK, **lora):
    """The check (on the command's threads), then (with --json) one JSON line; a failed check
    exits 3 after both. lora: verify's lora/lora_scale, for a file with adapters merged in."""
    import json
    report = None if no_verify else _post_verify(reference, candidate, echo=not as_json,
                                                 threads=threads, check=check, **lora)
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


def _print_recipe(plan, asked: str | None, fallbacks) -> None:
    """A T-MAC recipe's per-tensor choices (tinyconvert.pipeline.recipes.tmac_plan), as a note."""
    from tinyconvert.pipeline.recipes.tmac_plan import recipe_choices, recipe_note
    note = recipe_note(asked, recipe_choices(plan.types, asked, fallbacks)) if plan else None
    if note:
        typer.echo(f"note: {note}", err=True)


def _post_verify(reference: str, candidate: Path, echo: bool = True, threads: int | None = None,
                 check: str = DEFAULT_CHECK, **lora):
    """The short check every converting command ends with (checks/post_check.py)."""
    from tinyconvert.checks.post_check import post_check
    report = post_check(reference, candidate, check=check, threads=threads, **lora)
    if echo:
        typer.echo(report.summary_line())
    for f in report.chat:
        typer.echo(f"chat {f.check}: {'MISMATCH' if f.fails else 'warning'}: {f.message}",
                   err=True)
    if not report.passed:
        typer.echo(f"error: {candidate} was written but does not pass its check "
                   f"({'; '.join(report.problems()) or 'KL divergence too high'})", err=True)
    return report


@cli_errors
def quantize_cmd(
    inp: str = typer.Argument(..., metavar="IN", help="GGUF file or HF checkpoint folder / hub id"),
    out: Path = typer.Option(..., "-o", "--out", help="output .gguf path (a folder with "
                             "several types)"),
    qtype: list[str] = typer.Option([], "--type", "-t", help="q4_k_m, q8_0, q6_k, ... (a "
                                    "llama.cpp type or mix); repeat it for a ladder in one pass"),
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
    split_max_size: Optional[str] = typer.Option(None, "--split-max-size", help=SIZE_HELP),
    split_max_tensors: Optional[int] = typer.Option(None, "--split-max-tensors",
                                                    help=TENSORS_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_HELP),
    imatrix: Optional[Path] = IMATRIX,
    imatrix_text: Optional[Path] = IMATRIX_TEXT,
    imatrix_out: Optional[Path] = IMATRIX_OUT,
    include_weights: list[str] = INCLUDE_WEIGHTS,
    exclude_weights: list[str] = EXCLUDE_WEIGHTS,
    no_verify: bool = typer.Option(False, "--no-verify", help="skip the accuracy check"),
    check: str = typer.Option(DEFAULT_CHECK, "--check", help=CHECK_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    plot: Optional[Path] = typer.Option(None, "--plot", help=PLOT_HELP),
):
    """Quantize a GGUF or HF checkpoint (bytes identical to llama.cpp's quantizer)."""
    from tinyconvert.formats.errors import InputError
    from tinyconvert.pipeline.recipes.mixes import Options
    from tinyconvert.pipeline.quantize import TmacOptions, quantize
    from tinyconvert.checks.post_check import check_before
    check = check_before(check, f"-b {bits}" if bits is not None else (qtype or [None])[0],
                         n_types=len(qtype))
    given = {k: v for k, v in dict(layout=tmac_layout, bm=tmac_bm, kfactor=tmac_kfactor,
                                   method=tmac_quantizer).items() if v is not None}
    if not tmac and (sym or given):
        raise InputError("--sym and --tmac-* options go with --tmac")
    tmac_opts = TmacOptions(sym=sym, **given) if tmac else None
    opts = Options(pure, output_tensor_type and output_tensor_type.lower(),
                   token_embedding_type and token_embedding_type.lower(), leave_output_tensor,
                   _tensor_types(tensor_type))
    from tinyconvert.cli.ladder import check_ladder_options, quantize_ladder_cmd
    check_ladder_options(len(qtype), plot, no_verify, **{
        "-b": bits is not None, "--tmac": tmac, "--group-size": group_size is not None,
        "--dry-run": dry_run, "--split-max-size": split_max_size is not None,
        "--split-max-tensors": split_max_tensors is not None,
        "--imatrix": imatrix is not None, "--imatrix-text": imatrix_text is not None})
    if len(qtype) > 1:
        return quantize_ladder_cmd(inp, out, qtype, options=opts, threads=threads,
                                   allow_requantize=allow_requantize, no_verify=no_verify,
                                   quiet=quiet, as_json=as_json, plot=plot)
    res = quantize(inp, out, qtype=(qtype or [None])[0], bits=bits, group_size=group_size,
                   options=opts, threads=threads, allow_requantize=allow_requantize, quiet=quiet,
                   tmac=tmac_opts, split_max_size=split_max_size,
                   split_max_tensors=split_max_tensors, dry_run=dry_run,
                   imatrix=imatrix_options(imatrix, imatrix_text, imatrix_out,
                                           include_weights, exclude_weights))
    _print_recipe(res.plan, res.tmac, res.fallbacks)
    if res.dry_run:
        return print_plan(res.plan, as_json)
    _report_quantize(res, quiet or as_json)
    _finish(res.source, res.path, no_verify, as_json,
            {"mix": res.tmac or res.mix, "types": res.types, "bytes_in": res.bytes_in,
             "bytes": res.bytes_out, "bpw": res.bpw, "seconds": res.seconds,
             "requantized": res.requantized, "notes": res.notes,
             "fallbacks": [list(f) for f in res.fallbacks],
             "paths": [str(p) for p in res.plan.paths]}, threads=threads, check=check)


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
                   f"{len(res.fallbacks)} fallbacks, {res.seconds:.1f}s{shards_note(res.plan)}")
