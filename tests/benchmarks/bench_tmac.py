"""T-MAC LUT GEMV against dequantize-then-matmul in the same runtime, on a 4096x4096 matrix at
2 and 4 bits (group 128, zero points), batch 1, alternating side by side (median of reps); and
the time to quantize and pack weights, per GB of float32 input.

    python tests/benchmarks/bench_tmac.py [--reps 20] [--threads 2]

"LUT" is runtime.lut.LutLinear (tables built per call, int8 lookups). "dequant+matmul" keeps the
same weights as codes (uint8 per weight, scales, zero points) and dequantizes them with torch on
every call before torch's matmul: what a runtime that does not use tables would do. "f32 matmul"
holds the weights dequantized in float32 (8x the 4-bit file's memory): the floor for reference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tests.benchmarks.measure import timed  # noqa: E402
from tinyconvert.quant.tmac import core as tmac  # noqa: E402
from tinyconvert.quant.tmac.tmac_lut import LutWeights  # noqa: E402
from tinyconvert.runtime.lut import LutLinear  # noqa: E402

M = K = 4096
GROUP = 128



def dequant_matmul(q: torch.Tensor, s: torch.Tensor, zf: torch.Tensor, off: int):
    def run(x):
        w = ((q.to(torch.float32) - off).view(M, -1, GROUP) * s[..., None] - zf[..., None])
        return x @ w.view(M, K).T
    return run


def numba_dequant_matmul(q: np.ndarray, s: np.ndarray, zf: np.ndarray, off: int):
    """The fastest dequantization written here: one compiled parallel pass into a reused buffer."""
    from numba import njit, prange

    @njit(parallel=True, fastmath=True, cache=False)
    def dequant(q, s, zf, off, out):
        for m in prange(q.shape[0]):
            for g in range(s.shape[1]):
                sc, z = s[m, g], zf[m, g]
                for i in range(g * GROUP, (g + 1) * GROUP):
                    out[m, i] = sc * (np.float32(q[m, i]) - off) - z
    buf = np.empty(q.shape, np.float32)
    w = torch.from_numpy(buf)

    def run(x):
        dequant(q, s, zf, np.float32(off), buf)
        return x @ w.T
    return run


def gemv(bits: int, reps: int) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((M, K), dtype=np.float32) * 0.02
    t = tmac.quantize(w, bits, GROUP, method="minmax")
    lut = LutLinear(LutWeights.from_tmac(t))
    q, s, zf = torch.from_numpy(t.q), torch.from_numpy(t.scales), torch.from_numpy(t.zf)
    deq = dequant_matmul(q, s, zf, 1 << (bits - 1))
    ndeq = numba_dequant_matmul(t.q, t.scales, t.zf, 1 << (bits - 1))
    w32 = torch.from_numpy(t.dequantize())
    x = torch.randn(1, K)
    for other in (deq, ndeq):
        assert torch.allclose(lut(x), other(x), rtol=0.05, atol=0.05 * other(x).abs().max().item())
    times = {"lut": [], "deq": [], "ndeq": [], "f32": []}
    for _ in range(reps):
        times["lut"].append(timed(lambda: lut(x)))
        times["deq"].append(timed(lambda: deq(x)))
        times["ndeq"].append(timed(lambda: ndeq(x)))
        times["f32"].append(timed(lambda: x @ w32.T))
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"{bits}-bit {M}x{K} g{GROUP}, batch 1: LUT GEMV {med['lut']:.2f} ms | dequant+matmul: "
          f"torch {med['deq']:.2f} ms, numba {med['ndeq']:.2f} ms | f32 matmul (pre-dequantized) "
          f"{med['f32']:.2f} ms")
    print(f"  LUT time / dequant+matmul time: {med['lut'] / med['deq']:.2f}x (torch), "
          f"{med['lut'] / med['ndeq']:.2f}x (numba); LUT / f32 matmul: "
          f"{med['lut'] / med['f32']:.1f}x | weights held: LUT {lut.w.nbytes / 2**20:.1f} MiB, "
          f"f32 {w32.numel() * 4 / 2**20:.0f} MiB")


def pack_rate(reps: int) -> None:
    w = np.random.default_rng(1).standard_normal((M, K), dtype=np.float32) * 0.02
    gb = w.nbytes / 1e9
    for method in tmac.METHODS:
        for bits in (2, 4):
            quant = statistics.median(timed(lambda: tmac.quantize(w, bits, GROUP, method=method))
                                      for _ in range(reps))
            t = tmac.quantize(w, bits, GROUP, method=method)
            pack = statistics.median(timed(lambda: tmac.pack_canonical(t)) for _ in range(reps))
            perm = statistics.median(timed(lambda: tmac.pack_permuted(t, tmac.Tile(256, 16)))
                                     for _ in range(reps))
            print(f"{method:6s} {bits}-bit: quantize {quant / gb:.2f} s/GB, canonical pack "
                  f"{pack / gb:.2f} s/GB, kernel-layout pack {perm / gb:.2f} s/GB (of f32 weights)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from numba import set_num_threads
    set_num_threads(args.threads)
    for bits in (2, 4):
        gemv(bits, args.reps)
    pack_rate(max(1, args.reps // 10))


if __name__ == "__main__":
    main()
