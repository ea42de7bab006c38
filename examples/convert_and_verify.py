"""Convert a Hugging Face checkpoint to GGUF, then check the file, with the library (no CLI).

    python examples/convert_and_verify.py MODEL OUT.gguf [--outtype f16]

MODEL is a checkpoint folder or a hub repo id. --outtype is hf2gguf's `outtype` (f32, f16, bf16,
q8_0, auto, or any quantize type or mix such as q4_k_m); left out, the library's default applies.
verify then runs the original model and the GGUF side by side on the same text with the bundled
runtime, prints the drift, and this script exits 1 if the file does not pass.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinyconvert.checks.verify import verify
from tinyconvert.pipeline.hf2gguf import hf2gguf


def main() -> int:
    parser = argparse.ArgumentParser(description="HF checkpoint -> GGUF, then verify it")
    parser.add_argument("model", help="HF checkpoint folder or hub repo id")
    parser.add_argument("out", type=Path, help="the .gguf file to write")
    # SUPPRESS: an option left out is not passed, so its default stays the library's
    parser.add_argument("--outtype", default=argparse.SUPPRESS)
    options = vars(parser.parse_args())
    model, out = options.pop("model"), options.pop("out")

    res = hf2gguf(model, out, **options)
    print(f"wrote {res.path}: {res.outtype}, {res.n_tensors} tensors, "
          f"{res.n_bytes / 2**20:.2f} MiB in {res.seconds:.1f}s")

    # res.source is the local folder the model was read from (a hub id resolved to the cache)
    report = verify(str(res.source), res.path)
    s = report.stats
    print(f"tokens {s['tokens']}: KL divergence mean {s['kld_mean']:.3g} (limit "
          f"{report.max_kld:g}), top-1 agreement {s['top1']:.2%}, perplexity "
          f"{s['ppl_reference']:.3f} -> {s['ppl_candidate']:.3f}")
    for problem in report.vocab_mismatches:
        print(f"vocabulary mismatch: {problem}")
    print(report.summary_line())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
