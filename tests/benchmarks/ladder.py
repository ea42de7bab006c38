"""A quant ladder in one pass against separate runs, side by side in one run, on the real
SmolLM2-135M HF checkpoint: `hf2gguf HF -o DIR -t q8_0 -t q6_k -t q4_k_m -t q3_k_m` against
one `hf2gguf HF -o X.gguf --outtype T` per type (--cmd quantize: the same from SmolLM2's bf16
GGUF with `quantize`). Prints wall time and CPU time (process, incl. startup) of the ladder and
the sum of the separate runs, their ratios, and peak RSS of each; first writing only
(--no-verify), then with the check (the ladder's one verify pass against one verify per file).
Each output of the ladder is compared byte for byte with its separate run. --verify-rss: peak
RSS of the ladder's verify pass alone with 1 output against all of them.

    python tests/benchmarks/ladder.py [--cmd hf2gguf|quantize] [--reps 1]
        [--types q8_0,q6_k,q4_k_m,q3_k_m] [--no-check] [--verify-rss]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.measure import measure_cpu  # noqa: E402

TC = [sys.executable, "-m", "tinyconvert"]
TYPE_FLAG = {"hf2gguf": "--outtype", "quantize": "--type"}


def ladder(cmd: str, src: Path, outdir: Path, types: list[str], verify: bool):
    flags = [f for t in types for f in ("-t", t)]
    return measure_cpu([*TC, cmd, str(src), "-o", str(outdir), *flags, "-q",
                        *([] if verify else ["--no-verify"])])


def separate(cmd: str, src: Path, outdir: Path, types: list[str], verify: bool) -> list:
    return [measure_cpu([*TC, cmd, str(src), "-o", str(outdir / f"{t}.gguf"), TYPE_FLAG[cmd], t,
                         "-q", *([] if verify else ["--no-verify"])]) for t in types]


def same_bytes(ladder_dir: Path, sep_dir: Path, types: list[str]) -> bool:
    made = {p.name.rsplit("-", 1)[-1][:-5].lower(): p for p in ladder_dir.glob("*.gguf")}
    return all(made[t].read_bytes() == (sep_dir / f"{t}.gguf").read_bytes() for t in types)


def row(label: str, lad: list, sep: list[list]) -> str:
    t_lad = statistics.median(x[0] for x in lad)
    t_sep = statistics.median(sum(x[0] for x in rep) for rep in sep)
    c_lad = statistics.median(x[2] for x in lad)
    c_sep = statistics.median(sum(x[2] for x in rep) for rep in sep)
    m_lad = max(x[1] for x in lad)
    m_sep = max(x[1] for rep in sep for x in rep)
    each = " + ".join(f"{x[0]:.1f}" for x in sep[0])
    return (f"{label:13s} ladder {t_lad:6.1f}s cpu {c_lad:6.1f}s peak {m_lad:5.0f} MiB | "
            f"separate {each} = {t_sep:6.1f}s cpu {c_sep:6.1f}s peak {m_sep:5.0f} MiB | "
            f"ladder/separate wall {t_lad / t_sep:.2f} cpu {c_lad / c_sep:.2f}")


VERIFY = ("import sys; from pathlib import Path; "
          "from tinyconvert.checks.ladder.verify import verify_ladder; "
          "from tinyconvert.cli.convert import POST_VERIFY_TOKENS as n; "
          "verify_ladder(sys.argv[1], [Path(p) for p in sys.argv[2:]], tokens=n)")


def verify_rss(src: Path, ladder_dir: Path) -> str:
    """Peak RSS of the ladder's verify pass (as the CLI runs it) with the first file, then all."""
    files = sorted(ladder_dir.glob("*.gguf"))
    one = measure_cpu([sys.executable, "-c", VERIFY, str(src), str(files[0])])
    every = measure_cpu([sys.executable, "-c", VERIFY, str(src), *map(str, files)])
    return (f"verify pass   1 output {one[0]:5.1f}s peak {one[1]:5.0f} MiB | {len(files)} outputs "
            f"{every[0]:5.1f}s peak {every[1]:5.0f} MiB | growth {every[1] - one[1]:+.0f} MiB")


def source(cmd: str, tmp: Path) -> Path:
    from tests.support.smollm2 import build
    hf = build()
    if cmd == "hf2gguf":
        return hf
    bf16 = tmp / "SmolLM2-BF16.gguf"
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    hf2gguf(str(hf), bf16, outtype="bf16", quiet=True)
    return bf16


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cmd", choices=sorted(TYPE_FLAG), default="hf2gguf")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--types", default="q8_0,q6_k,q4_k_m,q3_k_m")
    ap.add_argument("--no-check", action="store_true", help="skip the with-verify comparison")
    ap.add_argument("--verify-rss", action="store_true", help="peak RSS of the verify pass, "
                    "1 output against all")
    args = ap.parse_args()
    types = args.types.split(",")
    with tempfile.TemporaryDirectory() as keep:         # never inside the shared .cache
        src = source(args.cmd, Path(keep))
        print(f"SmolLM2-135M {'HF' if args.cmd == 'hf2gguf' else 'BF16 GGUF'} -> "
              f"{', '.join(types)} with {args.cmd} (process wall and CPU time incl. startup; "
              f"peak RSS of one process; median of {args.reps})")
        for verify in ([False] if args.no_check else [False, True]):
            lad, sep = [], []
            for _ in range(args.reps):
                with tempfile.TemporaryDirectory() as tmp:
                    lad.append(ladder(args.cmd, src, Path(tmp) / "ladder", types, verify))
                    sep.append(separate(args.cmd, src, Path(tmp), types, verify))
                    ok = same_bytes(Path(tmp) / "ladder", Path(tmp), types)
                    if args.verify_rss and not verify:
                        rss = verify_rss(src, Path(tmp) / "ladder")
            label = "write+verify" if verify else "write only"
            print(row(label, lad, sep) + f" | bytes equal: {ok}")
        if args.verify_rss:
            print(rss)


if __name__ == "__main__":
    main()
