"""verify --plot: per-layer hidden-state error and the distribution of per-token KL divergence."""
from __future__ import annotations

from pathlib import Path

from tinyconvert.formats.errors import InputError


def pyplot():
    """matplotlib's pyplot on a file backend, imported only when a plot is asked for."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'tinyconvert[plot]'") from None
    return plt


def plot_report(report, path: Path) -> None:
    plt = pyplot()
    import numpy as np
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    if report.layers:
        a.semilogy(range(len(report.layers)), report.layers, marker="o")
    a.set(title="hidden-state relative error after each layer", xlabel="layer",
          ylabel="||candidate - reference|| / ||reference||")
    kld = np.clip(report.kld_values.numpy(), 1e-12, None)
    b.hist(kld, bins=np.logspace(np.log10(kld.min()), np.log10(kld.max()) + 1e-9, 40))
    b.set_xscale("log")
    b.axvline(report.stats["kld_mean"], color="k", linestyle="--", label="mean")
    b.set(title=f"per-token KL divergence ({report.stats['tokens']} tokens)", xlabel="KLD (nats)",
          ylabel="tokens")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
