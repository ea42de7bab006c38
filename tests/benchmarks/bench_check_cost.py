"""What the check ending a conversion costs next to the conversion (issue 19, speed): an f16
conversion of SmolLM2 with --no-verify against the same conversion with its default check
(auto: the weights check, no torch) and with --check model (both models run), each in a fresh
process, alternating, median of --reps; wall time and CPU time (user + sys of the child), then
where each check's CPU time goes, phase by phase, in one process.

    python tests/benchmarks/bench_check_cost.py [--reps 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - t, cpu


def model_phases(src: Path, gguf: Path, threads: int) -> None:
    """--check model's parts as verify runs them, CPU seconds each (this process)."""
    marks = [("start", time.process_time())]

    def lap(name: str) -> None:
        marks.append((name, time.process_time()))
    import torch
    torch.set_num_threads(threads)
    lap("import torch")
    from tinyconvert.checks import verify as v
    from tinyconvert.checks.tokenizers.tokenizer import tokenizer_for
    from tinyconvert.pipeline.sources import gguf_source, open_source
    from tinyconvert.runtime import metrics
    lap("import the check")
    ref, cand = open_source(str(src)), gguf_source(gguf)
    ids = tokenizer_for(ref).encode(v.default_text())[:128]
    lap("open both, tokenize")
    lr, lc, _ = v._lockstep(ref, cand, ids)
    lap("run both models (128 tokens)")
    metrics.token_stats(lr, lc, ids)
    v.vocab_mismatches(ref, cand, v.default_text(), ids)
    from tinyconvert.checks.tokenizers.chat import check_against_hf
    check_against_hf(ref.path, cand.fields)
    lap("statistics, vocab, chat")
    _show("--check model", marks)


def weights_phases(src: Path, gguf: Path) -> None:
    """The default (weights) check's parts, CPU seconds each, in a fresh process that has
    imported what the conversion imports (so the check's own imports are counted)."""
    code = f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
import tinyconvert.cli, tinyconvert.pipeline.hf2gguf
from pathlib import Path
from tests.benchmarks.bench_check_cost import _show
marks = [("start", time.process_time())]
lap = lambda name: marks.append((name, time.process_time()))
from tinyconvert.checks import weights_check as w
from tinyconvert.checks.tokenizers.tokenizer import tokenizer_for
from tinyconvert.formats.gguf_model import open_gguf
from tinyconvert.runtime.hparams import from_gguf_fields
lap("import the check")
model = open_gguf(Path({str(gguf)!r})); fields = model.values()
ref = w._open_reference({str(src)!r}, (), ())
lap("open both")
w.key_mismatches(ref, fields, from_gguf_fields(fields, model.magic))
w.tensor_mismatches(ref, model, [t.name for t in model.tensors])
lap("keys, tensors (sampled rows)")
tok, (enc, _) = tokenizer_for(ref), w._encoder(fields)
w.tokenizer_mismatches(ref, fields, tok, enc)
lap("tokenizers, vocab")
from tinyconvert.checks.tokenizers.chat import check_against_hf
check_against_hf(ref.path, fields, hf=tok, encoder=enc)
lap("chat")
_show("--check weights (auto)", marks)
print("  torch imported:", "torch" in sys.modules, " transformers imported:",
      "transformers" in sys.modules)
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def _show(title: str, marks) -> None:
    print(title)
    for (_, a), (name, b) in zip(marks, marks[1:]):
        print(f"  {name:30s} {b - a:6.2f} CPU s")


def _medians(runs) -> tuple[float, float]:
    return tuple(statistics.median(x[i] for x in runs) for i in (0, 1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", default="2")
    args = ap.parse_args()
    from tests.support.smollm2 import build
    src = build()
    tc = [sys.executable, "-m", "tinyconvert", "hf2gguf", str(src), "--outtype", "f16", "-q",
          "--threads", args.threads]
    with tempfile.TemporaryDirectory(dir=REPO / ".cache") as tmp:
        out = Path(tmp) / "m.gguf"
        runs = {"bare": [], "auto": [], "model": []}
        extra = {"bare": ["--no-verify"], "auto": [], "model": ["--check", "model"]}
        for _ in range(args.reps):
            for kind, runs_of in runs.items():
                runs_of.append(run(tc + ["-o", str(out), *extra[kind]]))
                out.unlink()
        wb, cb = _medians(runs["bare"])
        print(f"SmolLM2-135M hf2gguf f16, {args.threads} threads, median of {args.reps}")
        print(f"conversion              {wb:6.2f}s wall {cb:6.2f}s CPU")
        for kind, label in (("auto", "default check (weights)"), ("model", "--check model")):
            wf, cf = _medians(runs[kind])
            print(f"{label:23s} {wf - wb:6.2f}s wall {cf - cb:6.2f}s CPU   ratio "
                  f"{(wf - wb) / wb:5.2f} wall, {(cf - cb) / cb:5.2f} CPU (goal < 0.5)")
        subprocess.run(tc + ["-o", str(out), "--no-verify"], check=True)
        weights_phases(src, out)
        model_phases(src, out, int(args.threads))


if __name__ == "__main__":
    main()
