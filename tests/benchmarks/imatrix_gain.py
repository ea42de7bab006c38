"""What an importance matrix buys on the real SmolLM2-135M: the matrix is computed on one text
(Python's own documentation, pydoc_data.topics, shipped with every CPython) and the KL
divergence is measured on two others it never saw (the built-in evaluation text and
tests/data/sample.txt). For each type: bits per weight, and KLD without and with the matrix on
both texts, against the HF checkpoint computed in float32.

    python tests/benchmarks/imatrix_gain.py [--types q4_k_m q3_k_m iq4_xs] [--chunks 6]

SmolLM2's 576-wide rows do not fit 256-blocks, so its attention and most FFN inputs fall back to
32-block types (llama.cpp does the same); the matrix acts on every type that takes it.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support import smollm2  # noqa: E402

EVAL_TEXTS = {"built-in": REPO / "tinyconvert" / "data" / "eval.txt",
              "sample.txt": REPO / "tests" / "data" / "sample.txt"}


def calibration_text(n_chars: int) -> str:
    """English technical prose no evaluation text shares: CPython's help topics, in key order."""
    import pydoc_data.topics as topics
    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))[:n_chars]


def kld(reference: Path, candidate: Path, text: Path) -> float:
    from tinyconvert.checks.verify import verify
    return verify(str(reference), candidate, text=text.read_text(encoding="utf-8"),
                  tokens=512).stats["kld_mean"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", nargs="+", default=["q4_k_m", "q3_k_m", "iq4_xs"])
    ap.add_argument("--chunks", type=int, default=6, help="512-token calibration chunks")
    args = ap.parse_args()
    from tinyconvert.imatrix.api import imatrix
    from tinyconvert.imatrix.apply import ImatrixOptions
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    from tinyconvert.pipeline.quantize import quantize
    hf = smollm2.build()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        f32 = tmp / "f32.gguf"
        hf2gguf(str(hf), f32, outtype="f32", quiet=True)
        calib = tmp / "calib.txt"
        calib.write_text(calibration_text(4000 * args.chunks), encoding="utf-8")
        t0 = time.perf_counter()
        res = imatrix(str(f32), tmp / "imatrix.gguf", text=calib, chunks=args.chunks)
        print(f"imatrix: {len(res.imatrix.entries)} entries from {args.chunks} chunks of 512 "
              f"tokens of pydoc topics in {time.perf_counter() - t0:.0f}s")
        names = list(EVAL_TEXTS)
        print(f"{'type':8} {'bpw':>5} " + " ".join(f"{n + ' without':>19} {n + ' with':>16}"
                                                   for n in names))
        for qtype in args.types:
            row = []
            for label, opts in (("plain", None), ("imatrix", ImatrixOptions(imatrix=res.path))):
                out = tmp / f"{qtype}-{label}.gguf"
                q = quantize(f32, out, qtype=qtype, quiet=True, imatrix=opts)
                row.append((q, {n: kld(hf, out, p) for n, p in EVAL_TEXTS.items()}))
            (q0, k0), (_, k1) = row
            cells = " ".join(f"{k0[n]:19.4f} {k1[n]:16.4f}" for n in names)
            gains = ", ".join(f"{n} {100 * (1 - k1[n] / k0[n]):+.1f}%" for n in names)
            print(f"{qtype:8} {q0.bpw:5.2f} {cells}   (lower with: {gains})")


if __name__ == "__main__":
    main()
