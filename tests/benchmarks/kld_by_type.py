"""What each quantization type costs on the real SmolLM2-135M (a small model: small models drift
more than 8B ones), measured three ways on two texts, and what broken files cost. The defaults of
`verify --max-kld` come from this table (see tinyconvert/checks/limits.py).

    python tests/benchmarks/kld_by_type.py [--types q8_0,q4_k_m] [--tokens 512]
    python tests/benchmarks/kld_by_type.py --types iq4_xs,iq3_s,iq2_xs,... --broken ''

A type llama.cpp refuses to make without an importance matrix (iq1/iq2 types, q2_k_s, ...) is
made with one computed on text no evaluation uses (CPython's help topics, --imatrix-chunks chunks
of 512 tokens); the `imat` column says which rows used it.

Columns: bits per weight of the file; mean KLD from our runtime on the built-in text and on a text
nobody tuned on (Python's own textwrap.py source); mean KLD with llama.cpp computing the candidate
(it quantizes activations for the quantized dot products, our runtime keeps them in f32); and
the default limit verify applies.
"""
from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TYPES = ["f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q5_1", "q5_0", "q4_k_m", "q4_k_s",
         "q4_1", "q4_0", "iq4_nl", "q3_k_l", "q3_k_m", "q3_k_s", "q2_k", "tq2_0", "tq1_0"]
IQ_TYPES = ["iq4_xs", "iq3_m", "iq3_s", "iq3_xs", "iq3_xxs", "iq2_m", "iq2_s", "iq2_xs",
            "iq2_xxs", "iq1_m", "iq1_s", "q2_k_s"]


def kld(ref: str, cand: Path, text: str, tokens: int, engine: str = "runtime") -> float:
    from tinyconvert.checks.verify import verify
    return verify(ref, cand, text=text, tokens=tokens, engine=engine, max_kld=1e9).stats["kld_mean"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--broken", default="f16,q8_0,q4_k_m,q3_k_m,q2_k",
                    help="types to measure broken files at ('' for none)")
    ap.add_argument("--imatrix-chunks", type=int, default=6,
                    help="512-token chunks of calibration text for types that need a matrix")
    args = ap.parse_args()
    from tests.support.smollm2 import build
    from tinyconvert.checks.limits import default_limit
    from tinyconvert.formats.gguf_file import read_gguf
    from tinyconvert.checks.verify import default_text
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    ref = str(build())
    texts = {"built-in": default_text(), "textwrap.py": inspect.getsource(textwrap)}
    with tempfile.TemporaryDirectory(dir=REPO / ".cache") as tmp:
        f32 = Path(tmp) / "f32.gguf"
        hf2gguf(ref, f32, outtype="f32", quiet=True)
        print(f"SmolLM2-135M, {args.tokens} tokens, mean KLD against the HF checkpoint")
        print(f"{'type':8} {'bpw':>6} {'built-in':>10} {'textwrap':>10} {'llama.cpp':>10} "
              f"{'lcpp/ours':>9} {'limit':>8} imat")
        matrix = Matrix(f32, Path(tmp), args.imatrix_chunks)
        for qtype in args.types.split(","):
            out = Path(tmp) / f"{qtype}.gguf"
            used = matrix.quantize(qtype, out)
            a, b = (kld(ref, out, t, args.tokens) for t in texts.values())
            c = kld(ref, out, texts["built-in"], args.tokens, engine="llama.cpp")
            lim = default_limit(read_gguf(out).values(), out)
            print(f"{qtype:8} {lim.bpw:6.2f} {a:10.4g} {b:10.4g} {c:10.4g} {c / max(a, 1e-12):9.2f} "
                  f"{lim.value:8.3g} {'yes' if used else 'no':>4}", flush=True)
            out.unlink()
        if args.broken:
            broken(ref, Path(tmp), texts["built-in"], args.tokens, args.broken.split(","))


class Matrix:
    """Quantizes without a matrix where llama.cpp does; computes one (once) where it refuses."""

    def __init__(self, f32: Path, tmp: Path, chunks: int):
        self.f32, self.tmp, self.chunks, self.path = f32, tmp, chunks, None

    def quantize(self, qtype: str, out: Path) -> bool:
        from tinyconvert.formats.errors import InputError
        from tinyconvert.imatrix.apply import ImatrixOptions
        from tinyconvert.pipeline.quantize import quantize
        try:
            quantize(self.f32, out, qtype=qtype, quiet=True)
            return False
        except InputError as e:
            if "importance matrix" not in str(e):
                raise
        quantize(self.f32, out, qtype=qtype, quiet=True, imatrix=ImatrixOptions(imatrix=self.get()))
        return True

    def get(self) -> Path:
        if self.path is None:
            import pydoc_data.topics as topics

            from tinyconvert.imatrix.api import imatrix
            text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
            calib = self.tmp / "calib.txt"
            calib.write_text(text[:4000 * self.chunks], encoding="utf-8")
            self.path = imatrix(str(self.f32), self.tmp / "imatrix.gguf", text=calib,
                                chunks=self.chunks).path
        return self.path


def broken_checkpoint(ref: str, dst: Path, how: str) -> Path:
    """A copy of the checkpoint with one classic conversion bug: q/k rows in the wrong order
    within each head ("permute"), or two layers' up projections swapped ("swap")."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file
    shutil.copytree(ref, dst)
    w = load_file(dst / "model.safetensors")
    if how == "permute":
        for name in [n for n in w if n.endswith(("q_proj.weight", "k_proj.weight"))]:
            t = w[name]
            hd = 64
            w[name] = t.reshape(-1, 2, hd // 2, t.shape[1]).flip(1).reshape(t.shape).contiguous()
    else:
        a, b = "model.layers.3.mlp.up_proj.weight", "model.layers.4.mlp.up_proj.weight"
        w[a], w[b] = w[b].clone(), w[a].clone()
    save_file({k: v.contiguous() for k, v in w.items()}, dst / "model.safetensors",
              metadata={"format": "pt"})
    del torch
    return dst


def broken(ref: str, tmp: Path, text: str, tokens: int, types: list[str]) -> None:
    from tinyconvert.checks.limits import default_limit
    from tinyconvert.formats.gguf_file import read_gguf
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    from tinyconvert.pipeline.quantize import quantize
    print("broken files (against the intact checkpoint):")
    for how in ("permute", "swap"):
        folder = broken_checkpoint(ref, tmp / f"broken-{how}", how)
        f32 = tmp / f"broken-{how}.gguf"
        hf2gguf(str(folder), f32, outtype="f32", quiet=True)
        for qtype in types:
            out = tmp / f"broken-{how}-{qtype}.gguf"
            quantize(f32, out, qtype=qtype, quiet=True)
            lim = default_limit(read_gguf(out).values(), out)
            print(f"{how:8} {qtype:8} {lim.bpw:6.2f} {kld(ref, out, text, tokens):10.4g} "
                  f"{'':10} {'':10} {'':9} {lim.value:8.3g}", flush=True)
            out.unlink()


if __name__ == "__main__":
    main()
