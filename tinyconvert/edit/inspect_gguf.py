"""inspect: a GGUF file's header, keys and tensors, from the header alone (fast on any size)."""
from __future__ import annotations

import fnmatch
from collections import defaultdict
from pathlib import Path

import numpy as np

from tinyconvert.formats import gguf_file as gf
from tinyconvert.formats.gguf_model import open_gguf

LONG_ARRAY = 8
LONG_STRING = 120


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def _show(key: str, f: gf.Field, full: bool) -> str:
    v = f.value
    if f.vtype == gf.ARRAY:
        items = list(v[:LONG_ARRAY]) if not full else list(v)
        more = f" ... ({len(v)} items)" if len(v) > len(items) else ""
        return f"[{', '.join(repr(x) if isinstance(x, str) else str(x) for x in items)}]{more}"
    if isinstance(v, str) and not full and (len(v) > LONG_STRING or "\n" in v):
        one = v.replace("\n", "\\n")
        return repr(one[:LONG_STRING]) + f" ... ({len(v)} chars; --full shows it whole)"
    return repr(v) if isinstance(v, str) else str(v)


def inspect(path: Path, *, tensors: str | None = None, full: bool = False) -> dict:
    f = open_gguf(path, strict_types=False)            # a split model: all its shards
    kinds = defaultdict(lambda: [0, 0, 0])          # type -> [tensors, elements, bytes]
    rows = []
    for t in f.tensors:
        tname = f.type_name(t.ggml_type)
        k = kinds[tname]
        k[0], k[1], k[2] = k[0] + 1, k[1] + t.n_elements, k[2] + max(t.nbytes, 0)
        if tensors is None or fnmatch.fnmatch(t.name, tensors):
            rows.append({"name": t.name, "type": tname, "shape": list(t.ne),
                         "bytes": t.nbytes if t.nbytes >= 0 else None,
                         "bpw": 8 * t.nbytes / t.n_elements if t.nbytes > 0 else None})
    n_params = sum(t.n_elements for t in f.tensors)
    return {
        "file": str(path), "magic": f.magic.decode(), "version": f.version,
        "tensor_count": len(f.tensors), "kv_count": len(f.fields), "alignment": f.alignment,
        "data_offset": f.first.data_start, "file_size": f.file_size,
        "shards": [str(s.path) for s in f.shards] if f.is_split else None,
        "architecture": f.value("general.architecture"), "parameters": n_params,
        "metadata": {k: {"type": _type_label(fld), "value": _jsonable(fld.value)}
                     for k, fld in f.fields.items()},
        "metadata_text": {k: _show(k, fld, full) for k, fld in f.fields.items()},
        "tensors": rows,
        "totals": {k: {"tensors": v[0], "elements": v[1], "bytes": v[2]}
                   for k, v in sorted(kinds.items())},
    }


def _type_label(f: gf.Field) -> str:
    if f.vtype == gf.ARRAY:
        return f"array-of-{gf.TYPE_NAMES.get(f.subtype, '?')}"
    return gf.TYPE_NAMES[f.vtype]


def render(info: dict) -> list[str]:
    lines = [f"{info['file']}: {info['magic']} v{info['version']}, {info['tensor_count']} tensors, "
             f"{info['kv_count']} keys, alignment {info['alignment']}, data at byte "
             f"{info['data_offset']}, {info['file_size'] / 2**20:.1f} MiB"]
    if info.get("shards"):
        lines.append(f"split model: {len(info['shards'])} shards, read as one: "
                     f"{', '.join(info['shards'])}")
    if info["architecture"]:
        lines.append(f"architecture {info['architecture']}, {info['parameters']:,} parameters")
    lines.append("")
    width = max((len(k) for k in info["metadata"]), default=0)
    for k, text in info["metadata_text"].items():
        lines.append(f"{k:<{width}}  {info['metadata'][k]['type']:<16} {text}")
    lines.append("")
    for t in info["tensors"]:
        size = f"{t['bytes'] / 2**20:9.2f} MiB" if t["bytes"] is not None else "        ? MiB"
        bpw = f"{t['bpw']:6.2f} bpw" if t["bpw"] else "       ?"
        lines.append(f"{t['name']:<32} {t['type']:<10} {str(t['shape']):<22} {size} {bpw}")
    lines.append("")
    for k, v in info["totals"].items():
        lines.append(f"total {k:<10} {v['tensors']:5d} tensors {v['elements']:>14,} elements "
                     f"{v['bytes'] / 2**20:10.2f} MiB")
    return lines
