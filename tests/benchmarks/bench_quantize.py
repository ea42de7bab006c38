"""tinyconvert quantize against llama.cpp's quantizer (llama_model_quantize through
llama-cpp-python) on the real SmolLM2-135M f32 GGUF, same thread count, side by side in one run
(alternating, median of several). Prints wall and CPU time ratios and peak memory.

    python tests/benchmarks/bench_quantize.py [--reps 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.measure import measure_cpu  # noqa: E402

OURS = ("import sys; from tinyconvert.pipeline.quantize import quantize; "
        "quantize(sys.argv[1], sys.argv[2], qtype=sys.argv[3], threads=int(sys.argv[4]), quiet=True)")
THEIRS = ("import sys; sys.path.insert(0, sys.argv[5]); from tests.support.compare import "
          "llamacpp_quantize; from tinyconvert.pipeline.mixes import RECIPES; "
          "llamacpp_quantize(sys.argv[1], sys.argv[2], RECIPES[sys.argv[3]][0], "
          "threads=int(sys.argv[4]))")
def run(code: str, *args: str) -> tuple[float, float, float]:
    return measure_cpu([sys.executable, "-c", code, *args])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from tests.support.smollm2 import build
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    with tempfile.TemporaryDirectory(dir=REPO / ".cache") as tmp:
        src = Path(tmp) / "f32.gguf"
        hf2gguf(str(build()), src, outtype="f32", quiet=True)
        print(f"SmolLM2-135M f32 -> type, {args.threads} threads (process time incl. startup)")
        for mix in ("q8_0", "q4_0", "q4_k_m", "q6_k"):
            a, b = [], []
            for _ in range(args.reps):
                common = (str(src), str(Path(tmp) / "o.gguf"), mix, str(args.threads))
                a.append(run(OURS, *common))
                b.append(run(THEIRS, *common, str(REPO)))
            ta, tb = statistics.median(x[0] for x in a), statistics.median(x[0] for x in b)
            ma, mb = max(x[1] for x in a), max(x[1] for x in b)
            ca, cb = statistics.median(x[2] for x in a), statistics.median(x[2] for x in b)
            print(f"{mix:7s} tinyconvert {ta:6.2f}s {ca:5.2f}cpu {ma:4.0f}MiB   llama.cpp "
                  f"{tb:6.2f}s {cb:5.2f}cpu {mb:4.0f}MiB   ratio wall {ta / tb:4.2f} cpu "
                  f"{ca / cb:4.2f} (goal <= 1)", flush=True)


if __name__ == "__main__":
    main()
