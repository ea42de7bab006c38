"""quantize: a GGUF (F32/F16/BF16, or quantized with --allow-requantize) or an HF checkpoint to
a quantized GGUF, with llama.cpp's mixes and bytes identical to its quantizer."""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyconvert.pipeline.assign import Target, assign, quantized_inputs
from tinyconvert.io.atomic import atomic_output, check_output
from tinyconvert.formats import gguf_file as gf
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_edit import copy_entries, encode_entry
from tinyconvert.formats.gguf_write import OutTensor, write_header
from tinyconvert.pipeline.mixes import ModelShape, Options, recipe
from tinyconvert.formats.records import rows_and_len
from tinyconvert.pipeline.planned import PlannedTensor
from tinyconvert.io.progress import TensorProgress
from tinyconvert.quant import get_qtype, qtype_by_id
from tinyconvert.quant import int8_grouped as i8g
from tinyconvert.quant import tmac_types as tmac_keys
from tinyconvert.quant.sizes import block_info
from tinyconvert.pipeline.stream import stream_tensors
from tinyconvert.io.threads import resolve_threads
from tinyconvert.pipeline.tmac_plan import TmacSpec, file_keys, make_spec, spec_from_name

BITS = {8: "q8_0", 4: "q4_0"}


@dataclass(frozen=True)
class TmacOptions:
    """quantize --tmac: -b and --group-size give bits and group; these the rest (defaults are
    TmacSpec's)."""
    sym: bool = not TmacSpec.zero_point
    layout: str = TmacSpec.layout
    bm: int | None = None
    kfactor: int | None = None
    method: str = TmacSpec.method


DROPPED_KEYS = ("general.file_type", "general.quantization_version", "split.no", "split.count",
                "split.tensors.count", i8g.GROUP_KEY, *tmac_keys.ALL_KEYS)


@dataclass
class QuantizeResult:
    path: Path
    source: str
    mix: str
    types: dict[str, int]
    bytes_in: int
    bytes_out: int
    n_params: int
    seconds: float
    fallbacks: list[tuple[str, str, str]] = field(default_factory=list)
    requantized: int = 0
    int8_group: int | None = None
    tmac: str | None = None                  # the T-MAC type asked for
    notes: list[str] = field(default_factory=list)   # from the tokenizer files (HF inputs)

    @property
    def bpw(self) -> float:
        return 8 * self.bytes_out / max(1, self.n_params)


def resolve_target(qtype: str | None, bits: int | None, group_size: int | None,
                   options: Options, tmac: TmacOptions | None = None) -> Target:
    if tmac is not None:
        if qtype is not None:
            raise InputError("--tmac takes -b and --group-size, not --type")
        spec = make_spec(bits, group_size, tmac.sym, tmac.layout, tmac.bm, tmac.kfactor,
                         tmac.method)
        return Target("f16", None, options, spec)
    if qtype is not None and (spec := spec_from_name(qtype)) is not None:
        return Target("f16", None, options, spec)
    if (qtype is None) == (bits is None):
        raise InputError("give exactly one of --type TYPE or -b BITS")
    if bits is not None and bits not in BITS:
        raise InputError(f"-b {bits} is not supported; valid: 8 (q8_0), 4 (q4_0)")
    for t in (options.output_tensor_type, options.token_embedding_type,
              *(t for _, t in options.tensor_types)):
        if t is not None:
            get_qtype_or_error(t)
    mix = recipe(qtype) if qtype is not None else BITS[bits]
    if group_size is not None:
        if bits != 8:
            raise InputError("--group-size goes with -b 8 (grouped INT8)")
        if group_size == 32:
            return Target("q8_0", None, options)
        if group_size not in i8g.GROUP_SIZES:
            raise InputError(f"--group-size {group_size} is not supported with -b 8; valid: 32 "
                             f"(q8_0), {', '.join(map(str, i8g.GROUP_SIZES))}")
        return Target("q8_0", group_size, options)
    return Target(mix, None, options)


def get_qtype_or_error(name: str):
    try:
        return get_qtype(name)
    except KeyError as e:
        raise InputError(str(e).strip('"')) from None


def _current_type(f: gf.GgufFile, t: gf.TensorInfo):
    """The registry type a tensor is stored in; T-MAC tensors and types we only read (IQ*, ...)
    cannot be requantized."""
    if f.types.tmac(t.ggml_type) is None:
        try:
            return qtype_by_id(t.ggml_type)
        except KeyError:
            pass
    raise InputError(f"{f.path}: tensor {t.name} has type {f.type_name(t.ggml_type)}, which "
                     f"tinyconvert cannot requantize")


