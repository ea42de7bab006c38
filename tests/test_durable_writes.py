"""Outputs survive a power cut: the finished temporary file is fsynced before it is renamed
into place, and its folder after, so the final name never points at an empty or partial file."""
from __future__ import annotations

import os

import pytest

from tinyconvert.io import atomic


@pytest.fixture
def journal(monkeypatch):
    """Records fsync (of which path) and replace calls, in order, and still performs them."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        real_replace(src, dst)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_file_then_rename_then_folder(tmp_path, journal):
    out = tmp_path / "x.gguf"
    with atomic.atomic_output(out) as tmp:
        tmp.write_bytes(b"data")
    replaces = [i for i, e in enumerate(journal) if e[0] == "replace"]
    assert len(replaces) == 1
    r = replaces[0]
    tmp_name = journal[r][1]
    assert ("fsync", tmp_name) in journal[:r], journal            # the data, before the rename
    assert ("fsync", str(tmp_path)) in journal[r + 1:], journal   # the folder entry, after it
    assert out.read_bytes() == b"data"


def test_failed_block_syncs_nothing_and_leaves_nothing(tmp_path, journal):
    with pytest.raises(RuntimeError):
        with atomic.atomic_output(tmp_path / "x.gguf") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    assert not any(e[0] == "replace" for e in journal)


def test_conversion_output_is_synced(tmp_path, journal):
    """A real command's output goes through the same path: set-metadata's rewrite."""
    from tests.test_hostile_sizes import gguf_bytes
    from tinyconvert.edit.metaedit import apply_edits, make_set
    from tinyconvert.formats.gguf_file import read_gguf
    src = tmp_path / "in.gguf"
    src.write_bytes(gguf_bytes((32,), 0) + bytes(128))
    out = tmp_path / "out.gguf"
    apply_edits(src, [make_set(read_gguf(src), "general.name", "x")], out)
    r = next(i for i, e in enumerate(journal) if e[0] == "replace")
    assert journal[r][2] == str(out)
    assert ("fsync", journal[r][1]) in journal[:r]
    assert ("fsync", str(tmp_path)) in journal[r + 1:]
