"""gguf2hf: a GGUF file back to a Hugging Face checkpoint folder, ending with the same short check
as the converting commands (the exported folder as the reference, the GGUF as the candidate)."""
from __future__ import annotations

from pathlib import Path

import typer

from tinyconvert.cli.convert import JSON_HELP, _finish
from tinyconvert.cli.errors import cli_errors
from tinyconvert.export.safetensors_out import DEFAULT_SHARD


@cli_errors
def gguf2hf_cmd(
    gguf_file: Path = typer.Argument(..., metavar="FILE.gguf", help="the GGUF file to export"),
    out: Path = typer.Option(..., "-o", "--out", help="output folder (new or empty)"),
    dtype: str = typer.Option("auto", "--dtype", help="f32, f16, bf16, or auto (the file's "
                              "float type; bf16 for quantized files)"),
    max_shard_size: str = typer.Option(DEFAULT_SHARD, "--max-shard-size", help="largest "
                                       "safetensors shard, e.g. 5GB or 500MiB"),
    no_verify: bool = typer.Option(False, "--no-verify", help="skip the accuracy check"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Export a GGUF file as a Hugging Face checkpoint (safetensors, config, tokenizer)."""
    from tinyconvert.export.gguf2hf import gguf2hf
    res = gguf2hf(gguf_file, out, dtype=dtype.lower(), max_shard_size=max_shard_size, quiet=quiet)
    if not quiet and not as_json:
        typer.echo(f"wrote {res.path} ({res.hf_class}, {res.dtype}, {res.n_tensors} tensors in "
                   f"{len(res.shards)} shard(s), {res.n_bytes / 2**20:.1f} MiB) in "
                   f"{res.seconds:.1f}s")
    _finish(str(res.path), gguf_file, no_verify, as_json,
            {"hf_class": res.hf_class, "dtype": res.dtype, "tensors": res.n_tensors,
             "bytes": res.n_bytes, "shards": res.shards, "files": res.files,
             "seconds": res.seconds},
            # the exported folder is the reference, and its dtype may round the file's f32
            # tensors (auto: f16 norms), so only running both models can judge it
            check="model")
