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
from tinyconvert.pipeline.recipes.mixes import ModelShape, Options, recipe
from tinyconvert.formats.records import rows_and_len
from tinyconvert.pipeline.planned import PlannedTensor
from tinyconvert.io.progress import TensorProgress
from tinyconvert.quant import get_qtype, qtype_by_id
from tinyconvert.quant import int8_grouped as i8g
from tinyconvert.quant.tmac import tmac_types as tmac_keys
from tinyconvert.quant.sizes import block_info
from tinyconvert.pipeline.write.stream import stream_tensors
from tinyconvert.io.threads import resolve_threads
from tinyconvert.pipeline.recipes.tmac_plan import TmacSpec, file_keys, make_spec, spec_from_name
from tinyconvert.imatrix.apply import KEYS as IMATRIX_KEYS, file_keys as imatrix_keys, with_imatrix

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
    plan: object = None                  # the output plan (pipeline/outplan.py)
    dry_run: bool = False

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


def gguf_plan(f, fd: int | None = None):
    """f: a GgufModel (formats/gguf_model.py: one file or a split set), or a GgufFile with fd
    open on it. Readers use pread, not
    the file map: pages of a map stay in this process's memory, so a large input would make the
    peak grow with the model."""
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
            if fd is None:
                data = f.pread(t, r0 * row_bytes, n)
            else:                               # a single GgufFile and an open descriptor
                data = os.pread(fd, n, f.data_start + t.offset + r0 * row_bytes)
                if len(data) != n:
                    raise InputError(f"{f.path}: truncated while reading {t.name}")
            return np.frombuffer(data, dtype=np.uint8).reshape(r1 - r0, row_bytes)

        def rows(r0, r1, cur=cur, raw_rows=raw_rows):
            return decode_rows(cur, raw_rows(r0, r1))
        src = {"f32": "F32", "f16": "F16", "bf16": "BF16"}.get(cur.name, "F32")
        planned.append(PlannedTensor(t.name, t.shape, cur, rows, src))
        raw[t.name] = raw_rows
    return planned, raw


def decode_rows(cur, data: np.ndarray) -> np.ndarray:
    """Stored rows (uint8) of type cur -> rows in the plan's source dtype."""
    if cur.name == "f32":
        return data.view(np.float32)
    if cur.name == "f16":
        return data.view(np.float16)
    if cur.name == "bf16":
        return data.view(np.uint16)
    return cur.dequantize(np.ascontiguousarray(data))


def _shape(f: gf.GgufFile) -> ModelShape:
    arch = f.value("general.architecture", "llama")
    n_head = f.value(f"{arch}.attention.head_count", 1)
    return ModelShape(f.value(f"{arch}.block_count", 0), n_head,
                      f.value(f"{arch}.attention.head_count_kv", n_head), arch,
                      f.value(f"{arch}.expert_count", 0))


def quantize(inp: str | Path, out: Path, *, qtype: str | None = None, bits: int | None = None,
             group_size: int | None = None, options: Options = Options(), threads: int | None = None,
             allow_requantize: bool = False, quiet: bool = False,
             tmac: TmacOptions | None = None, split_max_size: str | None = None,
             split_max_tensors: int | None = None, dry_run: bool = False,
             imatrix=None) -> QuantizeResult:
    """split_max_size / split_max_tensors: llama.cpp's split layout; dry_run: plan only.
    imatrix: tinyconvert.imatrix.apply.ImatrixOptions (--imatrix FILE, --imatrix-text, ...)."""
    from tinyconvert.formats.gguf_split import make_rule
    rule = make_rule(split_max_size, split_max_tensors)
    target = with_imatrix(resolve_target(qtype, bits, group_size, options, tmac), str(inp),
                          imatrix, quiet)
    threads = resolve_threads(threads)
    out = Path(out)
    if not Path(inp).is_file():
        from tinyconvert.pipeline.hf2gguf import hf2gguf
        res = hf2gguf(str(inp), out, outtype=target.mix, quiet=quiet, target=target,
                      threads=threads, split_max_size=split_max_size,
                      split_max_tensors=split_max_tensors, dry_run=dry_run)
        return QuantizeResult(res.path, str(res.source), target.mix, res.types, res.bytes_in,
                              res.n_bytes, res.n_params, res.seconds, res.fallbacks, 0,
                              target.int8_group, target.tmac and target.tmac.name, res.notes,
                              res.plan, dry_run)
    return _quantize_gguf(Path(inp), out, target, threads, allow_requantize, quiet, rule,
                          dry_run)


