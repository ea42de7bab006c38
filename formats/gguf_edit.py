"""Writing GGUF metadata back: encode key/value entries, and rebuild a file's header around its
unchanged tensor infos and tensor data (which is copied byte for byte, in large blocks).

The data section keeps its alignment: tensor offsets are relative to the data start, which is
re-padded to general.alignment after the new header, so no tensor info changes.
"""
from __future__ import annotations

import os
import shutil
import struct

import numpy as np

from tinyconvert.formats.gguf_file import (ARRAY, BOOL, SCALAR, STRING, STRUCT, GgufFile)
from tinyconvert.formats.errors import InputError

COPY_BLOCK = 64 << 20


def encode_value(vtype: int, value, subtype: int | None = None) -> bytes:
    """The bytes that follow a key's u32 type id."""
    if vtype in STRUCT:
        try:
            return struct.pack(STRUCT[vtype], int(bool(value)) if vtype == BOOL else value)
        except struct.error as e:
            raise InputError(f"value {value!r} does not fit the key's type ({e})") from None
    if vtype == STRING:
        raw = str(value).encode("utf-8")
        return struct.pack("<Q", len(raw)) + raw
    if vtype == ARRAY:
        if subtype is None:
            raise InputError("an array value needs an element type")
        head = struct.pack("<IQ", subtype, len(value))
        if subtype in SCALAR:
            arr = np.asarray(value)
            if subtype != BOOL and arr.size and np.issubdtype(arr.dtype, np.number):
                info = np.iinfo(SCALAR[subtype]) if np.dtype(SCALAR[subtype]).kind in "iu" else None
                if info is not None and (arr.min() < info.min or arr.max() > info.max):
                    raise InputError(f"array values do not fit {np.dtype(SCALAR[subtype]).name}")
            return head + np.asarray(value, dtype=SCALAR[subtype]).tobytes()
        if subtype == STRING:
            return head + b"".join(encode_value(STRING, v) for v in value)
        raise InputError("nested arrays cannot be written")
    raise InputError(f"unknown value type {vtype}")


def encode_entry(key: str, vtype: int, value, subtype: int | None = None) -> bytes:
    k = key.encode("utf-8")
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", vtype) + \
        encode_value(vtype, value, subtype)


def header_bytes(f: GgufFile) -> bytes:
    """The file's bytes up to its tensor infos: every key/value entry, raw."""
    with open(f.path, "rb") as fh:
        return fh.read(f.ti_start)


def copy_entries(f: GgufFile, drop: tuple[str, ...] = ()) -> list[bytes]:
    """Every entry of f, as it is in the file, except the keys in drop."""
    head = header_bytes(f)
    return [raw_entry(f, k, head) for k in f.fields if k not in drop]


def raw_entry(f: GgufFile, key: str, buf, new_key: str | None = None) -> bytes:
    """An entry whose value is copied from the file as it is (under a new name if given)."""
    fld = f.fields[key]
    k = (new_key or key).encode("utf-8")
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", fld.vtype) + \
        bytes(buf[fld.offset:fld.end])


def copy_range(src, dst, offset: int, length: int) -> None:
    """Copies src[offset:offset+length] to the end of dst, in the kernel where it can
    (copy_file_range), else through a 64 MiB buffer."""
    dst.flush()
    dst_start = dst.tell()
    done = 0
    if hasattr(os, "copy_file_range"):
        try:
            while done < length:
                n = os.copy_file_range(src.fileno(), dst.fileno(),
                                       min(COPY_BLOCK, length - done), offset + done)
                if n == 0:
                    break
                done += n
        except OSError:                  # e.g. a file system without it: start over by hand
            done = 0
        dst.seek(dst_start + done)
        dst.truncate()
    src.seek(offset + done)
    remaining = length - done
    while remaining > 0:
        chunk = src.read(min(COPY_BLOCK, remaining))
        if not chunk:
            raise InputError(f"{src.name}: file ended while copying tensor data")
        dst.write(chunk)
        remaining -= len(chunk)


def rewrite(f: GgufFile, entries: list[bytes], out_path) -> None:
    """Writes f with the given KV entries (already encoded) to out_path (a fresh file)."""
    with open(f.path, "rb") as src, open(out_path, "wb") as dst:
        dst.write(f.magic + struct.pack("<IQQ", f.version, len(f.tensors), len(entries)))
        for e in entries:
            dst.write(e)
        src.seek(f.ti_start)
        dst.write(src.read(f.ti_end - f.ti_start))
        dst.write(bytes(-dst.tell() % f.alignment))
        copy_range(src, dst, f.data_start, max(0, f.file_size - f.data_start))
        dst.flush()
        os.fsync(dst.fileno())
    shutil.copymode(f.path, out_path)
