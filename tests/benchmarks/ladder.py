"""A quant ladder in one pass against separate runs, side by side in one run, on the real
SmolLM2-135M HF checkpoint: `hf2gguf HF -o DIR -t q8_0 -t q6_k -t q4_k_m -t q3_k_m` against
one `hf2gguf HF -o X.gguf --outtype T` per type. Prints wall time (process, incl. startup) of
the ladder and the sum of the separate runs, their ratio, and peak RSS of each; first writing
only (--no-verify), then with the check (the ladder's one verify pass against one verify per
file). Each output of the ladder is compared byte for byte with its separate run.

    python tests/benchmarks/ladder.py [--reps 1] [--types q8_0,q6_k,q4_k_m,q3_k_m] [--no-check]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.measure import measure  # noqa: E402

CLI = [sys.executable, "-m", "tinyconvert", "hf2gguf"]


def ladder(src: Path, outdir: Path, types: list[str], verify: bool) -> tuple[float, float]:
    flags = [f for t in types for f in ("-t", t)]
    return measure([*CLI, str(src), "-o", str(outdir), *flags, "-q",
                    *([] if verify else ["--no-verify"])])


def separate(src: Path, outdir: Path, types: list[str], verify: bool) -> list[tuple[float, float]]:
    return [measure([*CLI, str(src), "-o", str(outdir / f"{t}.gguf"), "--outtype", t, "-q",
                     *([] if verify else ["--no-verify"])]) for t in types]


def same_bytes(ladder_dir: Path, sep_dir: Path, types: list[str]) -> bool:
    made = {p.name.rsplit("-", 1)[-1][:-5].lower(): p for p in ladder_dir.glob("*.gguf")}
    return all(made[t].read_bytes() == (sep_dir / f"{t}.gguf").read_bytes() for t in types)


def row(label: str, lad: list, sep: list[list]) -> str:
    t_lad = statistics.median(x[0] for x in lad)
    t_sep = statistics.median(sum(x[0] for x in rep) for rep in sep)
    m_lad = max(x[1] for x in lad)
    m_sep = max(x[1] for rep in sep for x in rep)
    each = " + ".join(f"{x[0]:.1f}" for x in sep[0])
    return (f"{label:13s} ladder {t_lad:6.1f}s peak {m_lad:5.0f} MiB | separate {each} = "
            f"{t_sep:6.1f}s peak {m_sep:5.0f} MiB | time ratio ladder/separate {t_lad / t_sep:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--types", default="q8_0,q6_k,q4_k_m,q3_k_m")
    ap.add_argument("--no-check", action="store_true", help="skip the with-verify comparison")
    args = ap.parse_args()
    types = args.types.split(",")
    from tests.support.smollm2 import build
    src = build()
    print(f"SmolLM2-135M HF -> {', '.join(types)} with hf2gguf (process wall time incl. "
          f"startup; peak RSS of one process; median of {args.reps})")
    for verify in ([False] if args.no_check else [False, True]):
        lad, sep = [], []
        for _ in range(args.reps):
            with tempfile.TemporaryDirectory() as tmp:      # never inside the shared .cache
                lad.append(ladder(src, Path(tmp) / "ladder", types, verify))
                sep.append(separate(src, Path(tmp), types, verify))
                ok = same_bytes(Path(tmp) / "ladder", Path(tmp), types)
        label = "write+verify" if verify else "write only"
        print(row(label, lad, sep) + f" | bytes equal: {ok}")


if __name__ == "__main__":
    main()
