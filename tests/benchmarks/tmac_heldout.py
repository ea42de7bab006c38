"""T-MAC files against llama.cpp's q4_0 and q4_k_m on two texts that neither the quantizer nor
its tests have seen (tests/data/heldout: the Gettysburg Address and the opening of the Declaration
of Independence, both public domain, 320 and 323 SmolLM2 tokens), with the real SmolLM2-135M HF
checkpoint as the reference: mean KL divergence and perplexity from our runtime (T-MAC tensors
through the LUT product, int8 tables; llama.cpp types dequantized).

    python tests/benchmarks/tmac_heldout.py [--types w4g128,w4g64,w2g64] [--no-imatrix]

Rows "+imatrix": the T-MAC search weighted by an importance matrix (mean squared input of every
weight column, what llama-imatrix accumulates) computed with transformers on the built-in
evaluation text, a third text. Until the imatrix plumbing reaches the pipeline, this script hands
the vector to TmacType.quantize_rows itself (by patching the stream encoder for its run only).
q4_0 / q4_k_m are made without an imatrix.

Note on the reference: this SmolLM2 checkpoint is rebuilt from a Q4_1 GGUF, so its weights sit
on a 32-wide 4-bit grid; q4_0 (32-wide groups) fits that grid, T-MAC's 64/128-wide groups do not.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TEXTS = ("gettysburg", "declaration")
HF_TO_GGUF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
              "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def importance(ref: str, text: str, tokens: int = 512) -> dict[str, np.ndarray]:
    """GGUF weight name -> mean over tokens of x^2 per input column of that linear layer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(ref, torch_dtype=torch.float32)
    ids = AutoTokenizer.from_pretrained(ref)(text, return_tensors="pt")["input_ids"][:, :tokens]
    sums: dict[str, torch.Tensor] = {}

    def hook(name):
        def f(_mod, inp, _out):
            x = inp[0].detach().reshape(-1, inp[0].shape[-1]).double()
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
        return f
    for path, mod in model.named_modules():
        parts = path.split(".")
        tail = ".".join(parts[3:])
        if path.startswith("model.layers.") and tail in HF_TO_GGUF:
            mod.register_forward_hook(hook(f"blk.{parts[2]}.{HF_TO_GGUF[tail]}.weight"))
    with torch.no_grad():
        model(ids)
    return {k: (v / ids.shape[1]).float().numpy() for k, v in sums.items()}


def with_imatrix(imatrix: dict[str, np.ndarray]):
    """A stream encoder that hands T-MAC tensors their imatrix vector (benchmark only)."""
    from tinyconvert.pipeline import stream
    from tinyconvert.pipeline.encode import to_f32
    from tinyconvert.quant.tmac_types import TmacType
    plain = stream._encode

    def encode(p, r0, r1):
        if not isinstance(p.qtype, TmacType) or p.name not in imatrix:
            return plain(p, r0, r1)
        rows = to_f32(p.read_rows(r0, r1), p.src_dtype)
        return p.qtype.pack(p.qtype.quantize_rows(rows, imatrix[p.name]))
    return plain, encode


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
    ap.add_argument("--types", default="w4g128,w4g64,w2g64")
    ap.add_argument("--no-imatrix", action="store_true")
    args = ap.parse_args()
    from tests.support.smollm2 import build
    from tinyconvert.checks.verify import default_text
    from tinyconvert.pipeline import stream
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    from tinyconvert.pipeline.quantize import TmacOptions, quantize
    ref = str(build())
    texts = {n: (REPO / "tests/data/heldout" / f"{n}.txt").read_text() for n in TEXTS}
    plain, weighted = with_imatrix({} if args.no_imatrix else importance(ref, default_text()))
    runs = [(q, dict(qtype=q), False) for q in ("q4_0", "q4_k_m")]
    for name in args.types.split(","):
        bits, group = int(name[1]), int(name.split("g")[1])
        kw = dict(bits=bits, group_size=group, tmac=TmacOptions())
        runs.append((f"{name}", kw, False))
        if not args.no_imatrix:
            runs.append((f"{name}+imatrix", kw, True))
    with tempfile.TemporaryDirectory() as tmp:
        f32 = Path(tmp) / "f32.gguf"
        hf2gguf(ref, f32, outtype="f32", quiet=True)
        print("SmolLM2-135M against its HF checkpoint: mean KLD and perplexity, 512 tokens max")
        print(f"{'type':16} {'bpw':>5} " + " ".join(f"{n + ' KLD':>9} {'ppl':>8}" for n in texts))
        for label, kw, use_imatrix in runs:
            out = Path(tmp) / "q.gguf"
            stream._encode = weighted if use_imatrix else plain
            try:
                res = quantize(f32, out, quiet=True, **kw)
            finally:
                stream._encode = plain
            cells, ref_ppl = measure(ref, out, texts)
            print(f"{label:16} {res.bpw:5.2f} " + " ".join(cells), flush=True)
            out.unlink()
        print(f"{'reference':16} {'':5} " + " ".join(f"{'':9} {p:8.2f}" for p in ref_ppl))


if __name__ == "__main__":
    main()
