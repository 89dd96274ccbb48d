"""``autoflow generate report``: how far a synthetic workload is from the real one.

SDV's quality score (``sdv.evaluation.evaluate_quality``; absent without
SDV) averages column shapes and pair trends and hides what matters for scheduling, so
the report also gives: per-column two-sample KS statistics, duration and inter-arrival
gap quantiles (p50/p90/p99/max, real, synthetic and their ratio), the frequency of every
GPU count and kind, and the hourly arrival profile with its correlation to the real one.
``bar`` checks the targets: durations within 15% at p50/p90/p99, every GPU-count
frequency within 2 percentage points, hourly correlation at least 0.8. ``pipelines``
compares the workflows (``generators.pipelines.count``): their number, the share of the
jobs that are stages (and its difference in percentage points) and the frequency of
each stage count; it is informational, not part of ``bar``.

Written to ``DIR/report.json`` with ``durations.png``, ``gpu_counts.png`` and
``hourly.png``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from autoflow import atomic, jsonsafe
from autoflow.workload import Workload

from .normal import ks_statistic
from .pipelines import count
from .table import to_table

QUANTILES = {"p50": 50, "p90": 90, "p99": 99}
DURATION_TOL, GPU_TOL_PP, HOURLY_MIN = 0.15, 2.0, 0.8


def _quantiles(x: np.ndarray) -> dict:
    out = {k: float(np.percentile(x, q)) for k, q in QUANTILES.items()} if x.size else {}
    out["max"] = float(x.max()) if x.size else float("nan")
    return out


def _compare(real: np.ndarray, syn: np.ndarray) -> dict:
    r, s = _quantiles(real), _quantiles(syn)
    return {"real": r, "synthetic": s,
            "ratio": {k: (s[k] / r[k] if r[k] else float("nan")) for k in r}}


def _freq(values: list) -> dict:
    c = Counter(values)
    n = max(1, len(values))
    return {str(k): v / n for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))}


def _freq_compare(real: list, syn: list) -> dict:
    r, s = _freq(real), _freq(syn)
    keys = sorted(set(r) | set(s), key=lambda k: (len(k), k))
    diff = {k: 100.0 * (s.get(k, 0.0) - r.get(k, 0.0)) for k in keys}
    return {"real": {k: r.get(k, 0.0) for k in keys}, "synthetic": {k: s.get(k, 0.0) for k in keys},
            "diff_pp": diff, "max_abs_diff_pp": max((abs(v) for v in diff.values()), default=0.0)}


def hourly_profile(times: np.ndarray) -> np.ndarray:
    h = np.bincount((np.mod(times, 86400.0) // 3600.0).astype(int) % 24, minlength=24)
    return h / max(1, h.sum())


def _sdv_quality(real_df, syn_df) -> tuple[float | None, str]:
    try:
        from sdv.evaluation import evaluate_quality

        from .sdv_models import metadata_for
    except ImportError:
        return None, "SDV is not installed (pip install 'autoflow[synth]')"
    md = metadata_for(real_df)
    rep = evaluate_quality(real_df, syn_df[real_df.columns], md, verbose=False)
    return float(rep.get_score()), "sdv.evaluation.evaluate_quality"


def fidelity(real: Workload, synthetic: Workload) -> dict:
    real_df, real_sum = to_table(real)
    syn_df, syn_sum = to_table(synthetic)
    rd = np.array([j.duration for j in real.jobs if j.duration is not None])
    sd = np.array([j.duration for j in synthetic.jobs if j.duration is not None])
    rt = np.sort([j.submit_time for j in real.jobs])
    st = np.sort([j.submit_time for j in synthetic.jobs])
    score, how = _sdv_quality(real_df, syn_df)
    ks = {}
    for col in real_df.columns:
        a, b = real_df[col], syn_df[col]
        # categories (object in pandas 2, str in pandas 3): KS over codes in a shared order
        if not pd.api.types.is_numeric_dtype(a):
            cats = {c: i for i, c in enumerate(sorted(set(a) | set(b)))}
            a, b = a.map(cats), b.map(cats)
        ks[col] = ks_statistic(a.to_numpy(dtype=float), b.to_numpy(dtype=float))
    hr, hs = hourly_profile(rt), hourly_profile(st)
    corr = float(np.corrcoef(hr, hs)[0, 1]) if hr.std() > 0 and hs.std() > 0 else float("nan")
    durations = _compare(rd, sd)
    gpus = _freq_compare([j.num_gpus for j in real.jobs if j.duration is not None],
                         [j.num_gpus for j in synthetic.jobs])
    bar = {
        "durations_within_15pct": all(abs(durations["ratio"][k] - 1) <= DURATION_TOL
                                      for k in QUANTILES),
        "gpu_counts_within_2pp": gpus["max_abs_diff_pp"] <= GPU_TOL_PP,
        "hourly_corr_at_least_0.8": bool(corr >= HOURLY_MIN),
    }
    bar["all"] = all(bar.values())
    return {
        "real": {"source": real.source, **real_sum.to_dict()},
        "synthetic": {"source": synthetic.source, **syn_sum.to_dict()},
        "sdv_quality_score": score, "sdv_quality_from": how,
        "ks": ks,
        "durations": durations,
        "gaps": _compare(np.diff(rt), np.diff(st)),
        "gpu_counts": gpus,
        "kinds": _freq_compare([j.kind for j in real.jobs if j.duration is not None],
                               [j.kind for j in synthetic.jobs]),
        "hourly": {"real": hr.tolist(), "synthetic": hs.tolist(), "correlation": corr},
        "pipelines": _pipelines(real, synthetic),
        "bar": bar,
    }


def _pipelines(real: Workload, synthetic: Workload) -> dict:
    r, s = count(real.jobs), count(synthetic.jobs)
    n = max([*r["stage_counts"], *s["stage_counts"], 0])
    stages = _freq_compare([k for k, v in r["stage_counts"].items() for _ in range(v)],
                           [k for k, v in s["stage_counts"].items() for _ in range(v)]) \
        if n else {}
    return {"real": {k: r[k] for k in ("workflows", "stages", "job_share")},
            "synthetic": {k: s[k] for k in ("workflows", "stages", "job_share")},
            "job_share_diff_pp": 100.0 * (s["job_share"] - r["job_share"]),
            "stage_counts": stages}


def write_report(rep: dict, real: Workload, synthetic: Workload, out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "report.json"]
    jsonsafe.write(files[0], rep)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def _save(fig, ax, path: Path) -> Path:
        ax.legend()
        fig.tight_layout()
        atomic.save_figure(fig, path, dpi=110)
        plt.close(fig)
        return path

    rd = np.sort([j.duration for j in real.jobs if j.duration is not None])
    sd = np.sort([j.duration for j in synthetic.jobs])
    fig, ax = plt.subplots(figsize=(6, 4))
    for x, label in ((rd, "real"), (sd, "synthetic")):
        ax.plot(np.maximum(x, 1), 1 - np.arange(x.size) / x.size, label=label)
    ax.set(xscale="log", yscale="log", xlabel="duration (s)", ylabel="share of jobs longer",
           title="Durations: complementary CDF")
    files.append(_save(fig, ax, out / "durations.png"))

    g = rep["gpu_counts"]
    keys = list(g["real"])
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = np.arange(len(keys))
    ax.bar(xs - 0.2, [g["real"][k] for k in keys], 0.4, label="real")
    ax.bar(xs + 0.2, [g["synthetic"][k] for k in keys], 0.4, label="synthetic")
    ax.set(xticks=xs, xticklabels=keys, yscale="log", xlabel="GPUs per job",
           ylabel="share of jobs", title="GPU counts")
    files.append(_save(fig, ax, out / "gpu_counts.png"))

    h = rep["hourly"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(24), h["real"], marker="o", label="real")
    ax.plot(range(24), h["synthetic"], marker="o", label="synthetic")
    ax.set(xlabel="hour of day (trace clock)", ylabel="share of arrivals",
           title=f"Hourly arrivals (correlation {h['correlation']:.3f})")
    files.append(_save(fig, ax, out / "hourly.png"))
    return files
