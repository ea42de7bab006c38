"""Quant ladders: one model to several types in one pass (`quantize IN -o DIR -t q8_0 -t q4_k_m
...`, and the same on hf2gguf). Each output is planned exactly as a separate run plans it (the
same code: hf2gguf's plan, or quantize's GGUF plan), so its bytes are that run's; then
ladder/write.py reads each source tensor once and writes all outputs together, all or none.
Files are named as llama.cpp users expect: `<model-name>-Q4_K_M.gguf`."""
from __future__ import annotations

import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tinyconvert.formats import gguf_file as gf
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_write import OutTensor, write_header
from tinyconvert.pipeline.assign import Target, assign
from tinyconvert.pipeline.ladder.write import LadderOutput, write_outputs
from tinyconvert.pipeline.recipes.mixes import RECIPES, Options
from tinyconvert.quant.tmac.tmac_types import TmacType


@dataclass(frozen=True)
class LadderFile:
    qtype: str                         # the mix / out type, lower case (q4_k_m)
    path: Path
    types: dict[str, int]              # tensor type -> count
    n_bytes: int
    fallbacks: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class LadderResult:
    source: str
    outdir: Path
    files: list[LadderFile]
    seconds: float
    notes: list[str] = field(default_factory=list)
    requantized: int = 0


def file_name(model_name: str, qtype: str) -> str:
    return f"{model_name}-{qtype.upper()}.gguf"


_TYPE_SUFFIX = re.compile(r"[-._](" + "|".join(sorted(RECIPES, key=len, reverse=True)) + r")$",
                          re.IGNORECASE)


def gguf_model_name(path: Path, f: gf.GgufFile) -> str:
    """The input's stem without its type suffix (model-F32.gguf -> model), else general.name."""
    stem = _TYPE_SUFFIX.sub("", path.stem)
    if stem and stem.lower() not in RECIPES:
        return stem
    return "-".join(str(f.value("general.name", None) or "model").split())


def prepare_outdir(outdir: Path) -> bool:
    """-o is a folder with several types; made if missing (its parent must exist). Returns
    whether it was made here (removed again when the ladder fails)."""
    if outdir.is_file():
        raise InputError(f"{outdir}: is a file; with several types -o names a folder")
    if outdir.is_dir():
        return False
    if outdir.suffix.lower() == ".gguf":
        raise InputError(f"{outdir}: with several types -o names a folder (the files are named "
                         f"<model>-<TYPE>.gguf in it), not a .gguf file")
    if not outdir.parent.is_dir():
        raise InputError(f"{outdir}: its parent folder {outdir.parent} does not exist")
    outdir.mkdir()
    return True


def _unique(labels: list[str]) -> None:
    seen = [t for t, n in Counter(labels).items() if n > 1]
    if seen:
        raise InputError(f"type {seen[0]} is given twice")


def _no_tmac(planned, label: str) -> None:
    if any(isinstance(p.qtype, TmacType) or p.src_dtype in ("TMAC", "I8") for p in planned):
        raise InputError(f"{label}: T-MAC and grouped INT8 files cannot be made in a ladder; "
                         f"run quantize once per such type")


def _drop_made(outdir: Path, made: bool) -> None:
    """A failed ladder leaves no output; a folder it made is removed too (it is empty)."""
    if made and outdir.is_dir() and not any(outdir.iterdir()):
        os.rmdir(outdir)


def _hf_name(model: str, model_name: str | None) -> str:
    if model_name:
        return "-".join(model_name.split())
    return Path(model).resolve().name if Path(model).is_dir() else model.rstrip("/").split("/")[-1]


def _files(labels, outputs, sizes) -> list[LadderFile]:
    return [LadderFile(label, o.path, dict(Counter(p.qtype.name for p in o.planned)), n,
                       [(p.name, p.fallback_from, p.qtype.name) for p in o.planned
                        if p.fallback_from])
            for label, o, n in zip(labels, outputs, sizes)]


# ---- HF checkpoints: hf2gguf plans each output; the first plan's readers serve all ------------

def _hf_header(writer):
    def write(tmp: Path) -> int:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        end = writer.fout[0].tell()
        writer.close()
        return end
    return write