def _quantize_gguf(inp: Path, out: Path, target: Target, threads: int, allow_requantize: bool,
                   quiet: bool, rule=None, dry_run: bool = False) -> QuantizeResult:
    from tinyconvert.formats.gguf_model import open_gguf
    start = time.perf_counter()
    with open_gguf(inp) as f:                # one file, or every shard of a split model
        for shard in f.shards:
            check_output(out, shard.path)
        return _quantize_open(inp, out, target, threads, allow_requantize, quiet, f, start,
                              rule, dry_run)


def _quantize_open(inp, out, target, threads, allow_requantize, quiet, f, start, rule=None,
                   dry_run=False):
    planned, raw = gguf_plan(f)
    final = assign(planned, target, _shape(f), raw)
    requant = refuse_requantize(inp, planned, final, allow_requantize)
    entries = _entries(f, target)
    tensors = [OutTensor(p.name, tuple(reversed(p.shape)) or (1,), p.qtype.ggml_id,
                         p.qtype.nbytes(p.shape)) for p in final]
    total = sum(t.nbytes for t in tensors)
    from tinyconvert.pipeline.write.shards import plan_planned, write_planned
    plan = plan_planned(out, entries, final, rule=rule, alignment=f.alignment)
    for path in plan.paths if plan.split else ():
        check_output(path, *(shard.path for shard in f.shards))
    if dry_run or plan.split:
        n_out = plan.total if dry_run else write_planned(plan, final, quiet=quiet, threads=threads)
    else:
        plan.check_space()
        with atomic_output(out) as tmp, open(tmp, "wb") as fh, \
                TensorProgress(len(final), total, quiet) as bar:
            write_header(fh, tensors, entries, alignment=f.alignment)
            stream_tensors(fh, final, f.alignment, bar, threads)
        n_out = out.stat().st_size
    return QuantizeResult(plan.paths[0], str(inp), target.mix,
                          dict(Counter(p.qtype.name for p in final)),
                          f.file_size, n_out, sum(t.n_elements for t in f.tensors),
                          time.perf_counter() - start,
                          [(p.name, p.fallback_from, p.qtype.name) for p in final
                           if p.fallback_from], len(requant), target.int8_group,
                          target.tmac and target.tmac.name, plan=plan, dry_run=dry_run)


def refuse_requantize(inp, planned, final, allow_requantize: bool) -> list[str]:
    """The tensors final requantizes; an error unless allowed."""
    quantized = set(quantized_inputs(planned))
    requant = [p.name for p in final if p.src_dtype != "RAW" and p.name in quantized]
    if requant and not allow_requantize:
        raise InputError(f"{inp} is already quantized (e.g. {requant[0]} is "
                         f"{next(p.qtype.name for p in planned if p.name == requant[0])}); "
                         f"requantizing loses quality: pass --allow-requantize to do it anyway")
    return requant


def _entries(f, target: Target) -> list[bytes]:
    entries = copy_entries(getattr(f, "first", f),
                           DROPPED_KEYS + (IMATRIX_KEYS if target.imatrix is not None else ()))
    entries.append(encode_entry("general.quantization_version", gf.U32, 2))
    entries.append(encode_entry("general.file_type", gf.U32, target.file_type))
    if target.int8_group:
        entries.append(encode_entry(i8g.GROUP_KEY, gf.U32, target.int8_group))
    if target.tmac:
        entries += [encode_entry(key, vtype, value)
                    for key, (vtype, value) in file_keys(target.tmac).items()]
    if target.imatrix is not None:           # replaced, at the end, as llama-quantize does
        entries += [encode_entry(*kv) for kv in imatrix_keys(target.imatrix)]
    return entries
