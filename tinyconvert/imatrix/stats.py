"""What an importance matrix says, per tensor, in the spirit of llama-imatrix --show-statistics:
over the per-column mean squares a (sum / count, experts with no token left out), the energy
sum(a), its mean, min, max and spread, the share of columns above 1e-5 ("active"), the entropy of
a / sum(a) (and as % of the most it can be), the share of columns more than one standard deviation
above the mean (ZD), the cosine similarity with the same tensor one layer before, and how much of
the energy the top 1 % and top 10 % of columns hold: the concentration that makes an importance
matrix worth having. Statistics are float64 (llama.cpp's are float32; they agree to rounding)."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.imatrix.files import Imatrix

ACTIVE = 1e-5                     # compute_statistics' threshold
TOP = (0.01, 0.10)


@dataclass(frozen=True)
class TensorStats:
    name: str
    layer: int                    # -1: not in a block (output.weight)
    kind: str                     # attn_q, ffn_down_exps, ...
    n: int                        # columns (times experts with data)
    energy: float                 # sum of the per-column mean squares
    mean: float
    min: float
    max: float
    std: float
    active: float                 # share of columns above ACTIVE
    entropy: float                # bits
    entropy_norm: float           # entropy / log2(n), in %
    zd: float                     # share of columns > mean + std
    top1: float                   # share of the energy in the top 1 % of columns
    top10: float                  # ... in the top 10 %
    cossim: float | None          # with the same tensor of the previous layer


def _parts(name: str) -> tuple[int, str]:
    m = re.match(r"blk\.(\d+)\.(.+?)\.weight$", name)
    return (int(m.group(1)), m.group(2)) if m else (-1, name.removesuffix(".weight"))


def _values(im: Imatrix, name: str) -> np.ndarray:
    """The per-column mean squares of the matrices that saw tokens, flattened."""
    e = im.entries[name]
    if im.is_legacy:
        ncall = max(1, int(e.counts[0]))
        return e.sums.astype(np.float64).reshape(-1) / ncall
    seen = e.counts > 0
    return (e.sums[seen].astype(np.float64) / e.counts[seen, None]).reshape(-1)


def _top_share(a: np.ndarray, total: float, frac: float) -> float:
    k = max(1, math.ceil(frac * a.size))
    return float(np.sort(a)[::-1][:k].sum() / total) if total > 0 else 0.0


def tensor_stats(name: str, a: np.ndarray, prev: np.ndarray | None) -> TensorStats:
    layer, kind = _parts(name)
    total, mean, std = float(a.sum()), float(a.mean()), float(a.std())
    p = a / total if total > 0 else np.zeros_like(a)
    nz = p[p > 0]
    entropy = float(-(nz * np.log2(nz)).sum())
    cos = None
    if prev is not None and prev.size == a.size:
        denom = np.linalg.norm(a) * np.linalg.norm(prev)
        cos = float(a @ prev / denom) if denom > 0 else 0.0
    return TensorStats(name, layer, kind, int(a.size), total, mean, float(a.min()),
                       float(a.max()), std, float((np.abs(a) > ACTIVE).mean()), entropy,
                       100 * entropy / math.log2(a.size) if a.size > 1 else 0.0,
                       float(((a - mean) / std > 1).mean()) if std > 0 else 0.0,
                       _top_share(a, total, TOP[0]), _top_share(a, total, TOP[1]), cos)


def statistics(im: Imatrix) -> list[TensorStats]:
    """Sorted as --show-statistics sorts: by tensor kind, then the most energy first."""
    values = {n: _values(im, n) for n in im.entries}
    out = []
    for name, a in values.items():
        if a.size == 0:
            continue                   # no matrix of this entry saw a token
        layer, _ = _parts(name)
        prev = values.get(name.replace(f"blk.{layer}.", f"blk.{layer - 1}.", 1)) \
            if layer > 0 else None
        out.append(tensor_stats(name, a, prev))
    if not out:
        raise InputError("the importance matrix has no entry with data")
    return sorted(out, key=lambda s: (s.kind, -s.energy))


def as_json(im: Imatrix, stats: list[TensorStats]) -> dict:
    return {"chunk_count": im.chunk_count, "chunk_size": im.chunk_size,
            "datasets": im.datasets, "legacy": im.is_legacy, "entries": len(im.entries),
            "tensors": [asdict(s) for s in stats]}


def table(stats: list[TensorStats]) -> str:
    head = (f"{'layer':>5}  {'tensor':<18} {'sum(act^2)':>12} {'min':>9} {'max':>10} "
            f"{'mean':>9} {'active':>7} {'N':>6} {'entropy%':>8} {'ZD':>6} {'top1%':>6} "
            f"{'top10%':>6} {'cossim':>6}")
    rows = [head, "-" * len(head)]
    for s in stats:
        cos = f"{s.cossim:6.3f}" if s.cossim is not None else "     -"
        rows.append(f"{s.layer if s.layer >= 0 else '-':>5}  {s.kind[:18]:<18} "
                    f"{s.energy:12.4g} {s.min:9.3g} {s.max:10.4g} {s.mean:9.3g} "
                    f"{100 * s.active:6.1f}% {s.n:6d} {s.entropy_norm:7.1f}% "
                    f"{100 * s.zd:5.1f}% {100 * s.top1:5.1f}% {100 * s.top10:5.1f}% {cos}")
    return "\n".join(rows)


def plot(stats: list[TensorStats], path: Path) -> None:
    """Energy per layer (log) and the share the top 1 % of columns hold, one line per kind."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'tinyconvert[plot]'") from None
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for kind in sorted({s.kind for s in stats if s.layer >= 0}):
        pts = sorted((s.layer, s.energy, s.top1) for s in stats if s.kind == kind)
        layers = [p[0] for p in pts]
        a.semilogy(layers, [p[1] for p in pts], marker=".", label=kind)
        b.plot(layers, [100 * p[2] for p in pts], marker=".", label=kind)
    a.set(title="energy: sum of per-column mean squares", xlabel="layer", ylabel="sum(act^2)")
    b.set(title="share of the energy in the top 1% of columns", xlabel="layer", ylabel="%")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