def gguf_plan(f: gf.GgufFile, fd: int):
    """Readers use pread, not the file map: pages of a map stay in this process's memory, so a
    large input would make the peak grow with the model."""
    planned, raw = [], {}
    for t in f.tensors:
        cur = _current_type(f, t)
        row_len = rows_and_len(t.shape)[1]            # the plan's rows (1-D: one element)
        block, type_size = block_info(t.ggml_type)
        if row_len % block:
            raise InputError(f"{f.path}: tensor {t.name} cannot be read in rows of {row_len}")
        row_bytes = row_len // block * type_size

        def raw_rows(r0, r1, t=t, row_bytes=row_bytes):
            n = (r1 - r0) * row_bytes
            data = os.pread(fd, n, f.data_start + t.offset + r0 * row_bytes)
            if len(data) != n:
                raise InputError(f"{f.path}: truncated while reading {t.name}")
            return np.frombuffer(data, dtype=np.uint8).reshape(r1 - r0, row_bytes)

        def rows(r0, r1, cur=cur, raw_rows=raw_rows):
            data = raw_rows(r0, r1)
            if cur.name == "f32":
                return data.view(np.float32)
            if cur.name == "f16":
                return data.view(np.float16)
            if cur.name == "bf16":
                return data.view(np.uint16)
            return cur.dequantize(np.ascontiguousarray(data))
        src = {"f32": "F32", "f16": "F16", "bf16": "BF16"}.get(cur.name, "F32")
        planned.append(PlannedTensor(t.name, t.shape, cur, rows, src))
        raw[t.name] = raw_rows
    return planned, raw


def _shape(f: gf.GgufFile) -> ModelShape:
    arch = f.value("general.architecture", "llama")
    n_head = f.value(f"{arch}.attention.head_count", 1)
    return ModelShape(f.value(f"{arch}.block_count", 0), n_head,
                      f.value(f"{arch}.attention.head_count_kv", n_head), arch,
                      f.value(f"{arch}.expert_count", 0))


def quantize(inp: str | Path, out: Path, *, qtype: str | None = None, bits: int | None = None,
             group_size: int | None = None, options: Options = Options(), threads: int | None = None,
             allow_requantize: bool = False, quiet: bool = False,
             tmac: TmacOptions | None = None) -> QuantizeResult:
    target = resolve_target(qtype, bits, group_size, options, tmac)
    threads = resolve_threads(threads)
    out = Path(out)
    if not Path(inp).is_file():
        from tinyconvert.pipeline.hf2gguf import hf2gguf
        res = hf2gguf(str(inp), out, outtype=target.mix, quiet=quiet, target=target,
                      threads=threads)
        return QuantizeResult(res.path, str(res.source), target.mix, res.types, res.bytes_in,
                              res.n_bytes, res.n_params, res.seconds, res.fallbacks, 0,
                              target.int8_group, target.tmac and target.tmac.name, res.notes)
    return _quantize_gguf(Path(inp), out, target, threads, allow_requantize, quiet)


def _quantize_gguf(inp: Path, out: Path, target: Target, threads: int, allow_requantize: bool,
                   quiet: bool) -> QuantizeResult:
    start = time.perf_counter()
    check_output(out, inp)
    f = gf.read_gguf(inp)
    fd = os.open(inp, os.O_RDONLY)
    try:
        return _quantize_open(inp, out, target, threads, allow_requantize, quiet, f, fd, start)
    finally:
        os.close(fd)


def _quantize_open(inp, out, target, threads, allow_requantize, quiet, f, fd, start):
    planned, raw = gguf_plan(f, fd)
    final = assign(planned, target, _shape(f), raw)
    quantized = set(quantized_inputs(planned))
    requant = [p.name for p in final if p.src_dtype != "RAW" and p.name in quantized]
    if requant and not allow_requantize:
        raise InputError(f"{inp} is already quantized (e.g. {requant[0]} is "
                         f"{next(p.qtype.name for p in planned if p.name == requant[0])}); "
                         f"requantizing loses quality: pass --allow-requantize to do it anyway")
    entries = _entries(f, target)
    tensors = [OutTensor(p.name, tuple(reversed(p.shape)) or (1,), p.qtype.ggml_id,
                         p.qtype.nbytes(p.shape)) for p in final]
    total = sum(t.nbytes for t in tensors)
    with atomic_output(out) as tmp, open(tmp, "wb") as fh, \
            TensorProgress(len(final), total, quiet) as bar:
        write_header(fh, tensors, entries, alignment=f.alignment)
        stream_tensors(fh, final, f.alignment, bar, threads)
    return QuantizeResult(out, str(inp), target.mix, dict(Counter(p.qtype.name for p in final)),
                          f.file_size, out.stat().st_size, sum(t.n_elements for t in f.tensors),
                          time.perf_counter() - start,
                          [(p.name, p.fallback_from, p.qtype.name) for p in final
                           if p.fallback_from], len(requant), target.int8_group,
                          target.tmac and target.tmac.name)


def _entries(f: gf.GgufFile, target: Target) -> list[bytes]:
    entries = copy_entries(f, DROPPED_KEYS)
    entries.append(encode_entry("general.quantization_version", gf.U32, 2))
    entries.append(encode_entry("general.file_type", gf.U32, target.file_type))
    if target.int8_group:
        entries.append(encode_entry(i8g.GROUP_KEY, gf.U32, target.int8_group))
    if target.tmac:
        entries += [encode_entry(key, vtype, value)
                    for key, (vtype, value) in file_keys(target.tmac).items()]
    return entries
