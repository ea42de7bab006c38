"""The quant ladder's answer to "which quant should I pick": one row per output (type, size,
bits per weight, KL divergence, top-1 agreement and perplexity against the source, verdict), as
a table, as JSON, and as a plot of KL divergence against file size."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tinyconvert.checks.limits import bits_per_weight

KLD_FLOOR = 1e-7        # a lossless output (f32) has KLD 0, which a log axis cannot show


@dataclass(frozen=True)
class LadderRow:
    qtype: str
    path: Path
    n_bytes: int
    bpw: float
    report: object | None            # VerifyReport, or None with --no-verify

    def as_json(self) -> dict:
        r = self.report
        s = r.stats if r is not None else {}
        return {"type": self.qtype, "path": str(self.path), "bytes": self.n_bytes,
                "bpw": self.bpw, "kld_mean": s.get("kld_mean"), "top1": s.get("top1"),
                "ppl_reference": s.get("ppl_reference"), "ppl_candidate": s.get("ppl_candidate"),
                "passed": r.passed if r is not None else None,
                "verify": r.as_json() if r is not None else None}


def ladder_rows(files, reports) -> list[LadderRow]:
    """files: LadderFile records; reports: one VerifyReport each, or None."""
    reports = reports or [None] * len(files)
    return [LadderRow(f.qtype, f.path, f.n_bytes, bits_per_weight(f.path), r)
            for f, r in zip(files, reports)]


def table(rows: list[LadderRow]) -> str:
    head = (f"{'type':8s} {'size MiB':>9s} {'bits/w':>7s} {'KLD mean':>10s} {'top-1':>7s} "
            f"{'ppl':>9s}  verdict")
    lines = [head]
    for row in sorted(rows, key=lambda r: -r.n_bytes):
        line = f"{row.qtype.upper():8s} {row.n_bytes / 2**20:9.1f} {row.bpw:7.2f}"
        if row.report is not None:
            s = row.report.stats
            verdict = "PASS" if row.report.passed else "FAIL"
            line += (f" {s['kld_mean']:10.4g} {s['top1']:7.2%} {s['ppl_candidate']:9.3f}  "
                     f"{verdict} (max {row.report.max_kld:.3g})")
        lines.append(line)
    first = next((r.report for r in rows if r.report is not None), None)
    if first is not None:
        s = first.stats
        lines.append(f"against the source: perplexity {s['ppl_reference']:.3f} on {s['tokens']} "
                     f"tokens (KLD and top-1 compare each file's next-token distribution with "
                     f"the source's)")
    return "\n".join(lines)


def plot_ladder(rows: list[LadderRow], path: Path) -> None:
    """KL divergence against file size, each point labelled with its type."""
    from tinyconvert.checks.plot import pyplot
    plt = pyplot()
    rows = [r for r in rows if r.report is not None]
    x = [r.n_bytes / 2**20 for r in rows]
    y = [max(KLD_FLOOR, r.report.stats["kld_mean"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(x, y, marker="o", linestyle="none")
    for r, xi, yi in zip(rows, x, y):
        ax.annotate(r.qtype.upper(), (xi, yi), textcoords="offset points", xytext=(5, 5))
    ax.set_yscale("log")
    ax.margins(x=0.12, y=0.25)             # room for the labels of the outermost points
    ax.set(xlabel="file size (MiB)", ylabel="mean KL divergence from the source (nats)",
           title="quant ladder: lower is closer to the source, left is smaller")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
