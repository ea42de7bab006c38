"""What the check ending a conversion costs next to the conversion (issue 19, speed): an f16
conversion of SmolLM2 with --no-verify against the same conversion with its check, each in a
fresh process, alternating, median of --reps; wall time and CPU time (user + sys of the child),
then where the check's CPU time goes, phase by phase, in one process.

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


def phases(src: Path, gguf: Path, threads: int) -> None:
    """The check's parts as _post_verify runs them, CPU seconds each (this process)."""
    marks = [("start", time.process_time())]

    def lap(name: str) -> None:
        marks.append((name, time.process_time()))
    import torch
    torch.set_num_threads(threads)
    lap("import torch")
    from tinyconvert.checks import verify as v
    from tinyconvert.checks.tokenizer import tokenizer_for
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
    from tinyconvert.checks.chat import check_against_hf
    check_against_hf(ref.path, cand.fields)
    lap("statistics, vocab, chat")
    for (_, a), (name, b) in zip(marks, marks[1:]):
        print(f"  {name:30s} {b - a:6.2f} CPU s")


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
        bare, full = [], []
        for _ in range(args.reps):
            bare.append(run(tc + ["-o", str(out), "--no-verify"]))
            out.unlink()
            full.append(run(tc + ["-o", str(out)]))
            out.unlink()
        wb, cb = (statistics.median(x[i] for x in bare) for i in (0, 1))
        wf, cf = (statistics.median(x[i] for x in full) for i in (0, 1))
        print(f"SmolLM2-135M hf2gguf f16, {args.threads} threads, median of {args.reps}")
        print(f"conversion        {wb:6.2f}s wall {cb:6.2f}s CPU")
        print(f"check (difference) {wf - wb:6.2f}s wall {cf - cb:6.2f}s CPU   ratio "
              f"{(wf - wb) / wb:5.2f} wall, {(cf - cb) / cb:5.2f} CPU (goal < 0.5)")
        subprocess.run(tc + ["-o", str(out), "--no-verify"], check=True)
        phases(src, out, int(args.threads))


if __name__ == "__main__":
    main()
