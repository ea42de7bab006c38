"""Peak memory (issue 19, bounded memory): hf2gguf (f16 and q4_k_m), quantize (f16 GGUF ->
q4_k_m) and hf2gguf --powerinfer on a synthetic Llama of ~1.1B parameters against the same
width with a quarter of the parameters (fewer layers). Each command runs in a fresh process;
its peak RSS is the wrapper's RUSAGE_CHILDREN maxrss (tests/benchmarks/measure.py). Everything
is streamed one tensor at a time, so the big/small ratio should stay near 1.

    python tests/benchmarks/memory.py [--threads 2] [--keep]

Checkpoints are built once (F16 safetensors written tensor by tensor, random values) under
.cache-bench/ (git-ignored); outputs are deleted after each run and, without --keep, the
checkpoints at the end too (several GB on a shared disk).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.measure import measure  # noqa: E402

BENCH = REPO / ".cache-bench"
WIDTH = dict(hidden_size=2048, intermediate_size=5632, num_attention_heads=32,
             num_key_value_heads=4, head_dim=64)
SIZES = {"small": 4, "big": 23}          # layers: ~0.28B and ~1.11B parameters
RANK = 128                               # predictor rank


def _tensors(n_layer: int, vocab: int):
    d, ff, kv = WIDTH["hidden_size"], WIDTH["intermediate_size"], 4 * 64
    yield "model.embed_tokens.weight", (vocab, d)
    yield "model.norm.weight", (d,)
    for i in range(n_layer):
        p = f"model.layers.{i}."
        for name, shape in (("input_layernorm", (d,)), ("post_attention_layernorm", (d,)),
                            ("self_attn.q_proj", (d, d)), ("self_attn.k_proj", (kv, d)),
                            ("self_attn.v_proj", (kv, d)), ("self_attn.o_proj", (d, d)),
                            ("mlp.gate_proj", (ff, d)), ("mlp.up_proj", (ff, d)),
                            ("mlp.down_proj", (d, ff))):
            yield p + name + ".weight", shape


def write_safetensors(path: Path, tensors: list[tuple[str, tuple[int, ...]]], seed: int) -> int:
    """F16 safetensors written one tensor at a time (never the whole model in memory)."""
    header, off = {}, 0
    for name, shape in tensors:
        n = math.prod(shape) * 2
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape in tensors:
            if len(shape) == 1:
                f.write((1 + 0.1 * rng.standard_normal(shape, np.float32)).astype(np.float16))
                continue
            for r0 in range(0, shape[0], 1024):     # 1024-row slabs
                rows = rng.standard_normal((min(1024, shape[0] - r0),) + shape[1:], np.float32)
                f.write((rows * 0.02).astype(np.float16).tobytes())
    return sum(math.prod(s) for _, s in tensors)


def build(size: str) -> tuple[Path, Path, int]:
    """(SiLU checkpoint folder, ReLU twin sharing its weights + predictors, parameter count)."""
    src = REPO / ".cache" / "smollm2-135m-instruct-hf"
    silu, relu = BENCH / f"{size}-silu", BENCH / f"{size}-relu"
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(WIDTH, num_hidden_layers=SIZES[size], tie_word_embeddings=True, dtype="float16")
    tensors = list(_tensors(SIZES[size], cfg["vocab_size"]))
    n_params = sum(math.prod(s) for _, s in tensors)
    if (relu / "pred" / "done").exists():
        return silu, relu, n_params
    for folder, act in ((silu, "silu"), (relu, "relu")):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({**cfg, "hidden_act": act}))
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(src / name, folder / name)
    write_safetensors(silu / "model.safetensors", tensors, seed=SIZES[size])
    (relu / "model.safetensors").unlink(missing_ok=True)
    (relu / "model.safetensors").hardlink_to(silu / "model.safetensors")
    _write_predictors(relu / "pred", SIZES[size])
    (relu / "pred" / "done").touch()
    return silu, relu, n_params


def _write_predictors(folder: Path, n_layer: int) -> None:
    from safetensors.numpy import save_file
    folder.mkdir(parents=True, exist_ok=True)
    d, ff, rng = WIDTH["hidden_size"], WIDTH["intermediate_size"], np.random.default_rng(1)
    for i in range(n_layer):
        save_file({"fc1.weight": rng.standard_normal((RANK, d), np.float32) * 0.05,
                   "fc2.weight": rng.standard_normal((ff, RANK), np.float32) * 0.05},
                  str(folder / f"model_{i}.safetensors"))


def commands(silu: Path, relu: Path, out: Path, threads: str) -> dict[str, list[str]]:
    tc = [sys.executable, "-m", "tinyconvert"]
    f16 = out.with_name("in-f16.gguf")
    return {
        "hf2gguf f16": tc + ["hf2gguf", str(silu), "-o", str(out), "--outtype", "f16",
                             "--threads", threads],
        "hf2gguf q4_k_m": tc + ["hf2gguf", str(silu), "-o", str(out), "--outtype", "q4_k_m",
                                "--threads", threads],
        "quantize q4_k_m": tc + ["quantize", str(f16), "-o", str(out), "-t", "q4_k_m",
                                 "--threads", threads],
        "powerinfer f16": tc + ["hf2gguf", str(relu), "-o", str(out), "--outtype", "f16",
                                "--powerinfer", "--predictor", str(relu / "pred"),
                                "--threads", threads],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="2")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoints")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated commands to run (default all), "
                    "e.g. 'hf2gguf f16,powerinfer f16'")
    args = ap.parse_args()
    built = {size: build(size) for size in SIZES}
    if args.build_only:
        return
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    for size, (silu, relu, n) in built.items():
        out = BENCH / "out.gguf"
        print(f"{size}: {n / 1e9:.2f}B parameters, {SIZES[size]} layers", flush=True)
        for label, cmd in commands(silu, relu, out, args.threads).items():
            if args.only and label not in args.only.split(","):
                continue
            rows.setdefault(label, {})[size] = measure(cmd + ["-q", "--no-verify"])
            print(f"  {label:18s} {rows[label][size][1]:7.0f} MiB {rows[label][size][0]:7.1f}s",
                  flush=True)
            wanted = not args.only or "quantize q4_k_m" in args.only.split(",")
            if label == "hf2gguf f16" and wanted:            # quantize's input
                out.rename(out.with_name("in-f16.gguf"))
            out.unlink(missing_ok=True)
        if not args.only:
            out.with_name("in-f16.gguf").unlink(missing_ok=True)
    print(f"{'command':18s} {'small MiB':>10s} {'big MiB':>10s} {'ratio':>6s}   seconds")
    for label, r in rows.items():
        if len(r) < 2:
            continue
        (ts, ms), (tb, mb) = r["small"], r["big"]
        print(f"{label:18s} {ms:10.0f} {mb:10.0f} {mb / ms:6.2f}   {ts:6.1f} / {tb:6.1f}")
    if not args.keep:
        shutil.rmtree(BENCH)


if __name__ == "__main__":
    main()
