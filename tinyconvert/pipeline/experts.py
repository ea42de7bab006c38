"""Mixture-of-experts tensors as llama.cpp stores them: one 3-D tensor per layer and projection,
[n_expert, rows, cols], from per-expert checkpoint tensors (`...experts.{e}.{w}.weight`) or from
transformers' fused layout (`...experts.gate_up_proj` [E, 2*ff, n_embd] with the gate rows first,
`...experts.down_proj` [E, n_embd, ff]). The stacked records read expert by expert, row range by
row range, so memory stays that of one chunk whatever the expert count."""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord

PER_EXPERT = re.compile(r"^(?P<pre>.*\.experts)\.(?P<e>\d+)\.(?P<w>[A-Za-z0-9_]+)\.(?P<kind>weight|bias)$")
FUSED = re.compile(r"^(?P<pre>.*\.experts)\.(?P<w>gate_up_proj|down_proj)(\.weight)?$")


def _concat_reader(parts: list, rows: int, offset: int = 0):
    """Rows [r0, r1) of the stack: row r is row offset + r % rows of part r // rows."""
    def read(r0: int, r1: int) -> np.ndarray:
        out, r = [], r0
        while r < r1:
            e, local = divmod(r, rows)
            n = min(r1 - r, rows - local)
            out.append(parts[e](offset + local, offset + local + n))
            r += n
        return out[0] if len(out) == 1 else np.concatenate(out)
    return read


def _stack(name: str, group: dict[int, TensorRecord]) -> TensorRecord:
    n = len(group)
    if sorted(group) != list(range(n)):
        missing = sorted(set(range(max(group) + 1)) - set(group))
        raise InputError(f"expert tensors of {name!r}: expert {missing[0]} is missing")
    first = group[0]
    odd = [r.name for r in group.values() if (r.shape, r.dtype) != (first.shape, first.dtype)]
    if odd:
        raise InputError(f"expert tensor {odd[0]!r} differs in shape or dtype from "
                         f"{first.name!r} {first.shape} {first.dtype}")
    rows = first.n_rows
    return TensorRecord(name, (n, *first.shape), first.dtype,
                        _concat_reader([group[e].read_rows for e in range(n)], rows), first.source)


def _split_fused(rec: TensorRecord, pre: str) -> list[TensorRecord]:
    """Qwen-style gate_up_proj [E, 2*ff, n_embd] -> gate [E, ff, n_embd] and up."""
    if len(rec.shape) != 3 or rec.shape[1] % 2:
        raise InputError(f"fused expert tensor {rec.name!r} has shape {rec.shape}; expected "
                         f"[n_expert, 2 * n_ff, n_embd]")
    n_expert, two_ff, cols = rec.shape
    ff = two_ff // 2
    per_expert = [lambda a, b, e=e: rec.read_rows(e * two_ff + a, e * two_ff + b)
                  for e in range(n_expert)]
    return [TensorRecord(f"{pre}.{w}.weight", (n_expert, ff, cols), rec.dtype,
                         _concat_reader(per_expert, ff, offset), rec.source)
            for w, offset in (("gate_proj", 0), ("up_proj", ff))]


def stack_experts(records: list[TensorRecord]) -> list[TensorRecord]:
    """Per-expert tensors become one stacked record each (in the place of expert 0); fused
    ones are split or renamed; everything else passes unchanged, in order."""
    groups: dict[str, dict[int, TensorRecord]] = {}
    for rec in records:
        if m := PER_EXPERT.match(rec.name):
            groups.setdefault(f"{m['pre']}.{m['w']}.{m['kind']}", {})[int(m["e"])] = rec
    out: list[TensorRecord] = []
    for rec in records:
        if m := PER_EXPERT.match(rec.name):
            if int(m["e"]) == 0:
                key = f"{m['pre']}.{m['w']}.{m['kind']}"
                out.append(_stack(key, groups[key]))
        elif (m := FUSED.match(rec.name)) and len(rec.shape) == 3:
            if m["w"] == "gate_up_proj":
                out.extend(_split_fused(rec, m["pre"]))
            else:
                out.append(replace(rec, name=f"{m['pre']}.down_proj.weight"))
        else:
            out.append(rec)
    return out
