"""Bounded memory while writing (issue 19): the streamer keeps a bounded number of encoded chunks
in flight, and whole-tensor transforms (PowerInfer's ffn_down_t, predictors, GPT-2's transposes)
are held one at a time and freed after their last row."""
from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tinyconvert.formats.predictor import Predictor
from tinyconvert.pipeline.write.held import HeldWhole
from tinyconvert.pipeline.write.inflight import bounded_map, in_flight_limit
from tinyconvert.pipeline.plan import PlannedTensor
from tinyconvert.pipeline.write.stream import stream_tensors
from tinyconvert.powerinfer.pwri import to_powerinfer
from tinyconvert.quant import get_qtype


def test_bounded_map_keeps_at_most_limit_results_and_their_order():
    lock, state = threading.Lock(), {"alive": 0, "peak": 0}

    def work(i: int) -> int:
        time.sleep(0.001)
        with lock:
            state["alive"] += 1
            state["peak"] = max(state["peak"], state["alive"])
        return i

    got = []
    with ThreadPoolExecutor(4) as pool:
        for i in bounded_map(pool, work, range(200), limit=3):
            time.sleep(0.002)                    # a slow writer: encoders would run ahead
            with lock:
                state["alive"] -= 1
            got.append(i)
    assert got == list(range(200))
    assert 1 <= state["peak"] <= 3, state


def test_bounded_map_drops_queued_work_after_a_failure():
    """The chunk that fails stops the map: nothing queued behind it runs afterwards (a worker
    already on an item may finish it)."""
    started = []

    def work(i: int) -> int:
        started.append(i)
        time.sleep(0.01 if i <= 2 else 0.5)        # the map has long to cancel what is queued
        if i == 2:
            raise ValueError("bad chunk")
        return i

    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(ValueError, match="bad chunk"):
            for _ in bounded_map(pool, work, range(100), limit=8):
                pass
    assert len(started) <= 4, started           # 0, 1, 2 and at most the one after


def test_the_streamer_never_has_more_chunks_than_the_bound(monkeypatch):
    """Chunks read (and so encoded) but not yet written stay within in_flight_limit."""
    from tinyconvert.pipeline.write import stream
    monkeypatch.setattr(stream, "CHUNK_BYTES", 64 * 4)          # 64-float rows: many chunks
    data = np.arange(512 * 64, dtype=np.float32).reshape(512, 64)
    lock, state = threading.Lock(), {"read": 0, "written": 0, "peak": 0}

    def read_rows(r0, r1):
        with lock:
            state["read"] += 1
            state["peak"] = max(state["peak"], state["read"] - state["written"])
        return data[r0:r1]

    class Sink(io.BytesIO):
        def write(self, b):
            if len(b) == 64 * 4:                # a chunk (padding writes are empty here)
                time.sleep(0.001)
                with lock:
                    state["written"] += 1
            return super().write(b)

    p = PlannedTensor("t.weight", data.shape, get_qtype("f32"), read_rows, "F32")
    out = Sink()
    stream_tensors(out, [p], 32, threads=4)
    assert out.getvalue() == data.tobytes()
    assert state["read"] == 512
    assert state["peak"] <= in_flight_limit(4) + 1, state     # + the chunk being written


def test_held_whole_loads_once_and_frees_after_the_last_row_in_any_order():
    h = HeldWhole(lambda: np.arange(10), 10)
    parts = [h.read(lambda d: d, r0, r0 + 2) for r0 in (8, 0, 4, 2)]
    assert h.held and h.loads == 1
    parts.append(h.read(lambda d: d, 6, 8))
    assert not h.held and h.loads == 1
    assert np.concatenate([parts[i] for i in (1, 3, 2, 4, 0)]).tolist() == list(range(10))


