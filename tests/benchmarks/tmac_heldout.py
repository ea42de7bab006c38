"""T-MAC files against llama.cpp's q4_0 and q4_k_m on two texts that neither the quantizer nor
its tests have seen (tests/data/heldout: the Gettysburg Address and the opening of the Declaration
of Independence, both public domain, 320 and 323 SmolLM2 tokens), with the real SmolLM2-135M HF
checkpoint as the reference: mean KL divergence and perplexity from our runtime (T-MAC tensors
through the LUT product, int8 tables; llama.cpp types dequantized).

    python tests/benchmarks/tmac_heldout.py [--types w4g128,w4g128-pure,w4g64,w2g64] [--no-imatrix]

A type NAME-pure is quantize --pure: every matrix at the asked group (w4g128 without it is the
recipe, ffn_down at groups of 64; tinyconvert/pipeline/recipes/tmac_plan.py). "bpw" is the whole file's
bits per weight (T-MAC keeps the token embeddings F16), "blk bpw" that of the blocks' matrices.

Rows "+imatrix" (T-MAC and llama.cpp types alike): quantize --imatrix with the matrix
`tinyconvert imatrix` computes on the built-in evaluation text, a third text, in two chunks of
256 tokens (the text has 671 tokens, too few for two chunks of 512).

Note on the reference: this SmolLM2 checkpoint is rebuilt from a Q4_1 GGUF, so its weights sit
on a 32-wide 4-bit grid; q4_0 (32-wide groups) fits that grid, T-MAC's 64/128-wide groups do not.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TEXTS = ("gettysburg", "declaration")
LLAMACPP = ("q4_0", "q4_k_m")


def imatrix_file(ref: str, out: Path) -> Path:
    """The matrix of `tinyconvert imatrix REF --text <built-in text> --chunk-size 256`."""
    from tinyconvert.checks.verify import default_text
    from tinyconvert.imatrix import files
    from tinyconvert.imatrix.compute import compute_imatrix
    files.write(compute_imatrix(ref, default_text(), chunk_size=256, dataset="built-in"), out)
    return out


def blocks_bpw(path: Path) -> float:
    from tinyconvert.formats.gguf_file import read_gguf
    ts = [t for t in read_gguf(path).tensors if t.name.startswith("blk.") and len(t.shape) == 2]
    return 8 * sum(t.nbytes for t in ts) / sum(t.shape[0] * t.shape[1] for t in ts)


def runs(types: str, with_imatrix: bool) -> list[tuple[str, dict, bool]]:
    """(label, quantize keywords, whether with the imatrix)."""
    from tinyconvert.pipeline.recipes.mixes import Options
    from tinyconvert.pipeline.quantize import TmacOptions
    out = []
    for name in (*LLAMACPP, *types.split(",")):
        if name in LLAMACPP:
            kw = dict(qtype=name)
        else:
            base, _, pure = name.partition("-")
            kw = dict(bits=int(base[1]), group_size=int(base.split("g")[1]), tmac=TmacOptions(),
                      options=Options(pure=pure == "pure"))
        out += [(name, kw, False)] + ([(f"{name}+imatrix", kw, True)] if with_imatrix else [])
    return out


def measure(ref: str, out: Path, texts: dict[str, str]) -> tuple[list[str], list[float]]:
    """(KLD and perplexity cells per text, the reference's perplexity per text)."""
    from tinyconvert.checks.verify import verify
    cells, ref_ppl = [], []
    for text in texts.values():
        s = verify(ref, out, text=text, tokens=512, max_kld=1e9).stats
        cells.append(f"{s['kld_mean']:9.4f} {s['ppl_candidate']:8.2f}")
        ref_ppl.append(s["ppl_reference"])
    return cells, ref_ppl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="w4g128,w4g128-pure,w4g64")
    ap.add_argument("--no-imatrix", action="store_true")
    args = ap.parse_args()
    from tests.support.smollm2 import build
    from tinyconvert.imatrix.apply import ImatrixOptions
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    from tinyconvert.pipeline.quantize import quantize
    ref = str(build())
    texts = {n: (REPO / "tests/data/heldout" / f"{n}.txt").read_text() for n in TEXTS}
    with tempfile.TemporaryDirectory() as tmp:
        f32 = Path(tmp) / "f32.gguf"
        hf2gguf(ref, f32, outtype="f32", quiet=True)
        im = None if args.no_imatrix else ImatrixOptions(imatrix=imatrix_file(
            ref, Path(tmp) / "imatrix.gguf"))
        print("SmolLM2-135M against its HF checkpoint: mean KLD and perplexity, 512 tokens max")
        print(f"{'type':20} {'bpw':>5} {'blk':>5} "
              + " ".join(f"{n + ' KLD':>9} {'ppl':>8}" for n in texts))
        for label, kw, use_imatrix in runs(args.types, im is not None):
            out = Path(tmp) / "q.gguf"
            res = quantize(f32, out, quiet=True, imatrix=im if use_imatrix else None, **kw)
            cells, ref_ppl = measure(ref, out, texts)
            print(f"{label:20} {res.bpw:5.2f} {blocks_bpw(out):5.2f} " + " ".join(cells),
                  flush=True)
            out.unlink()
        print(f"{'reference':20} {'':11} " + " ".join(f"{'':9} {p:8.2f}" for p in ref_ppl))


if __name__ == "__main__":
    main()
