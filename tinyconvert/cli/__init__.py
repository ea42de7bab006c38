"""The tinyconvert command line: one module per command group, registered here in the order
`--help` lists them. Each option is the library parameter of the same name. No command module
imports torch at import time, so `inspect` and `set-metadata` start fast."""
from __future__ import annotations

import typer

from tinyconvert.cli import (archs, checks, convert, export, imatrix, lora, metadata, powerinfer,
                             split)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Convert Hugging Face checkpoints to GGUF, and prove each file is right.")

COMMANDS = {
    "hf2gguf": convert.hf2gguf_cmd,
    "quantize": convert.quantize_cmd,
    "imatrix": imatrix.imatrix_cmd,
    "lora2gguf": lora.lora2gguf_cmd,
    "gguf2hf": export.gguf2hf_cmd,
    "attach-predictor": powerinfer.attach_predictor_cmd,
    "train-predictor": powerinfer.train_predictor_cmd,
    "verify": checks.verify_cmd,
    "run": checks.run_cmd,
    "inspect": metadata.inspect_cmd,
    "set-metadata": metadata.set_metadata_cmd,
    "archs": archs.archs_cmd,
    "split": split.split_cmd,
    "merge": split.merge_cmd,
}
for _name, _fn in COMMANDS.items():
    app.command(_name)(_fn)


@app.callback()
def _root():
    """tinyconvert: Hugging Face checkpoints to GGUF files that llama.cpp-family runtimes run."""


def _usage_error():
    try:                                    # recent typer vendors its own click
        from typer._click.exceptions import UsageError
    except ImportError:
        from click.exceptions import UsageError
    return UsageError


def main() -> None:
    """The console script: like app(), but usage errors are one line too."""
    import sys
    try:
        code = app(standalone_mode=False)
    except _usage_error() as e:
        command = e.ctx.command_path if e.ctx else "tinyconvert"
        print(f"error: {e.format_message()} (see `{command} --help`)", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:                     # typer's own Abort (its vendored click has none)
        print("error: aborted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
