"""The loop's timeline (``timeline.png``): per window, the live policy's average JCT
against each heuristic's, as a ratio to the best heuristic of the window; where the
sources change, where drift was detected, and where a challenger was promoted or
rejected."""

from __future__ import annotations

from pathlib import Path


def plot_timeline(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import atomic

    rows = report["windows"]
    names = [n for n in (rows[0]["avg_jct"] if rows else {}) if n != "live"]
    xs, best = [], []
    for r in rows:
        vals = [r["avg_jct"][n] for n in names if r["avg_jct"][n]]
        xs.append(r["index"])
        best.append(min(vals) if vals else None)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1.2]})
    for i, n in enumerate(names):
        ys = [r["avg_jct"][n] / b if r["avg_jct"][n] and b else None
              for r, b in zip(rows, best)]
        ax.plot(xs, ys, lw=1.0, ls="--", color=f"C{i + 1}", label=n)
    live = [r["avg_jct"]["live"] / b if r["avg_jct"]["live"] and b else None
            for r, b in zip(rows, best)]
    ax.plot(xs, live, lw=2.2, color="C0", marker="o", label="live (champion)")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.axhline(1.05, color="grey", lw=0.6, ls=":")
    for s in report["segments"][1:]:
        for a in (ax, ax2):
            a.axvline(s["first_window"] - 0.5, color="k", lw=1.2)
        ax.text(s["first_window"] - 0.45, ax.get_ylim()[1], s["source"].split("/")[-1],
                fontsize=7, va="top")
    for r in rows:
        if r["drift_detected"]:
            ax2.scatter([r["index"]], [1], marker="v", color="C3", s=50)
        if r["retrained"]:
            ax2.scatter([r["index"]], [0], marker="s" if r["promoted"] else "x",
                        color="C2" if r["promoted"] else "C7", s=60)
    ax2.set_yticks([0, 1], ["promoted (■) / rejected (x)", "drift"])
    ax2.set_ylim(-0.6, 1.6)
    ax.set_ylabel("avg JCT / best heuristic of the window")
    ax.set_ylim(0.8, min(3.0, max([v for v in live if v] + [1.2]) + 0.2))
    ax.legend(fontsize=7, ncol=4, loc="upper left")
    ax2.set_xlabel("window")
    ax.set_title("autoflow loop: the live policy per window")
    fig.subplots_adjust(left=0.27, right=0.98, top=0.94, bottom=0.09, hspace=0.08)
    atomic.save_figure(fig, path, dpi=120)
    plt.close(fig)
