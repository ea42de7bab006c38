"""set-metadata on a split model: llama.cpp reads every key from the first shard (the others
carry only split.*), so edits go there; the set must be whole, and the split.* keys themselves
are left to split/merge. Also the plan --dry-run prints for an edit."""
from __future__ import annotations

import struct
from pathlib import Path

from tinyconvert.formats import gguf_file as gf
from tinyconvert.formats import gguf_split as gs
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_model import open_gguf
from tinyconvert.formats.gguf_write import OutTensor
from tinyconvert.pipeline.outplan import OutFile, OutputPlan


def check_split_target(f: gf.GgufFile, out: Path | None) -> None:
    """f is the file set-metadata was given; refuses what would not edit a split model right."""
    count = f.value(gs.KEY_COUNT, 0)
    if not isinstance(count, int) or count <= 1:
        return
    no = f.value(gs.KEY_NO, 0)
    if no != 0:
        raise InputError(f"{f.path}: is shard {no + 1} of {count}; llama.cpp reads the keys "
                         f"of a split model from its first shard: edit that one")
    open_gguf(f.path, strict_types=False)         # every shard there and of this set
    if out is not None:
        raise InputError(f"{f.path}: -o on a split model would leave its other shards behind; "
                         f"edit the first shard in place, or merge the model first")


def edit_plan(f: gf.GgufFile, target: Path, entries: list[bytes] | None,
              patch: tuple[int, bytes] | None) -> OutputPlan:
    """entries: a rewrite with these keys; patch: (offset, bytes) written in place."""
    types = {t.name: f.type_name(t.ggml_type) for t in f.tensors}
    tensors = tuple(OutTensor(t.name, t.ne, t.ggml_type, t.nbytes) for t in f.tensors)
    if patch is not None:
        return OutputPlan((), types, edit=f"patch {len(patch[1])} bytes in place at byte "
                          f"{patch[0]} of {f.path} (no new space needed)")
    with open(f.path, "rb") as fh:
        fh.seek(f.ti_start)
        infos = fh.read(f.ti_end - f.ti_start)
    head = f.magic + struct.pack("<IQQ", f.version, len(f.tensors), len(entries))
    head += b"".join(entries) + infos
    head += bytes(-len(head) % f.alignment)
    data = max(0, f.file_size - f.data_start)        # copied as it is (gguf_edit.rewrite)
    return OutputPlan((OutFile(Path(target), head, tensors, f.alignment, data),), types,
                      edit=f"rewrite {f.path} with {len(entries)} keys into {target}")
