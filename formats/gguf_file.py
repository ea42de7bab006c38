"""GGUF reader that checks every count, length, offset and type id against the file before it
allocates or reads anything, and parses a 50k-token vocabulary in tens of milliseconds.

File layout (little-endian):

    magic "GGUF" (or PowerInfer's "PWRI") | u32 version (2, 3) | u64 n_tensors | u64 n_kv
    n_kv x   { string key | u32 value type | value }
    n_tensors x { string name | u32 n_dims | u64 ne[n_dims] (innermost first) | u32 ggml type
                  | u64 offset (relative to the data section) }
    padding to general.alignment (default 32) | data section

string = u64 length + UTF-8 bytes; array = u32 element type + u64 count + elements.
"""
from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.quant.sizes import block_info, type_name
from tinyconvert.quant.tmac.tmac_types import TypeTable

MAGICS = (b"GGUF", b"PWRI")
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_ELEMENTS = 1 << 48                # far past any real tensor; bounds every size below
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR = {U8: "<u1", I8: "<i1", U16: "<u2", I16: "<i2", U32: "<u4", I32: "<i4", F32: "<f4",
          BOOL: "<u1", U64: "<u8", I64: "<i8", F64: "<f8"}             # numpy dtypes
STRUCT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}                 # struct formats
TYPE_NAMES = {U8: "u8", I8: "i8", U16: "u16", I16: "i16", U32: "u32", I32: "i32", F32: "f32",
              BOOL: "bool", STRING: "str", ARRAY: "array", U64: "u64", I64: "i64", F64: "f64"}


class Strings:
    """An array of strings, checked (every length in the file, every string valid UTF-8) but
    not yet decoded: a vocabulary and its merges are ~10^5 strings, decoding them took most of
    a small model's quantize, and quantize copies the entry's bytes without them."""

    def __init__(self, raw: bytes, starts: np.ndarray, ends: np.ndarray):
        self.raw, self.starts, self.ends = raw, starts, ends

    def decode(self) -> list[str]:
        raw = self.raw
        return [str(raw[s:e], "utf-8") for s, e in zip(self.starts.tolist(), self.ends.tolist())]


@dataclass(frozen=True)
class Field:
    key: str
    vtype: int                    # value type; for arrays, ARRAY
    raw_value: object             # value, or Strings until .value first decodes it
    offset: int                   # where the value starts in the file (after the type id)
    end: int                      # one past its last byte
    subtype: int | None = None    # element type of an array

    @property
    def value(self):
        """The python value (arrays: list, or numpy array for numbers)."""
        if isinstance(self.raw_value, Strings):
            object.__setattr__(self, "raw_value", self.raw_value.decode())
        return self.raw_value


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ne: tuple[int, ...]           # ggml order: innermost (row length) first
    ggml_type: int
    offset: int                   # relative to the data section
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy/torch order (outermost first)."""
        return tuple(reversed(self.ne))

    @property
    def n_elements(self) -> int:
        return math.prod(self.ne)


@dataclass
class GgufFile:
    path: Path
    magic: bytes
    version: int
    fields: dict[str, Field]
    tensors: list[TensorInfo]
    alignment: int
    kv_start: int
    ti_start: int
    ti_end: int
    data_start: int
    file_size: int
    types: TypeTable = field(default_factory=lambda: TypeTable({}), repr=False)
    _map: mmap.mmap | None = field(default=None, repr=False)

    def type_name(self, ggml_type: int) -> str:
        """A tensor type's name as this file means it (T-MAC keys change what ids 36-47 mean)."""
        t = self.types.tmac(ggml_type)
        return t.name if t is not None else type_name(ggml_type)

    def value(self, key: str, default=None):
        f = self.fields.get(key)
        return default if f is None else f.value

    def values(self) -> dict:
        return {k: f.value for k, f in self.fields.items()}

    def tensor_bytes(self, t: TensorInfo) -> np.ndarray:
        """The tensor's raw bytes (a read-only view of the file)."""
        if self._map is None:
            self._map = _mmap(self.path)
        start = self.data_start + t.offset
        return np.frombuffer(self._map, dtype=np.uint8, count=t.nbytes, offset=start)


def _mmap(path: Path) -> mmap.mmap:
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


