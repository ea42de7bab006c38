"""gpt-oss experts as OpenAI ships them: MXFP4, carried into the GGUF's MXFP4 (type 39) without
requantizing, as llama.cpp's converter does (GptOssModel.repack_mxfp4).

The checkpoint keeps each expert projection as two U8 tensors, rows being output units:
  *.experts.gate_up_proj_blocks  [E, 2*ff, n_embd/32, 16]   two E2M1 codes per byte
  *.experts.gate_up_proj_scales  [E, 2*ff, n_embd/32]       one E8M0 exponent per block
  *.experts.down_proj_blocks     [E, n_embd, ff/32, 16]
  *.experts.down_proj_scales     [E, n_embd, ff/32]
gate_up's rows interleave gate and up (row 2j is gate unit j, 2j+1 up unit j), so across the
whole stack gate row r is source row 2r and up row r is source row 2r + 1. No transpose is
needed: the rows are already llama.cpp's [E, out, in]. quant.mxfp4.from_ocp moves the nibbles
into ggml's block order. Records of dtype "MXFP4" read rows of ggml block bytes."""
from __future__ import annotations

import re

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord
from tinyconvert.quant.mxfp4 import QK, from_ocp

PACKED = re.compile(r"^(?P<pre>.*\.experts)\.(?P<w>gate_up_proj|down_proj)_(?P<part>blocks|scales)$")
DTYPE = "MXFP4"                  # a record whose rows are ggml MXFP4 block bytes
FILE_TYPE = 38                   # LLAMA_FTYPE_MOSTLY_MXFP4_MOE: what the converter then writes


def _reader(blocks: TensorRecord, scales: TensorRecord, step: int, parity: int):
    """Rows [r0, r1) of the output: source rows step * r + parity, repacked. The blocks record
    reads in rows of 16 bytes (one block each), nb of them per weight row."""
    nb = scales.shape[-1]

    def read(r0: int, r1: int) -> np.ndarray:
        lo, hi = step * r0, step * r1
        b = blocks.read_rows(lo * nb, hi * nb).reshape(hi - lo, nb, QK // 2)[parity::step]
        s = scales.read_rows(lo, hi)[parity::step]                       # [n, nb]
        return from_ocp(b, s)                                            # [n, nb * 17]
    return read


def _check(blocks: TensorRecord, scales: TensorRecord) -> None:
    if (blocks.dtype, scales.dtype) != ("U8", "U8") or len(blocks.shape) != 4 \
            or blocks.shape[-1] != QK // 2 or blocks.shape[:-1] != scales.shape:
        raise InputError(f"MXFP4 tensors {blocks.name!r} {list(blocks.shape)} {blocks.dtype} and "
                         f"{scales.name!r} {list(scales.shape)} {scales.dtype} do not form "
                         f"[E, rows, blocks, 16] U8 blocks with [E, rows, blocks] U8 scales")


def _repacked(pre: str, w: str, blocks: TensorRecord, scales: TensorRecord) -> list[TensorRecord]:
    _check(blocks, scales)
    n_expert, rows, n_blocks = scales.shape
    cols = n_blocks * QK
    if w == "down_proj":
        return [TensorRecord(f"{pre}.down_proj.weight", (n_expert, rows, cols), DTYPE,
                             _reader(blocks, scales, 1, 0), blocks.source)]
    if rows % 2:
        raise InputError(f"{blocks.name!r} has {rows} rows; gate and up interleaved need an "
                         f"even count")
    return [TensorRecord(f"{pre}.{name}.weight", (n_expert, rows // 2, cols), DTYPE,
                         _reader(blocks, scales, 2, parity), blocks.source)
            for parity, name in ((0, "gate_proj"), (1, "up_proj"))]


def file_type(planned, outtype: str, default: int) -> int:
    """general.file_type: llama.cpp's converter says MXFP4_MOE for a float outtype when the
    experts came over as MXFP4."""
    carried = any(p.src_dtype == "RAW" and p.qtype.name == "mxfp4" for p in planned)
    return FILE_TYPE if carried and outtype in ("f32", "f16", "bf16") else default


def mxfp4_records(records: list[TensorRecord]) -> list[TensorRecord]:
    """Each blocks/scales pair becomes its GGUF tensors' records, where the blocks stood."""
    parts: dict[tuple[str, str], dict[str, TensorRecord]] = {}
    for rec in records:
        if m := PACKED.match(rec.name):
            parts.setdefault((m["pre"], m["w"]), {})[m["part"]] = rec
    out = []
    for rec in records:
        m = PACKED.match(rec.name)
        if m is None:
            out.append(rec)
            continue
        pair = parts[(m["pre"], m["w"])]
        if len(pair) != 2:
            missing = "scales" if "scales" not in pair else "blocks"
            raise InputError(f"{rec.name!r} has no {m['pre']}.{m['w']}_{missing} to go with it")
        if m["part"] == "blocks":
            out.extend(_repacked(m["pre"], m["w"], pair["blocks"], pair["scales"]))
    return out
