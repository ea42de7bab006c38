"""Errors the user can act on, and the CLI wrapper that turns any failure into one line."""
from __future__ import annotations

import functools
import os
import sys

import typer

from tinyconvert.formats.errors import InputError

__all__ = ["InputError", "VERIFY_FAILED", "cli_errors", "one_line"]

# Exit codes: 0 done; 1 a crash (a bug: please report it); 2 bad input, nothing written;
# 3 the model was checked and failed verify (for converting commands: written, but it fails).
VERIFY_FAILED = 3


def one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def cli_errors(fn):
    """Bad input: one line on stderr, exit 2. Anything else: one line, exit 1. A traceback only
    with TINYCONVERT_DEBUG=1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = os.environ.get("TINYCONVERT_DEBUG") == "1"
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except InputError as e:
            if debug:
                raise
            print(f"error: {one_line(e)}", file=sys.stderr)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            print("error: interrupted; no output was written", file=sys.stderr)
            raise typer.Exit(130) from None
        except MemoryError:
            print("error: out of memory", file=sys.stderr)
            raise typer.Exit(1) from None
        except Exception as e:  # noqa: BLE001 - the last line of defence for the CLI
            if debug:
                raise
            print(f"error: {type(e).__name__}: {one_line(e)} (set TINYCONVERT_DEBUG=1 for a "
                  f"traceback)", file=sys.stderr)
            raise typer.Exit(1) from None
    return wrapper
