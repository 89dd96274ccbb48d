"""Plots people would rather see than read (PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from autoflow import atomic


def jct_cdf(jcts: dict[str, np.ndarray], path: str | Path, title: str = "") -> None:
    """One CDF curve of job completion time per policy, log-scaled time axis."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, values in jcts.items():
        x = np.sort(np.maximum(np.asarray(values, dtype=float), 1.0))
        y = np.arange(1, len(x) + 1) / len(x)
        ax.plot(x, y, label=name, linewidth=1.6)
    ax.set_xscale("log")
    ax.set_xlabel("job completion time (s, log scale)")
    ax.set_ylabel("fraction of jobs")
    ax.set_ylim(0, 1.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    atomic.save_figure(fig, path)
    plt.close(fig)
