"""hf2gguf against llama.cpp's convert_hf_to_gguf.py on the real SmolLM2-135M checkpoint, side by
side in one run: wall time and peak memory (RSS), alternating runs, ratios printed.

    python tests/benchmarks/bench_hf2gguf.py [--reps 3]

Goal (issue 2): at most half the wall time and at most half the peak memory (conversion only:
--no-verify, as llama.cpp's converter does not verify). A second part shows
that our peak memory stays flat as the model grows (a synthetic checkpoint 4x the size).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.measure import measure  # noqa: E402

def ours(model: Path, out: Path, outtype: str) -> list[str]:
    return [sys.executable, "-m", "tinyconvert", "hf2gguf", str(model), "-o", str(out),
            "--outtype", outtype, "-q", "--no-verify"]


def theirs(root: Path, model: Path, out: Path, outtype: str) -> list[str]:
    return [sys.executable, str(root / "convert_hf_to_gguf.py"), str(model), "--outfile", str(out),
            "--outtype", outtype]


def compare(model: Path, reps: int) -> None:
    from tests.support.llamacpp_src import llamacpp_dir
    root = llamacpp_dir()
    env = dict(os.environ, PYTHONPATH=str(root / "gguf-py"))
    with tempfile.TemporaryDirectory(dir=REPO / ".cache") as tmp:
        for outtype in ("f16", "bf16"):
            a, b = [], []
            for _ in range(reps):
                a.append(measure(ours(model, Path(tmp) / "a.gguf", outtype)))
                b.append(measure(theirs(root, model, Path(tmp) / "b.gguf", outtype), env))
            ta, ma = statistics.median(x[0] for x in a), statistics.median(x[1] for x in a)
            tb, mb = statistics.median(x[0] for x in b), statistics.median(x[1] for x in b)
            print(f"{outtype:5s} time  tinyconvert {ta:6.2f}s  llama.cpp {tb:6.2f}s  "
                  f"ratio {ta / tb:.2f} (goal <= 0.5)")
            print(f"{outtype:5s} peak  tinyconvert {ma:6.0f}MiB llama.cpp {mb:6.0f}MiB "
                  f"ratio {ma / mb:.2f} (goal <= 0.5)")


def synthetic(folder: Path, scale: int) -> Path:
    """A random llama checkpoint, SmolLM2's shape with `scale` times the layers (f32)."""
    import json

    import numpy as np
    from safetensors.numpy import save_file
    from tests.support.smollm2 import build
    src = build()
    cfg = json.loads((src / "config.json").read_text())
    cfg["num_hidden_layers"] *= scale
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((src / name).read_bytes())
    rng = np.random.default_rng(0)
    d, ff, kv = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_key_value_heads"] * 64
    t = {"model.embed_tokens.weight": rng.standard_normal((cfg["vocab_size"], d), np.float32),
         "model.norm.weight": np.ones(d, np.float32)}
    shapes = {"self_attn.q_proj": (d, d), "self_attn.k_proj": (kv, d), "self_attn.v_proj": (kv, d),
              "self_attn.o_proj": (d, d), "mlp.gate_proj": (ff, d), "mlp.up_proj": (ff, d),
              "mlp.down_proj": (d, ff)}
    for i in range(cfg["num_hidden_layers"]):
        for k, shape in shapes.items():
            t[f"model.layers.{i}.{k}.weight"] = rng.standard_normal(shape, np.float32) * 0.05
        for k in ("input_layernorm", "post_attention_layernorm"):
            t[f"model.layers.{i}.{k}.weight"] = np.ones(d, np.float32)
    save_file(t, folder / "model.safetensors")
    return folder


def flat_memory() -> None:
    with tempfile.TemporaryDirectory(dir=REPO / ".cache") as tmp:
        rows = []
        for scale in (1, 4):
            model = synthetic(Path(tmp) / f"x{scale}", scale)
            size = (model / "model.safetensors").stat().st_size / 2**20
            secs, peak = measure(ours(model, Path(tmp) / "o.gguf", "f16"))
            rows.append((size, peak))
            print(f"flat  checkpoint {size:6.0f}MiB -> tinyconvert peak {peak:5.0f}MiB "
                  f"in {secs:.2f}s")
        print(f"flat  peak ratio 4x model / 1x model: {rows[1][1] / rows[0][1]:.2f} "
              f"(flat = about 1)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    from tests.support.smollm2 import build
    compare(build(), args.reps)
    flat_memory()


if __name__ == "__main__":
    main()
