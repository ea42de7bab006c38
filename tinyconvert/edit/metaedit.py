"""set-metadata: edit any GGUF key safely. One same-size numeric or string change is patched in
place (a single write); anything else (several changes, or one that changes the header's size)
rewrites the file through a temporary file in the same folder and an atomic rename, with tensor
data copied unchanged, so a crash never leaves a half-edited file. Every result is re-read and
checked; a rewrite replaces nothing unless the check passes, and a patch that fails it is undone."""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tinyconvert.io.atomic import atomic_output, check_output
from tinyconvert.formats import gguf_file as gf
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_edit import (encode_entry, encode_value, header_bytes, raw_entry,
                                           rewrite)

TYPES = {name: vt for vt, name in gf.TYPE_NAMES.items() if vt != gf.ARRAY}
KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$")
REFUSED = {
    "general.alignment": "changing it would move every tensor's data (the file needs relayout)",
    "general.architecture": "llama.cpp would read every other key under a different prefix",
    **{k: "llama.cpp finds and checks a split model's shards by it (use tinyconvert split or "
          "merge)" for k in ("split.no", "split.count", "split.tensors.count")},
}
PATCH_LIMIT = 4096          # larger same-size values are rewritten, not patched in place


@dataclass(frozen=True)
class Edit:
    kind: str                       # "set", "delete" or "rename"
    key: str
    value: object = None
    vtype: int | None = None
    subtype: int | None = None
    new_key: str | None = None
    note: str = ""                  # what was inferred, for the user


def check_key(key: str) -> None:
    if key.startswith("GGUF."):
        raise InputError(f"{key}: GGUF.* are header fields, not keys; they cannot be edited")
    if len(key) > 256 or not KEY_RE.match(key):
        raise InputError(f"{key!r} is not a valid key name (ASCII letters, digits, _ and -, "
                         f"in dot-separated parts)")
    if key in REFUSED:
        raise InputError(f"refusing to edit {key}: {REFUSED[key]}")
    if key.startswith("tinyconvert.tmac."):
        raise InputError(f"refusing to edit {key}: the tinyconvert.tmac.* keys say what the "
                         f"file's T-MAC tensor type ids mean; without them the tensors misread")


def parse_type(text: str) -> tuple[int, int | None]:
    """'u32' -> scalar; 'array-of-u32' / 'array:u32' / 'array' (element type inferred)."""
    t = text.lower()
    for prefix in ("array-of-", "array:", "array[", "array"):
        if t.startswith(prefix):
            sub = t[len(prefix):].rstrip("]")
            if sub and sub not in TYPES:
                raise InputError(f"unknown element type {sub!r}; valid: {', '.join(TYPES)}")
            return gf.ARRAY, TYPES[sub] if sub else None
    if t not in TYPES:
        raise InputError(f"unknown --type {text!r}; valid: {', '.join(TYPES)}, array-of-<type>")
    return TYPES[t], None


def _scalar(text, vtype: int):
    try:
        if vtype == gf.STRING:
            return str(text)
        if vtype == gf.BOOL:
            if isinstance(text, bool):
                return text
            low = str(text).lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if vtype in (gf.F32, gf.F64):
            v = float(text)
            if vtype == gf.F32 and math.isfinite(v) and abs(v) > 3.4028234663852886e38:
                raise InputError(f"{text} does not fit f32")
            return v
        if isinstance(text, float) and not text.is_integer():
            raise ValueError
        return int(text)
    except (ValueError, TypeError):
        raise InputError(f"{text!r} is not a valid {gf.TYPE_NAMES[vtype]}") from None


def _infer_scalar(v) -> int:
    if isinstance(v, bool):
        return gf.BOOL
    if isinstance(v, int):
        return gf.U32 if 0 <= v < 2**32 else gf.I32 if -2**31 <= v < 2**31 else gf.I64
    if isinstance(v, float):
        return gf.F32
    return gf.STRING


