"""Our IQ quantizers against llama.cpp's (ggml_quantize_chunk from llama-cpp-python's
libggml-base) on SmolLM2-135M-sized tensors: the first LAYERS ffn_down weights of the real
checkpoint (576 rows of 1536, the only SmolLM2 matrices whose rows are multiples of 256), with an
importance matrix, the rows split into one chunk per thread on both sides (both release the GIL).
Median of --reps, after a warm-up that builds tables and compiles. Also checks the bytes match.

    python tests/benchmarks/iq_speed.py [--threads 2] [--reps 3] [--layers 4]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TYPES = ("iq4_xs", "iq3_s", "iq2_xs")


def _rows(layers: int) -> np.ndarray:
    from safetensors.numpy import load_file
    t = load_file(REPO / ".cache/smollm2-135m-instruct-hf/model.safetensors")
    return np.concatenate([t[f"model.layers.{i}.mlp.down_proj.weight"].astype(np.float32)
                           for i in range(layers)])


def _timed(fn, rows, qw, threads: int):
    chunks = np.array_split(rows, threads)
    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        out = list(ex.map(lambda c: fn(c, qw), chunks))
    return time.perf_counter() - t, np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    from tests.support.ggml_chunk import quantize_chunk
    from tinyconvert.quant import get_qtype
    rows = _rows(args.layers)
    qw = np.random.default_rng(0).lognormal(0.0, 1.0, rows.shape[1]).astype(np.float32)
    print(f"{rows.shape[0]} rows x {rows.shape[1]} (SmolLM2-135M ffn_down x {args.layers}), "
          f"with an imatrix, {args.threads} threads, median of {args.reps}")
    for name in TYPES:
        q = get_qtype(name)
        ours = lambda c, w, q=q: q.quantize(c, imatrix=w)                       # noqa: E731
        theirs = lambda c, w, q=q: quantize_chunk(q.ggml_id, c, w)              # noqa: E731
        ours(rows[:2], qw), theirs(rows[:2], qw)                                # warm-up
        a, b = [], []
        for _ in range(args.reps):
            ta, mine = _timed(ours, rows, qw, args.threads)
            tb, ref = _timed(theirs, rows, qw, args.threads)
            a.append(ta)
            b.append(tb)
        ta, tb = statistics.median(a), statistics.median(b)
        same = "bytes equal" if np.array_equal(mine, ref) else "BYTES DIFFER"
        print(f"{name:7s} tinyconvert {ta:6.2f}s   llama.cpp {tb:6.2f}s   ratio {ta / tb:5.2f}"
              f"   {rows.size / ta / 1e6:5.2f} M weights/s   {same}")


if __name__ == "__main__":
    main()
