"""The whole-row quantization kernels, one thread, side by side in one run: ours in C
(quant/kernels/ckernels.c), ours through numba (the fallback without a C compiler) and ggml's
own ggml_quantize_chunk (llama-cpp-python's libggml-base), on the same float32 rows; ns per
weight, the best of --reps interleaved runs (the machine is shared), and a check that all three
write the same bytes.

    python tests/benchmarks/kernel_speed.py [--types q8_0,q4_0,q5_0,q4_k,q5_k,q6_k]
        [--rows 512] [--cols 4096] [--reps 7]

The rows are normal weights at a scale that changes from row to row (log-normal), as a model's
do; nothing here was tuned on them.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TYPES = ("q8_0", "q4_0", "q5_0", "q4_k", "q5_k", "q6_k")


def _best(fn, reps_out: list[float]) -> None:
    t = time.perf_counter()
    fn()
    reps_out.append(time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    from tests.support.ggml_chunk import quantize_chunk
    from tinyconvert.quant import get_qtype
    from tinyconvert.quant.kernels import cload, fused, loader
    rng = np.random.default_rng(2026)
    x = (rng.standard_normal((a.rows, a.cols)) * rng.lognormal(-3.5, 1.0, (a.rows, 1))
         ).astype(np.float32)
    print(f"{a.rows} x {a.cols} float32 rows, 1 thread, best of {a.reps}: ns per weight")
    print(f"  {'type':6s} {'C':>7s} {'numba':>7s} {'ggml':>7s}  C/ggml  numba/ggml  bytes")
    for name in a.types.split(","):
        module, fn, qk, nbytes = fused.FUSED[name]
        kernels = {"C": cload.row_kernel(name),
                   "numba": getattr(loader.compiled(module), fn)}
        gid = get_qtype(name).ggml_id
        runs = {k: (lambda k=k: loader.run_rows(kernels[k], x, "F32", qk, nbytes))
                for k in kernels}
        runs["ggml"] = lambda: quantize_chunk(gid, x)
        outs = {k: f() for k, f in runs.items()}                     # warm-up (numba compiles)
        same = all(np.array_equal(outs["ggml"], v) for v in outs.values())
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(a.reps):
            for k, f in runs.items():
                _best(f, times[k])
        ns = {k: min(v) / x.size * 1e9 for k, v in times.items()}
        print(f"  {name:6s} {ns['C']:7.2f} {ns['numba']:7.2f} {ns['ggml']:7.2f}  "
              f"{ns['C'] / ns['ggml']:6.2f}  {ns['numba'] / ns['ggml']:10.2f}  "
              f"{'equal' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
