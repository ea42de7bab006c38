"""A custom quantization recipe: one of llama.cpp's types or mixes, with your own per-tensor
overrides, written with the library (no CLI).

    python examples/quantize_recipe.py IN OUT.gguf [--type q4_k_m]

IN is a GGUF file or an HF checkpoint (folder or hub repo id): from a checkpoint, conversion and
quantization are one pass. The recipe below keeps the tensors that suffer most from few bits (the
attention value projection and the FFN down projection) at 8 bits, and the token embeddings too;
every other tensor gets what the mix gives it. The script prints each tensor's type as written.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.pipeline.recipes.mixes import Options
from tinyconvert.pipeline.quantize import quantize

# (regex searched in GGUF tensor names, type); the first pattern that matches wins
TENSOR_TYPES = (
    (r"attn_v\.weight$", "q8_0"),
    (r"ffn_down\.weight$", "q8_0"),
)
RECIPE = Options(tensor_types=TENSOR_TYPES, token_embedding_type="q8_0")


def main() -> int:
    parser = argparse.ArgumentParser(description="quantize with per-tensor overrides")
    parser.add_argument("inp", metavar="IN", help="GGUF file or HF checkpoint")
    parser.add_argument("out", type=Path, help="the .gguf file to write")
    parser.add_argument("--type", dest="qtype", default="q4_k_m",
                        help="base type or mix (q4_k_m, q4_0, q6_k, ...)")
    args = parser.parse_args()

    res = quantize(args.inp, args.out, qtype=args.qtype, options=RECIPE)
    # A block that does not divide a row's length makes llama.cpp pick another type; say which.
    for name, wanted, got in res.fallbacks:
        print(f"fallback: {name} {wanted} -> {got}")

    f = read_gguf(res.path)
    for t in f.tensors:
        print(f"{t.name:<28} {f.type_name(t.ggml_type):<6} {'x'.join(map(str, t.shape))}")
    counts = Counter(f.type_name(t.ggml_type) for t in f.tensors)
    print(f"wrote {res.path} ({res.mix}): "
          + ", ".join(f"{n} {qtype}" for qtype, n in sorted(counts.items()))
          + f"; {res.bpw:.2f} bits/weight")
    return 0


if __name__ == "__main__":
    sys.exit(main())
