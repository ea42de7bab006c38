"""split and merge: existing GGUF files to llama.cpp's split layout and back, byte for byte what
llama-gguf-split --split / --merge write (formats/gguf_split.py has the layout). Tensor data is
copied, never decoded, in the kernel where it can; nothing is held in memory but headers.

llama-gguf-split's merge keeps the first shard's keys, with split.count set to 0 and moved last
(split.no and split.tensors.count stay): so merge(split(x)) is x plus those keys, and x when x
is itself a merge result. split of a split model re-splits the whole set."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tinyconvert.formats import gguf_split as gs
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_edit import copy_entries, encode_entry
from tinyconvert.formats.gguf_file import U16
from tinyconvert.formats.gguf_model import GgufModel, open_gguf
from tinyconvert.formats.gguf_write import OutTensor
from tinyconvert.io.atomic import check_output
from tinyconvert.pipeline.outplan import OutFile, OutputPlan, split_plan
from tinyconvert.pipeline.write.shards import write_copied


@dataclass
class SplitResult:
    plan: OutputPlan
    n_tensors: int
    n_bytes: int
    seconds: float
    dry_run: bool

    @property
    def paths(self) -> list[Path]:
        return self.plan.paths

    def as_json(self) -> dict:
        return {"paths": [str(p) for p in self.paths], "tensors": self.n_tensors,
                "bytes": self.n_bytes, "seconds": self.seconds, "dry_run": self.dry_run}


def _open(inp: Path) -> GgufModel:
    m = open_gguf(inp)
    if m.magic != b"GGUF":
        raise InputError(f"{inp}: a {m.magic.decode(errors='replace')} file; llama.cpp's split "
                         f"layout is for GGUF files")
    gs.check_alignment(m.alignment, str(inp))
    return m


def _tensors(m: GgufModel) -> tuple[list[OutTensor], dict[str, str]]:
    return ([OutTensor(t.name, t.ne, t.ggml_type, t.nbytes) for t in m.tensors],
            {t.name: m.type_name(t.ggml_type) for t in m.tensors})


def _source(m: GgufModel):
    infos = {t.name: t for t in m.tensors}

    def where(name: str) -> tuple[Path, int]:
        t = infos[name]
        shard = m.shard_of(t)
        return shard.path, shard.data_start + t.offset
    return where


def _run(m: GgufModel, plan: OutputPlan, dry_run: bool, quiet: bool, start: float
         ) -> SplitResult:
    inputs = [s.path for s in m.shards]
    for p in plan.paths:
        check_output(p, *inputs)
    n_bytes = plan.total if dry_run else write_copied(plan, _source(m), quiet=quiet)
    return SplitResult(plan, len(m.tensors), n_bytes, time.perf_counter() - start, dry_run)


def split(inp: Path, *, split_max_size: str | None = None, split_max_tensors: int | None = None,
          out: Path | None = None, dry_run: bool = False, quiet: bool = False) -> SplitResult:
    """out: the shards' prefix (a trailing .gguf is dropped); default: the input's."""
    start = time.perf_counter()
    rule = gs.make_rule(split_max_size, split_max_tensors)
    if rule is None:
        raise InputError("give --split-max-size SIZE (e.g. 45G) or --split-max-tensors N")
    with _open(Path(inp)) as m:
        if out is not None:
            prefix = gs.output_prefix(out)
        elif m.is_split:
            prefix = gs.shard_prefix(m.path, 0, len(m.shards))
        else:
            prefix = gs.output_prefix(m.path)
        tensors, types = _tensors(m)
        plan = split_plan(prefix, copy_entries(m.first, gs.SPLIT_KEYS), tensors, types, rule)
        return _run(m, plan, dry_run, quiet, start)


def merge(inp: Path, out: Path, *, dry_run: bool = False, quiet: bool = False) -> SplitResult:
    """inp: the first shard of a split model."""
    start = time.perf_counter()
    with _open(Path(inp)) as m:
        if gs.KEY_COUNT not in m.fields:
            raise InputError(f"{inp}: not a split model (no {gs.KEY_COUNT} key); nothing to "
                             f"merge")
        if gs.shard_prefix(m.path, 0, len(m.shards)) is None:
            raise InputError(f"{inp}: a split model's first shard is named "
                             f"PREFIX-00001-of-{len(m.shards):05d}.gguf")
        # llama-gguf-split sets split.count to 0 (gguf_set_val_u16 removes the key and appends
        # it), so a merged file is not taken for a split one
        entries = copy_entries(m.first, (gs.KEY_COUNT,)) + [encode_entry(gs.KEY_COUNT, U16, 0)]
        tensors, types = _tensors(m)
        plan = OutputPlan((OutFile(Path(out), gs.header(entries, tensors), tuple(tensors)),),
                          types)
        return _run(m, plan, dry_run, quiet, start)
