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


def real_vs_simulated(pairs: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
                      title: str = "") -> None:
    """Per job, the real JCT against the simulated one (log-log), one panel per policy;
    the diagonal is perfect agreement."""
    n = max(1, len(pairs))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2), dpi=120, squeeze=False)
    for ax, (name, (sim, real)) in zip(axes[0], pairs.items()):
        sim = np.maximum(np.asarray(sim, dtype=float), 1.0)
        real = np.maximum(np.asarray(real, dtype=float), 1.0)
        lo, hi = min(sim.min(), real.min()), max(sim.max(), real.max())
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, linestyle="--")
        ax.scatter(sim, real, s=9, alpha=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("simulated JCT (s)")
        ax.set_ylabel("real JCT (s)")
        ratio = real.mean() / sim.mean()
        corr = np.corrcoef(sim, real)[0, 1] if len(sim) > 1 else float("nan")
        ax.set_title(f"{name}: r = {corr:.3f}, avg real/sim = {ratio:.3f}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic.save_figure(fig, path)
    plt.close(fig)


def ratio_bars(ratios: dict[str, float], path: str | Path, xlabel: str, title: str = "",
               marks: dict[str, float] | None = None) -> None:
    """One horizontal bar per name (a ratio where lower is better, log-scaled), with a
    vertical line at 1 and one per entry of ``marks`` (label -> value)."""
    names = list(ratios)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.4), dpi=120)
    y = np.arange(len(names))
    ax.barh(y, [ratios[n] for n in names], color="tab:blue", alpha=0.8)
    for yi, n in zip(y, names):
        ax.text(ratios[n], yi, f" {ratios[n]:.3f}", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    for label, value in (marks or {}).items():
        ax.axvline(value, color="tab:red", linewidth=1, linestyle="--", label=label)
    if marks:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    atomic.save_figure(fig, path)
    plt.close(fig)
