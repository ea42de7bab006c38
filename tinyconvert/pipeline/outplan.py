"""What a writing command will write, known before any tensor data is read: every output file
(one, or the shards of a split model) with its exact header bytes, tensors and size, and each
tensor's type. --dry-run prints it; the writers check free space against it and write from it."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from tinyconvert.formats import gguf_split as gs
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_write import OutTensor, write_header
from tinyconvert.io.diskspace import check_free_space, free_bytes, human


@dataclass(frozen=True)
class OutFile:
    path: Path
    header: bytes                         # everything before the data section, padded
    tensors: tuple[OutTensor, ...]
    alignment: int = gs.ALIGNMENT
    data_bytes: int | None = None         # a data section copied whole (set-metadata)

    @property
    def size(self) -> int:
        if self.data_bytes is not None:
            return len(self.header) + self.data_bytes
        pad = self.alignment
        return len(self.header) + sum(-(-t.nbytes // pad) * pad for t in self.tensors)


@dataclass(frozen=True)
class OutputPlan:
    files: tuple[OutFile, ...]
    types: dict[str, str]                 # tensor name -> type name
    split: bool = False
    edit: str = ""                        # set-metadata: how the file changes

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.files]

    def folders(self) -> dict[Path, int]:
        """Bytes needed per target folder."""
        need: dict[Path, int] = {}
        for f in self.files:
            folder = f.path.parent if str(f.path.parent) else Path(".")
            need[folder] = need.get(folder, 0) + f.size
        return need

    def check_space(self) -> None:
        for folder, needed in self.folders().items():
            what = f"{len(self.files)} shards" if self.split else self.files[0].path.name
            check_free_space(folder, needed, what)

    def as_json(self) -> dict:
        where = {t.name: i for i, f in enumerate(self.files) for t in f.tensors}
        return {
            "dry_run": True, "split": self.split, "bytes_needed": self.total,
            "free": {str(k): free_bytes(k) for k in self.folders()},
            "files": [{"path": str(f.path), "bytes": f.size, "tensors": len(f.tensors),
                       "first_tensor": f.tensors[0].name if f.tensors else None,
                       "last_tensor": f.tensors[-1].name if f.tensors else None}
                      for f in self.files],
            "tensors": [{"name": t.name, "type": self.types.get(t.name), "shape": list(t.ne),
                         "bytes": t.nbytes, "file": where[t.name]}
                        for f in self.files for t in f.tensors],
            **({"edit": self.edit} if self.edit else {}),
        }

    def lines(self) -> list[str]:
        free = ", ".join(f"{human(free_bytes(k))} free in {k}" for k in self.folders())
        out = [f"dry run: would write {len(self.files)} file(s), {human(self.total)} "
               f"({self.total} bytes) in all; {free}"]
        if self.edit:
            out.append(f"  {self.edit}")
        for i, f in enumerate(self.files):
            span = f" ({f.tensors[0].name} .. {f.tensors[-1].name})" if f.tensors else ""
            out.append(f"  file {i + 1}: {f.path}  {len(f.tensors)} tensors  "
                       f"{human(f.size)}{span}")
        for i, f in enumerate(self.files):
            for t in f.tensors:
                out.append(f"    {t.name:<36} {self.types.get(t.name, '?'):<8} "
                           f"{str(list(t.ne)):<20} {human(t.nbytes):>12}  file {i + 1}")
        return out


def single_plan(out: Path, entries: list[bytes], tensors: list[OutTensor], types: dict,
                *, alignment: int = gs.ALIGNMENT, magic: bytes = b"GGUF") -> OutputPlan:
    """One file as write_header (and gguf-py, byte for byte) lays it out."""
    buf = io.BytesIO()
    write_header(buf, tensors, entries, alignment=alignment, magic=magic)
    return OutputPlan((OutFile(Path(out), buf.getvalue(), tuple(tensors), alignment),), types)


def split_plan(prefix: Path, entries: list[bytes], tensors: list[OutTensor], types: dict,
               rule: gs.SplitRule) -> OutputPlan:
    """The shards of llama.cpp's split layout; entries must hold no split.* keys."""
    groups = gs.group(tensors, rule)
    headers = gs.shard_headers(entries, groups)
    n = len(groups)
    files = tuple(OutFile(gs.shard_path(prefix, i, n), h, tuple(g))
                  for i, (h, g) in enumerate(zip(headers, groups)))
    return OutputPlan(files, types, split=True)


def plan_outputs(out: Path, entries: list[bytes], tensors: list[OutTensor], types: dict, *,
                 rule: gs.SplitRule | None, alignment: int = gs.ALIGNMENT,
                 magic: bytes = b"GGUF") -> OutputPlan:
    """rule None: one file at out; else shards named from out without its .gguf."""
    if rule is None:
        return single_plan(out, entries, tensors, types, alignment=alignment, magic=magic)
    if magic != b"GGUF":
        raise InputError(f"{out}: a {magic.decode(errors='replace')} file cannot be split "
                         f"(llama.cpp's split layout is for GGUF files)")
    gs.check_alignment(alignment, str(out))
    return split_plan(gs.output_prefix(out), entries, tensors, types, rule)
