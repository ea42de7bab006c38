"""set-metadata on a multi-GB GGUF, side by side in one run: an in-place numeric edit (should
take milliseconds) and a string edit that changes the header size (a full rewrite; should run at
disk-copy speed), against a plain file copy of the same file.

    python tests/benchmarks/bench_metadata.py [--gib 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.measure import timed  # noqa: E402


def make_big_gguf(path: Path, gib: float) -> None:
    import gguf
    n = int(gib * 2**30) // 4 // 4096 * 4096
    w = gguf.GGUFWriter(None, "llama")
    w.add_name("benchmark model")
    w.add_context_length(4096)
    w.add_tensor_info("big.weight", (n // 4096, 4096), np.dtype(np.float32), n * 4)
    w.write_header_to_file(path=path)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    f = w.fout[0]
    f.write(bytes(-f.tell() % w.data_alignment))
    chunk = np.random.default_rng(0).standard_normal(1 << 24, dtype=np.float32).tobytes()
    left = n * 4
    while left:
        f.write(chunk[: min(len(chunk), left)])
        left -= min(len(chunk), left)
    w.close()


def copy_and_sync(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
    with open(dst, "rb+") as f:
        os.fsync(f.fileno())



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    from tinyconvert.formats.gguf_file import read_gguf
    from tinyconvert.edit.metaedit import apply_edits, make_set
    with tempfile.TemporaryDirectory(dir=REPO / ".cache") as tmp:
        path = Path(tmp) / "big.gguf"
        make_big_gguf(path, args.gib)
        size = path.stat().st_size
        numeric, string, copy, synced = [], [], [], []
        for i in range(args.reps):
            f = read_gguf(path)
            numeric.append(timed(lambda: apply_edits(
                path, [make_set(f, "llama.context_length", str(2048 + i))])))
            f = read_gguf(path)
            string.append(timed(lambda: apply_edits(
                path, [make_set(f, "general.name", "x" * (10 + i))])))
            copy.append(timed(lambda: shutil.copyfile(path, Path(tmp) / "copy.gguf")))
            os.remove(Path(tmp) / "copy.gguf")
            synced.append(timed(lambda: copy_and_sync(path, Path(tmp) / "copy.gguf")))
            os.remove(Path(tmp) / "copy.gguf")
        n, s, c, cs = (statistics.median(x) for x in (numeric, string, copy, synced))
        print(f"file {size / 2**30:.2f} GiB")
        print(f"numeric edit in place   {n * 1000:8.2f} ms")
        print(f"string edit (rewrite)   {s:8.2f} s   {size / s / 2**20:7.0f} MiB/s")
        print(f"plain copy (shutil)     {c:8.2f} s   {size / c / 2**20:7.0f} MiB/s")
        print(f"copy + fsync            {cs:8.2f} s   {size / cs / 2**20:7.0f} MiB/s")
        print(f"rewrite / (copy+fsync)  {s / cs:8.2f}  (goal: about 1; the rewrite fsyncs before "
              f"its rename so a crash cannot leave a renamed but unwritten file)")
        print(f"rewrite / plain copy    {s / c:8.2f}")


if __name__ == "__main__":
    main()