def test_powerinfer_holds_one_transposed_ffn_down_and_one_predictor_at_a_time():
    n_embd, n_ff, rank, layers = 8, 16, 4, 3
    rng = np.random.default_rng(0)
    downs = [rng.standard_normal((n_embd, n_ff)).astype(np.float32) for _ in range(layers)]
    planned = [PlannedTensor(f"blk.{i}.ffn_down.weight", (n_embd, n_ff), get_qtype("f32"),
                             lambda r0, r1, d=d: d[r0:r1], "F32") for i, d in enumerate(downs)]
    loads = []

    class Counted(Predictor):
        def load(self):
            loads.append(id(self))
            return self
    preds = [Counted(rng.standard_normal((rank, n_embd)).astype(np.float32),
                     rng.standard_normal((n_ff, rank)).astype(np.float32)) for _ in range(layers)]
    final = to_powerinfer(planned, preds, "f32")
    holders = {c.cell_contents for t in final for c in t.read_rows.__closure__ or ()
               if isinstance(c.cell_contents, HeldWhole)}
    assert len(holders) == 2 * layers               # one per ffn_down_t, one per predictor
    seen = []
    for t in final:
        rows = [t.read_rows(r0, min(t.n_rows, r0 + 3)) for r0 in range(0, t.n_rows, 3)]
        seen.append(np.concatenate(rows))
        assert sum(h.held for h in holders) <= 1, t.name   # fc1 done: its layer waits for fc2
    assert not any(h.held for h in holders)
    for i in range(layers):
        assert np.array_equal(seen[i], downs[i].T)
        assert np.array_equal(seen[layers + 2 * i], preds[i].fc1)
        assert np.array_equal(seen[layers + 2 * i + 1], preds[i].fc2)
    assert sorted(loads) == sorted(id(p) for p in preds)   # each predictor loaded once


def test_the_streamer_never_holds_two_whole_tensors(monkeypatch):
    """Through the writer's threads (chunks run ahead of the writer; an f32 chunk written as
    f32 is a view of the tensor it came from): a transposed ffn_down is made only once every
    view of the one before it has been let go. (Predictors in memory are the caller's; a
    predictor file's are loaded the same way.)"""
    import weakref
    from tinyconvert.pipeline.write import stream
    monkeypatch.setattr(stream, "CHUNK_BYTES", 4 * 4)            # many chunks per tensor
    n_embd, n_ff, rank, layers = 8, 64, 4, 4
    rng = np.random.default_rng(1)
    downs = [rng.standard_normal((n_embd, n_ff)).astype(np.float32) for _ in range(layers)]
    planned = [PlannedTensor(f"blk.{i}.ffn_down.weight", (n_embd, n_ff), get_qtype("f32"),
                             lambda r0, r1, d=d: d[r0:r1], "F32") for i, d in enumerate(downs)]
    preds = [Predictor(rng.standard_normal((rank, n_embd)).astype(np.float32),
                       rng.standard_normal((n_ff, rank)).astype(np.float32))
             for _ in range(layers)]
    final = to_powerinfer(planned, preds, "f32")
    lock, alive, peak = threading.Lock(), set(), [0]
    read = HeldWhole.read

    def gone(key):
        with lock:
            alive.discard(key)

    def watched(self, pick, r0, r1):
        out = read(self, pick, r0, r1)
        base = out.base if out.base is not None else out
        with lock:                               # a transposed ffn_down seen for the first
            if base.shape == (n_ff, n_embd) and id(base) not in alive:    # time: counted
                alive.add(id(base))                                      # until its last
                peak[0] = max(peak[0], len(alive))                       # view is gone
                weakref.finalize(base, gone, id(base))
        time.sleep(0.0005)                       # let the other worker run ahead if it can
        return out
    monkeypatch.setattr(HeldWhole, "read", watched)
    buf = io.BytesIO()
    stream_tensors(buf, final, 32, threads=2)
    assert peak[0] == 1, peak[0]
    want = b"".join(np.ascontiguousarray(d.T).tobytes() for d in downs)
    assert want in buf.getvalue()