def _infer(text: str):
    """Conservative: a whole number is u32 (i32/i64 if it must), a decimal f32, true/false a
    bool, a JSON list an array of those; anything else a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return gf.BOOL, None, low == "true"
    if re.fullmatch(r"[+-]?\d+", text.strip()):
        v = int(text)
        return _infer_scalar(v), None, v
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", text.strip()):
        return gf.F32, None, float(text)
    if text.strip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            return gf.STRING, None, text
        sub = _infer_scalar(items[0]) if items else gf.STRING
        if any(_infer_scalar(i) == gf.F32 for i in items) and sub != gf.STRING:
            sub = gf.F32
        if sub in (gf.U32, gf.I32) and any(i < 0 for i in items):
            sub = gf.I32
        return gf.ARRAY, sub, items
    return gf.STRING, None, text


def make_set(f: gf.GgufFile, key: str, text: str, type_text: str | None = None,
             from_json: bool = False) -> Edit:
    check_key(key)
    old = f.fields.get(key)
    note = ""
    if type_text is not None:
        vtype, sub = parse_type(type_text)
    elif old is not None:
        vtype, sub = old.vtype, old.subtype
    else:
        vtype, sub, _ = _infer(text)
        note = f"{key} is new: stored as {_type_label(vtype, sub)} (inferred; use --type to choose)"
    raw = json.loads(text) if from_json or (vtype == gf.ARRAY and not isinstance(text, list)) \
        else text
    if vtype == gf.ARRAY:
        if not isinstance(raw, list):
            raise InputError(f"{key}: an array value must be a JSON list, e.g. '[1, 2, 3]'")
        if sub is None:
            sub = _infer(json.dumps(raw))[1] if raw else gf.STRING
        if sub == gf.ARRAY:
            raise InputError(f"{key}: nested arrays are not supported")
        value = [_scalar(v, sub) for v in raw]
    else:
        value = _scalar(raw, vtype)
    encode_value(vtype, value, sub)            # fails now if the value does not fit the type
    return Edit("set", key, value, vtype, sub, note=note)


def _type_label(vtype: int, sub: int | None) -> str:
    return f"array-of-{gf.TYPE_NAMES[sub]}" if vtype == gf.ARRAY else gf.TYPE_NAMES[vtype]


def make_delete(f: gf.GgufFile, key: str) -> Edit:
    check_key(key)
    if key not in f.fields:
        raise InputError(f"{key}: no such key to delete")
    return Edit("delete", key)


def make_rename(f: gf.GgufFile, old: str, new: str) -> Edit:
    check_key(old)
    check_key(new)
    if old not in f.fields:
        raise InputError(f"{old}: no such key to rename")
    if new in f.fields:
        raise InputError(f"{new}: key already exists")
    return Edit("rename", old, new_key=new)


def _patchable(f: gf.GgufFile, edits: list[Edit]) -> tuple[int, bytes] | None:
    """(offset, bytes) of the one in-place write that makes these edits, or None. Two patches
    are never written in place: a crash between them would leave half the edit."""
    if len(edits) != 1:
        return None
    e = edits[0]
    old = f.fields.get(e.key)
    if e.kind != "set" or old is None or (e.vtype, e.subtype) != (old.vtype, old.subtype):
        return None
    data = encode_value(e.vtype, e.value, e.subtype)
    if len(data) != old.end - old.offset or len(data) > PATCH_LIMIT:
        return None
    return old.offset, data


def _entries(f: gf.GgufFile, edits: list[Edit]) -> list[bytes]:
    order = list(f.fields)
    changed: dict[str, bytes | None] = {}
    buf = header_bytes(f)
    for e in edits:
        if e.kind == "delete":
            changed[e.key] = None
        elif e.kind == "rename":
            changed[e.key] = None
            order.append(e.new_key)
            changed[e.new_key] = raw_entry(f, e.key, buf, new_key=e.new_key)
        else:
            if e.key not in f.fields and e.key not in order:
                order.append(e.key)
            changed[e.key] = encode_entry(e.key, e.vtype, e.value, e.subtype)
    return [changed[k] if k in changed else raw_entry(f, k, buf)
            for k in order if changed.get(k, b"") is not None]


@dataclass
class EditResult:
    path: Path
    mode: str                       # "patched in place" or "rewritten"
    notes: list[str]
    plan: object = None             # --dry-run: what would be written (pipeline/outplan.py)


def apply_edits(path: Path, edits: list[Edit], out: Path | None = None, *,
                dry_run: bool = False) -> EditResult:
    """A split model is edited in its first shard (edit/split_meta.py). dry_run: the plan only."""
    from tinyconvert.edit.split_meta import check_split_target, edit_plan
    f = gf.read_gguf(path, strict_types=False)
    check_split_target(f, out)
    notes = [e.note for e in edits if e.note]
    if out is None and (patch := _patchable(f, edits)) is not None:
        if dry_run:
            return EditResult(Path(path), "would patch in place", notes,
                              edit_plan(f, Path(path), None, patch))
        _patch_in_place(f, path, *patch)
        return EditResult(Path(path), "patched in place", notes)
    target = Path(out) if out is not None else Path(path)
    if out is not None:
        check_output(target, Path(path))
    entries = _entries(f, edits)
    plan = edit_plan(f, target, entries, None)
    if dry_run:
        return EditResult(target, "would rewrite", notes, plan)
    plan.check_space()
    with atomic_output(target) as tmp:
        rewrite(f, entries, tmp)
        _check_same_tensors(f, gf.read_gguf(tmp, strict_types=False))
    return EditResult(target, "rewritten", notes)


def _write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _patch_in_place(f: gf.GgufFile, path: Path, offset: int, data: bytes) -> None:
    with open(path, "rb") as fh:
        fh.seek(offset)
        old = fh.read(len(data))
    _write_at(path, offset, data)
    try:
        _check_same_tensors(f, gf.read_gguf(path, strict_types=False), "")
    except (RuntimeError, InputError) as e:
        _write_at(path, offset, old)
        raise RuntimeError(f"{path}: the patched file did not re-read with the same tensors "
                           f"({e}); its original bytes were restored") from None


def _check_same_tensors(before: gf.GgufFile, after: gf.GgufFile,
                        consequence: str = "; nothing was replaced") -> None:
    if [(t.name, t.ne, t.ggml_type, t.offset) for t in before.tensors] != \
            [(t.name, t.ne, t.ggml_type, t.offset) for t in after.tensors] or \
            before.magic != after.magic or \
            _data_size(before) != _data_size(after):
        raise RuntimeError(f"edited file does not carry the same tensors{consequence}")


def _data_size(f: gf.GgufFile) -> int:
    """A file with no tensors may end before the padding of its (empty) data section."""
    return max(0, f.file_size - f.data_start)
