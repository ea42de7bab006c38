"""tinyconvert quantize against llama.cpp's quantizer (llama_model_quantize through
llama-cpp-python), same thread count, side by side in one run (alternating, median of several),
on two inputs: the real SmolLM2-135M as an f32 GGUF (start-up weighs) and a synthetic Llama of
~1.1B parameters as an f16 GGUF (hidden 2048, 23 layers, random weights: the quantizers
themselves weigh). Each run is a fresh process; the llama.cpp side imports nothing of ours
(its file type number is passed in). Prints wall and CPU time ratios and peak memory.

    python tests/benchmarks/bench_quantize.py [--reps 3] [--big-reps 1] [--threads 2]
        [--sizes smollm2,1b] [--types q8_0,q4_0,q4_k_m,q6_k] [--ours-path DIR]

--ours-path runs our side from another copy of the package (a folder holding tinyconvert/ with
quant/, formats/ and runtime/ inside it), e.g. an older commit's, for before/after tables.

The synthetic checkpoint and its f16 GGUF are built once under /tmp/tinyconvert-bench-quantize
(about 4.5 GB; delete the folder to rebuild).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.measure import measure_cpu  # noqa: E402

BIG = Path("/tmp/tinyconvert-bench-quantize")
OURS = ("import sys; from tinyconvert.pipeline.quantize import quantize; "
        "quantize(sys.argv[1], sys.argv[2], qtype=sys.argv[3], threads=int(sys.argv[4]), quiet=True)")
THEIRS = ("import ctypes, sys, llama_cpp; p = llama_cpp.llama_model_quantize_default_params(); "
          "p.ftype = int(sys.argv[3]); p.nthread = int(sys.argv[4]); "
          "rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), "
          "ctypes.byref(p)); sys.exit(rc)")


def run(code: str, *args: str, env: dict | None = None) -> tuple[float, float, float]:
    return measure_cpu([sys.executable, "-c", code, *args], env=env)


def smollm2_f32(tmp: Path) -> Path:
    from tests.support.smollm2 import build
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    src = tmp / "smollm2-f32.gguf"
    hf2gguf(str(build()), src, outtype="f32", quiet=True)
    return src


def synthetic_f16() -> Path:
    """A ~1.1B-parameter Llama (SmolLM2's tokenizer, random F16 weights) as an f16 GGUF."""
    from tests.benchmarks.memory import WIDTH, _tensors, write_safetensors
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    gguf = BIG / "synthetic-1b-f16.gguf"
    if gguf.exists():
        return gguf
    hf, src = BIG / "hf", REPO / ".cache" / "smollm2-135m-instruct-hf"
    hf.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(WIDTH, num_hidden_layers=23, tie_word_embeddings=True, dtype="float16")
    (hf / "config.json").write_text(json.dumps(cfg))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / name, hf / name)
    n = write_safetensors(hf / "model.safetensors", list(_tensors(23, cfg["vocab_size"])), 23)
    print(f"built a synthetic Llama of {n / 1e9:.2f}B parameters", flush=True)
    hf2gguf(str(hf), BIG / "tmp.gguf", outtype="f16", quiet=True)
    (BIG / "tmp.gguf").rename(gguf)
    shutil.rmtree(hf)
    return gguf


def compare(label: str, src: Path, out: Path, types: list[str], threads: int, reps: int,
            env: dict | None = None):
    from tinyconvert.pipeline.recipes.mixes import RECIPES
    print(f"{label} -> type, {threads} threads, median of {reps} "
          f"(process time incl. start-up)", flush=True)
    for mix in types:
        a, b = [], []
        for _ in range(reps):
            a.append(run(OURS, str(src), str(out), mix, str(threads), env=env))
            b.append(run(THEIRS, str(src), str(out), str(RECIPES[mix][0]), str(threads)))
        ta, tb = statistics.median(x[0] for x in a), statistics.median(x[0] for x in b)
        ma, mb = max(x[1] for x in a), max(x[1] for x in b)
        ca, cb = statistics.median(x[2] for x in a), statistics.median(x[2] for x in b)
        print(f"  {mix:7s} tinyconvert {ta:6.2f}s {ca:6.2f}cpu {ma:5.0f}MiB   llama.cpp "
              f"{tb:6.2f}s {cb:6.2f}cpu {mb:5.0f}MiB   ratio wall {ta / tb:4.2f} cpu "
              f"{ca / cb:4.2f} (goal <= 1)", flush=True)
    out.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3, help="runs per side on SmolLM2")
    ap.add_argument("--big-reps", type=int, default=1, help="runs per side on the 1B model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="smollm2,1b")
    ap.add_argument("--types", default="q8_0,q4_0,q4_k_m,q6_k")
    ap.add_argument("--ours-path", default=None)
    args = ap.parse_args()
    env = None
    if args.ours_path:
        import os
        env = {**os.environ, "PYTHONPATH": args.ours_path}
        os.chdir(tempfile.gettempdir())     # `python -c` puts the cwd first on sys.path
    types, sizes = args.types.split(","), args.sizes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "smollm2" in sizes:
            compare("SmolLM2-135M f32", smollm2_f32(Path(tmp)), Path(tmp) / "o.gguf", types,
                    args.threads, args.reps, env)
        if "1b" in sizes:
            from tests.benchmarks.memory import _tensors
            src = synthetic_f16()
            n = sum(math.prod(s) for _, s in _tensors(23, 49152))
            compare(f"synthetic Llama {n / 1e9:.2f}B f16", src, BIG / "o.gguf", types,
                    args.threads, args.big_reps, env)


if __name__ == "__main__":
    main()
