"""Prefill throughput of the bundled runtime against transformers on the real SmolLM2-135M, 512
tokens, side by side in one run (alternating, median of several), same torch thread count.

    python tests/benchmarks/bench_runtime.py [--reps 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=512)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM

    from tests.support.smollm2 import build
    from tinyconvert.runtime.model import Model
    from tinyconvert.pipeline.sources import open_source
    from tinyconvert.checks.tokenizers.tokenizer import tokenizer_for
    from tinyconvert.checks.verify import default_text
    folder = build()
    src = open_source(folder)
    ids = tokenizer_for(src).encode(default_text() * 4)[: args.tokens]
    ours = Model(src.hparams, {n: src.get(n) for n in src.names})
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    x = torch.tensor([ids])
    a, b = [], []
    with torch.no_grad():
        for _ in range(args.reps + 1):          # the first round warms both up
            ours.reset()
            t = time.perf_counter()
            ours.forward(ids)
            a.append(time.perf_counter() - t)
            t = time.perf_counter()
            hf(x)
            b.append(time.perf_counter() - t)
    ta, tb = statistics.median(a[1:]), statistics.median(b[1:])
    n = len(ids)
    print(f"threads {torch.get_num_threads()}, {n} tokens")
    print(f"prefill  runtime {n / ta:8.1f} tok/s   transformers {n / tb:8.1f} tok/s   "
          f"ratio {tb / ta:.2f}x (goal >= 1)")


if __name__ == "__main__":
    main()
