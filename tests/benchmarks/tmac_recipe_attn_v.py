"""Whether the T-MAC w4g128 recipe should put attn_v at groups of 64 too (besides ffn_down), on
Gemma 3 270M, whose rows every group size divides (SmolLM2's attn_v is 576 wide: at 64 either
way). Mean KLD and perplexity against the HF checkpoint on the two held-out texts of
tmac_heldout.py, for llama.cpp's q4_0, w4g128 --pure, the recipe, the recipe with attn_v at 64
(the recipe's group choice patched for this run only) and w4g64.

    python tests/benchmarks/tmac_recipe_attn_v.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.tmac_heldout import TEXTS, measure  # noqa: E402


def main() -> None:
    from tinyconvert.pipeline.recipes import tmac_plan
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    from tinyconvert.pipeline.recipes.mixes import Options
    from tinyconvert.pipeline.quantize import TmacOptions, quantize
    ref = str(REPO / ".cache/gemma3-270m-hf")
    texts = {n: (REPO / "tests/data/heldout" / f"{n}.txt").read_text() for n in TEXTS}
    plain = tmac_plan.recipe_group

    def with_attn_v(name, spec, opts=Options()):
        if not opts.pure and (spec.bits, spec.group) == (4, 128) and ".attn_v." in name:
            return 64
        return plain(name, spec, opts)
    w4 = dict(bits=4, tmac=TmacOptions())
    runs = [("q4_0", dict(qtype="q4_0"), plain),
            ("w4g128 --pure", dict(w4, group_size=128, options=Options(pure=True)), plain),
            ("w4g128 recipe", dict(w4, group_size=128), plain),
            ("recipe + attn_v 64", dict(w4, group_size=128), with_attn_v),
            ("w4g64", dict(w4, group_size=64), plain)]
    with tempfile.TemporaryDirectory() as tmp:
        f32 = Path(tmp) / "f32.gguf"
        hf2gguf(ref, f32, outtype="f32", quiet=True)
        print(f"{'type':20} {'bpw':>5} " + " ".join(f"{n + ' KLD':>9} {'ppl':>8}" for n in texts))
        for label, kw, group in runs:
            out = Path(tmp) / "q.gguf"
            tmac_plan.recipe_group = group
            try:
                res = quantize(f32, out, quiet=True, **kw)
            finally:
                tmac_plan.recipe_group = plain
            cells, ref_ppl = measure(ref, out, texts)
            print(f"{label:20} {res.bpw:5.2f} " + " ".join(cells), flush=True)
            out.unlink()
        print(f"{'reference':20} {'':5} " + " ".join(f"{'':9} {p:8.2f}" for p in ref_ppl))


if __name__ == "__main__":
    main()