def hf2gguf_ladder(model: str, outdir: Path, *, outtypes: list[str],
                   model_name: str | None = None, threads: int | None = None, quiet: bool = False,
                   targets: list[Target | None] | None = None) -> LadderResult:
    """outtypes as hf2gguf takes them (f16, q8_0 follow the converter; mixes the quantizer).
    targets (quantize on an HF input): each type's quantize target instead."""
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    start, outdir = time.perf_counter(), Path(outdir)
    made = prepare_outdir(outdir)
    try:
        plans, results = [], []
        for outtype, target in zip(outtypes, targets or [None] * len(outtypes)):
            results.append(hf2gguf(model, outdir / "ladder.gguf", outtype=outtype, quiet=True,
                                   model_name=model_name, target=target, plans=plans))
        labels = [r.outtype for r in results]
        _unique(labels)
        outputs = []
        for label, (writer, planned) in zip(labels, plans):
            _no_tmac(planned, label)
            outputs.append(LadderOutput(outdir / file_name(_hf_name(model, model_name), label),
                                        planned, _hf_header(writer), writer.data_alignment))
        readers = {p.name: p.read_rows for p in outputs[0].planned}

        def read(tname, r0, r1, need_raw, need_rows):
            return None, readers[tname](r0, r1)
        sizes = write_outputs(outputs, read, threads=threads, quiet=quiet)
    except BaseException:
        _drop_made(outdir, made)
        raise
    return LadderResult(str(results[0].source), outdir, _files(labels, outputs, sizes),
                        time.perf_counter() - start, results[0].notes)


# ---- GGUF inputs: quantize's own plan per output; each tensor's stored bytes read once --------

def _gguf_output(f, inp, path, target, planned, raw, allow_requantize):
    from tinyconvert.pipeline.quantize import _entries, _shape, refuse_requantize
    final = assign(planned, target, _shape(f), raw)
    requant = refuse_requantize(inp, planned, final, allow_requantize)
    entries = _entries(f, target)
    tensors = [OutTensor(p.name, tuple(reversed(p.shape)) or (1,), p.qtype.ggml_id,
                         p.qtype.nbytes(p.shape)) for p in final]

    def header(tmp: Path) -> int:
        with open(tmp, "wb") as fh:
            return write_header(fh, tensors, entries, alignment=f.alignment)
    return LadderOutput(path, final, header, f.alignment), len(requant)


def quantize_ladder(inp: str | Path, outdir: Path, *, qtypes: list[str],
                    options: Options = Options(), threads: int | None = None,
                    allow_requantize: bool = False, quiet: bool = False) -> LadderResult:
    from tinyconvert.pipeline.quantize import resolve_target
    targets = [resolve_target(q, None, None, options) for q in qtypes]
    for q, t in zip(qtypes, targets):
        if t.tmac is not None:
            raise InputError(f"{q}: T-MAC files cannot be made in a ladder; run quantize once "
                             f"per T-MAC type")
    _unique([t.mix for t in targets])
    if not Path(inp).is_file():
        return hf2gguf_ladder(str(inp), outdir, outtypes=[t.mix for t in targets],
                              threads=threads, quiet=quiet, targets=targets)
    start, inp, outdir = time.perf_counter(), Path(inp), Path(outdir)
    f = gf.read_gguf(inp)
    name = gguf_model_name(inp, f)
    paths = [outdir / file_name(name, t.mix) for t in targets]
    if inp.resolve() in {p.resolve() for p in paths}:
        raise InputError(f"{inp}: an output would overwrite the input")
    made = prepare_outdir(outdir)
    fd = os.open(inp, os.O_RDONLY)
    try:
        from tinyconvert.pipeline.quantize import decode_rows, gguf_plan
        planned, raw = gguf_plan(f, fd)
        made_out = [_gguf_output(f, inp, p, t, planned, raw, allow_requantize)
                    for p, t in zip(paths, targets)]
        cur = {p.name: p.qtype for p in planned}

        def read(tname, r0, r1, need_raw, need_rows):
            data = raw[tname](r0, r1)          # the stored bytes, read once for every output
            return data, decode_rows(cur[tname], data) if need_rows else None
        outputs = [o for o, _ in made_out]
        sizes = write_outputs(outputs, read, threads=threads, quiet=quiet)
    except BaseException:
        _drop_made(outdir, made)
        raise
    finally:
        os.close(fd)
    return LadderResult(str(inp), outdir, _files([t.mix for t in targets], outputs, sizes),
                        time.perf_counter() - start,
                        requantized=max(n for _, n in made_out))
