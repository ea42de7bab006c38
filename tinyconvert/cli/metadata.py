"""Commands that read or edit a GGUF's header: inspect and set-metadata. They must start in well
under a second, so nothing here imports torch, even inside the commands."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tinyconvert.cli.errors import VERIFY_FAILED, cli_errors


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
    dry_run: bool = typer.Option(False, "--dry-run", help="print what would be written (and "
                                 "the disk space it needs) and change nothing"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout (with "
                                 "--dry-run: the plan)"),
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
    res = apply_edits(file, edits, out, dry_run=dry_run)
    for note in res.notes:
        typer.echo(f"note: {note}", err=True)
    if res.plan is not None and dry_run:
        from tinyconvert.cli.split import print_plan
        return print_plan(res.plan, as_json, edits=len(edits), mode=res.mode)
    if as_json:
        import json
        typer.echo(json.dumps({"path": str(res.path), "edits": len(edits), "mode": res.mode}))
    else:
        typer.echo(f"{res.path}: {len(edits)} edit(s), {res.mode}")
    if chat_template_file is not None:
        _check_chat(res.path)


def _check_chat(path: Path) -> None:
    """The new template against the file's own vocabulary (checks/tokenizers/chat.py check_file)."""
    from tinyconvert.checks.tokenizers.chat import check_file
    from tinyconvert.formats.gguf_file import read_gguf
    fields = read_gguf(path, strict_types=False).values()
    if "tokenizer.ggml.tokens" not in fields:
        return
    findings = check_file(fields)
    for f in findings:
        typer.echo(f"chat {f.check}: {'MISMATCH' if f.fails else 'warning'}: {f.message}",
                   err=True)
    if any(f.fails for f in findings):
        typer.echo(f"error: {path} was written but its chat template does not pass the check",
                   err=True)
        raise typer.Exit(VERIFY_FAILED)
