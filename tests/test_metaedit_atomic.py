"""An in-place metadata edit is all or nothing: one same-size patch is written in place, any
edit needing more goes through the crash-safe rewrite. A failure injected between two patches
must leave the file as it was or fully edited, never half, and the error must say the truth."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

from tinyconvert.edit import metaedit
from tinyconvert.formats import gguf_edit
from tinyconvert.formats import gguf_file as gf


class Injected(Exception):
    pass


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("aaaa")
    w.add_string("tokenizer.chat_template", "bbbb")
    w.add_tensor("w", np.arange(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def two_edits(path):
    f = gf.read_gguf(path)
    return [metaedit.make_set(f, "general.name", "cccc"),
            metaedit.make_set(f, "tokenizer.chat_template", "dddd")]


class FailingFile:
    """A file whose second write raises: a crash between two in-place patches."""
    def __init__(self, fh):
        self.fh, self.writes = fh, 0

    def write(self, data):
        self.writes += 1
        if self.writes == 2:
            raise Injected("crash between patches")
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_failure_between_patches_leaves_old_or_new(small, monkeypatch):
    before = small.read_bytes()

    def failing_open(path, mode="r", *a, **kw):
        fh = open(path, mode, *a, **kw)
        return FailingFile(fh) if "+" in mode else fh
    monkeypatch.setattr(metaedit, "open", failing_open, raising=False)

    def failing_copy(*a, **kw):                  # the rewrite fails while copying tensor data
        raise Injected("crash during rewrite")
    monkeypatch.setattr(gguf_edit, "copy_range", failing_copy)
    try:
        metaedit.apply_edits(small, two_edits(small))
    except Injected:
        pass
    after = gf.read_gguf(small)
    values = (after.value("general.name"), after.value("tokenizer.chat_template"))
    assert values in (("aaaa", "bbbb"), ("cccc", "dddd")), f"half-edited: {values}"
    if values == ("aaaa", "bbbb"):
        assert small.read_bytes() == before
    assert [p.name for p in small.parent.iterdir()] == ["m.gguf"]     # no temporary left


def test_two_edits_are_rewritten_one_is_patched(small):
    res = metaedit.apply_edits(small, two_edits(small))
    assert res.mode == "rewritten"
    f = gf.read_gguf(small)
    assert (f.value("general.name"), f.value("tokenizer.chat_template")) == ("cccc", "dddd")
    res = metaedit.apply_edits(small, [metaedit.make_set(f, "general.name", "eeee")])
    assert res.mode == "patched in place"
    assert gf.read_gguf(small).value("general.name") == "eeee"


def test_failed_check_after_patch_says_what_happened(small, monkeypatch):
    """If the re-read after an in-place patch disagrees, the old bytes are put back and the
    message says so (it used to say 'nothing was replaced' over a patched file)."""
    before = small.read_bytes()
    real = gf.read_gguf
    calls = []

    def read_twisted(path, **kw):
        f = real(path, **kw)
        calls.append(path)
        if len(calls) == 2:                          # the re-read after the patch
            f.tensors = f.tensors[:0]
        return f
    monkeypatch.setattr(gf, "read_gguf", read_twisted)
    edit = metaedit.make_set(real(small), "general.name", "zzzz")
    with pytest.raises(RuntimeError) as e:
        metaedit.apply_edits(small, [edit])
    assert small.read_bytes() == before
    assert "restored" in str(e.value) and "nothing was replaced" not in str(e.value)
