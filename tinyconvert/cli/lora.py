"""lora2gguf: a PEFT LoRA adapter to llama.cpp's adapter GGUF (merging is hf2gguf --lora)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tinyconvert.cli.errors import cli_errors


@cli_errors
def lora2gguf_cmd(
    adapter: str = typer.Argument(..., help="PEFT adapter folder (adapter_config.json + "
                                  "adapter_model.safetensors or .bin) or hub id"),
    out: Path = typer.Option(..., "-o", "--out", help="output adapter .gguf path"),
    base: Optional[str] = typer.Option(None, "--base", help="base HF checkpoint (folder or hub "
                                       "id; config.json is enough); default: the adapter's "
                                       "base_model_name_or_path"),
    outtype: str = typer.Option("f32", "--outtype", help="f32, f16 or bf16"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
    as_json: bool = typer.Option(False, "--json", help="last line of stdout is a JSON object"),
):
    """Convert a PEFT LoRA adapter to a GGUF adapter for llama.cpp (--lora FILE)."""
    import json

    from tinyconvert.lora.to_gguf import lora2gguf
    res = lora2gguf(adapter, out, base=base, outtype=outtype, quiet=quiet or as_json)
    if as_json:
        typer.echo(json.dumps({"path": str(res.path), "adapter": str(res.adapter),
                               "base": str(res.base), "arch": res.arch, "alpha": res.alpha,
                               "pairs": res.n_pairs, "bytes": res.n_bytes,
                               "seconds": res.seconds}))
    elif not quiet:
        typer.echo(f"wrote {res.path} ({res.arch} LoRA adapter, {res.n_pairs} weights, alpha "
                   f"{res.alpha:g}, {res.n_bytes / 2**10:.1f} KiB) in {res.seconds:.1f}s")