class _Cursor:
    def __init__(self, buf, path: Path):
        self.buf, self.pos, self.size, self.path = buf, 0, len(buf), path

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise InputError(f"{self.path}: {what} runs past the end of the file at byte "
                             f"{self.pos} (truncated or corrupt)")

    def scalar(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def string(self, what: str) -> str:
        n = self.scalar("<Q", what)
        self.need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: {what} is not valid UTF-8") from None

    def value(self, vtype: int, what: str, depth: int = 0):
        if vtype in SCALAR:
            v = self.scalar(STRUCT[vtype], what)
            return bool(v) if vtype == BOOL else v
        if vtype == STRING:
            return self.string(what)
        if vtype == ARRAY:
            return self.array(what, depth)
        raise InputError(f"{self.path}: {what} has unknown value type {vtype}")

    def array(self, what: str, depth: int):
        if depth > 2:
            raise InputError(f"{self.path}: {what} nests arrays too deeply")
        sub = self.scalar("<I", what)
        count = self.scalar("<Q", what)
        if sub in SCALAR:
            item = np.dtype(SCALAR[sub]).itemsize
            self.need(count * item, what)
            arr = np.frombuffer(self.buf, dtype=SCALAR[sub], count=count, offset=self.pos).copy()
            self.pos += count * item
            return arr.astype(bool) if sub == BOOL else arr
        if sub not in (STRING, ARRAY):
            raise InputError(f"{self.path}: {what} has unknown element type {sub}")
        self.need(count * 8, what)           # every string or array takes at least 8 bytes
        if sub == STRING:                    # decoded at once inside nested arrays
            return self.strings(count, what) if depth == 0 else self.strings(count, what).decode()
        return [self.value(sub, what, depth + 1) for _ in range(count)]

    def strings(self, count: int, what: str) -> Strings:
        """count strings, checked now and decoded when first used (Field.value). The walk
        reads only the lengths; then one decode of the strings joined by newlines checks them
        all (an ASCII byte cannot sit inside a multi-byte sequence, so the join is valid UTF-8
        exactly when every string is)."""
        buf, pos, size = self.buf, self.pos, self.size
        length = struct.Struct("<Q").unpack_from
        starts = []
        append = starts.append
        at = pos
        try:
            for _ in range(count):
                at = pos
                (n,) = length(buf, pos)
                pos += 8
                append(pos)
                pos += n
                if pos > size:
                    break
        except struct.error:              # a length field past the end
            pos = size + 1
        if pos > size or len(starts) < count:
            self.pos = at
            self.string(what)             # the usual message for a truncated file
            raise InputError(f"{self.path}: {what} is truncated")
        first = self.pos
        st = np.asarray(starts, dtype=np.int64) - first
        en = np.empty_like(st)
        en[:-1], en[-1:] = st[1:] - 8, pos - first
        raw = bytes(buf[first:pos])
        marked = np.frombuffer(raw, dtype=np.uint8).copy()
        marked[(st[:, None] - 8 + np.arange(8)).ravel()] = 0x0A    # lengths -> newlines
        try:
            marked.tobytes().decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: {what} is not valid UTF-8") from None
        self.pos = pos
        return Strings(raw, st, en)


def read_gguf(path: Path | str, *, strict_types: bool = True) -> GgufFile:
    """strict_types=False accepts tensor type ids we do not know (their size is then unknown
    and not checked); metadata editing needs only to carry such tensors over unchanged."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size < 24:
        raise InputError(f"{path}: too small to be a GGUF file ({size} bytes)")
    buf = _mmap(path)
    msg = None
    try:
        parsed = _parse(path, buf, size, strict_types)
    except InputError as e:
        msg = str(e)        # keep only the message: the traceback's frames hold views of the map
    buf.close()
    if msg is not None:
        raise InputError(msg)
    return parsed


def _parse(path: Path, buf, size: int, strict_types: bool = True) -> GgufFile:
    c = _Cursor(memoryview(buf), path)
    magic = bytes(c.buf[:4])
    if magic not in MAGICS:
        raise InputError(f"{path}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
    c.pos = 4
    version = c.scalar("<I", "version")
    swapped = int.from_bytes(struct.pack("<I", version), "big")
    if version not in VERSIONS and swapped in VERSIONS:     # every number in it is byte-swapped
        raise InputError(f"{path}: a big-endian GGUF (version {swapped}) cannot be read on "
                         f"this little-endian machine; convert from the source model again "
                         f"without --bigendian")
    if version not in VERSIONS:
        raise InputError(f"{path}: unsupported GGUF version {version} (supported: 2, 3)")
    n_tensors, n_kv = c.scalar("<Q", "tensor count"), c.scalar("<Q", "key count")
    if n_kv > size // 13 or n_tensors > size // 24:          # smallest possible entries
        raise InputError(f"{path}: header claims {n_tensors} tensors and {n_kv} keys, more "
                         f"than a {size}-byte file can hold")
    kv_start = c.pos
    fields: dict[str, Field] = {}
    for i in range(n_kv):
        key = c.string(f"key #{i}")
        vtype = c.scalar("<I", f"type of {key!r}")
        start = c.pos
        sub = None
        if vtype == ARRAY:
            sub = struct.unpack_from("<I", c.buf, c.pos)[0] if c.pos + 4 <= c.size else None
        value = c.value(vtype, f"value of {key!r}")
        if key in fields:
            raise InputError(f"{path}: key {key!r} appears twice")
        fields[key] = Field(key, vtype, value, start, c.pos, sub)
    align = fields["general.alignment"].value if "general.alignment" in fields else DEFAULT_ALIGNMENT
    if not isinstance(align, int) or align <= 0 or align & (align - 1) or align > 1 << 20:
        raise InputError(f"{path}: general.alignment {align!r} is not a power of two")
    try:
        table = TypeTable({k: f.value for k, f in fields.items()
                           if not isinstance(f.raw_value, Strings)})
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None
    ti_start = c.pos
    tensors = [_tensor_info(c, i, strict_types, table) for i in range(n_tensors)]
    data_start = -(-c.pos // align) * align
    if data_start > size and n_tensors:
        raise InputError(f"{path}: data section starts past the end of the file (truncated)")
    _check_tensors(path, tensors, align, data_start, size)
    return GgufFile(path, magic, version, fields, tensors, align, kv_start, ti_start, c.pos,
                    data_start, size, table)


def _tensor_info(c: _Cursor, i: int, strict_types: bool, table: TypeTable) -> TensorInfo:
    name = c.string(f"name of tensor #{i}")
    n_dims = c.scalar("<I", f"dims of {name!r}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise InputError(f"{c.path}: tensor {name!r} has {n_dims} dimensions (1..{MAX_DIMS})")
    ne = tuple(c.scalar("<Q", f"shape of {name!r}") for _ in range(n_dims))
    ggml_type = c.scalar("<I", f"type of {name!r}")
    offset = c.scalar("<Q", f"offset of {name!r}")
    if math.prod(ne) > MAX_ELEMENTS:        # whatever the type, even one we do not know
        raise InputError(f"{c.path}: tensor {name!r} shape {list(ne)} is implausibly large")
    if (tt := table.tmac(ggml_type)) is not None:
        why = tt.fits_shape(tuple(reversed(ne)))
        if why is not None:
            raise InputError(f"{c.path}: tensor {name!r} of T-MAC type {tt.name} cannot have "
                             f"shape {list(ne)}: {why}")
        return TensorInfo(name, ne, ggml_type, offset, tt.nbytes(tuple(reversed(ne))))
    try:
        block, type_size = block_info(ggml_type)
    except KeyError:
        if strict_types:
            raise InputError(f"{c.path}: tensor {name!r} has unknown type id {ggml_type}") from None
        return TensorInfo(name, ne, ggml_type, offset, -1)
    if ne[0] % block:
        raise InputError(f"{c.path}: tensor {name!r} row length {ne[0]} is not a multiple of "
                         f"its type's block size {block}")
    return TensorInfo(name, ne, ggml_type, offset, math.prod(ne) // block * type_size)


def _check_tensors(path: Path, tensors: list[TensorInfo], align: int, data_start: int,
                   size: int) -> None:
    names = set()
    for t in tensors:
        if t.name in names:
            raise InputError(f"{path}: tensor {t.name!r} appears twice")
        names.add(t.name)
        if t.nbytes < 0:                      # unknown type (lenient mode): size not known
            continue
        if t.offset % align:
            raise InputError(f"{path}: tensor {t.name!r} offset {t.offset} is not aligned to "
                             f"{align}")
        if data_start + t.offset + t.nbytes > size:
            raise InputError(f"{path}: tensor {t.name!r} ends past the end of the file "
                             f"(truncated data section)")
    spans = sorted((t.offset, t.offset + t.nbytes, t.name) for t in tensors if t.nbytes >= 0)
    for (a0, a1, an), (b0, _, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            raise InputError(f"{path}: tensors {an!r} and {bn!r} overlap in the data section")
