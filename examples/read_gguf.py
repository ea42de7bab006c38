"""Read a GGUF file's metadata and tensor list, and load one tensor as a float32 torch tensor,
with the library (no CLI).

    python examples/read_gguf.py FILE.gguf [TENSOR]

read_gguf parses the header only and memory-maps the file, so it is instant on any size.
GgufWeights is the runtime's "tensor name -> tensor" view of a GGUF: it dequantizes one tensor
when asked, whatever its type (f32, f16, q8_0, the K-quants, IQ types ...). TENSOR defaults to
the token embeddings.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.runtime.weights import GgufWeights


def short(value, limit: int = 60) -> str:
    """Tokenizer arrays hold one entry per token: show their length, not their contents."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "...")
    if hasattr(value, "__len__"):              # a list, or a numpy array of numbers
        return f"[{len(value)} items]"
    return repr(value)


def main() -> int:
    parser = argparse.ArgumentParser(description="show a GGUF's keys and tensors")
    parser.add_argument("file", type=Path, help="a GGUF file")
    parser.add_argument("tensor", nargs="?", default="token_embd.weight",
                        help="tensor to load (default: token_embd.weight)")
    args = parser.parse_args()

    f = read_gguf(args.file)
    print(f"{args.file}: GGUF v{f.version}, {len(f.fields)} keys, {len(f.tensors)} tensors")
    for key, value in f.values().items():
        print(f"key {key} = {short(value)}")
    for t in f.tensors:
        print(f"tensor {t.name:<28} {f.type_name(t.ggml_type):<6} {list(t.shape)}")

    weights = GgufWeights(args.file)
    w = weights(args.tensor)
    if w is None:
        print(f"error: {args.file} has no tensor {args.tensor!r}", file=sys.stderr)
        return 2
    print(f"loaded {args.tensor}: shape {tuple(w.shape)} {w.dtype}, mean {w.mean().item():.6f}, "
          f"std {w.std().item():.6f}, first values {[round(x, 6) for x in w.flatten()[:4].tolist()]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
