"""A short description of a workload (``autoflow traces inspect``): a dict and rich tables."""

from __future__ import annotations

import numpy as np
from rich.console import Group
from rich.table import Table

from ..job import KINDS
from ..workload import Workload

DAY = 86400.0


def describe(workload: Workload) -> dict:
    """Plain, JSON-serializable facts about ``workload`` and how it was imported."""
    n = len(workload)
    mix = workload.gpu_mix()
    durations = workload.durations()
    pct = ({f"p{q}": float(np.percentile(durations, q)) for q in (50, 90, 99)}
           if durations.size else {"p50": None, "p90": None, "p99": None})
    s = workload.summary
    span = workload.span
    return {
        "source": workload.source,
        "jobs": n,
        "jobs_by_kind": {k: workload.kinds().get(k, 0) for k in KINDS},
        "span_s": span,
        "span_days": span / DAY,
        "gpu_mix": {str(g): mix[g] for g in sorted(mix)},
        "gpu_mix_fraction": {str(g): mix[g] / n for g in sorted(mix)} if n else {},
        "fractional_gpu_jobs": sum(1 for j in workload if j.is_fractional),
        "gpu_type_constrained_jobs": sum(1 for j in workload if j.gpu_types),
        "censored_jobs": sum(1 for j in workload if j.censored),
        "unknown_durations": n - int(durations.size),
        "duration_s": pct,
        "offered_gpu_hours": workload.offered_gpu_seconds() / 3600.0,
        "rows_read": s.rows_read,
        "rows_skipped": s.rows_skipped,
        "skipped": dict(sorted(s.skipped.items())),
        "notes": dict(s.notes),
    }


def _num(x: object) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 100 or x.is_integer() else f"{x:,.3g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def render(desc: dict) -> Group:
    """Rich tables for a :func:`describe` result."""
    main = Table(title=f"workload {desc['source']}", show_header=False, title_justify="left")
    main.add_column("what", style="bold")
    main.add_column("value", justify="right")
    kinds = ", ".join(f"{k} {_num(v)}" for k, v in desc["jobs_by_kind"].items())
    d = desc["duration_s"]
    rows = [
        ("jobs", _num(desc["jobs"])),
        ("by kind", kinds),
        ("span", f"{_num(desc['span_s'])} s ({desc['span_days']:.2f} days)"),
        ("fractional-GPU jobs", _num(desc["fractional_gpu_jobs"])),
        ("GPU-type constrained jobs", _num(desc["gpu_type_constrained_jobs"])),
        ("censored jobs", _num(desc["censored_jobs"])),
        ("unknown durations", _num(desc["unknown_durations"])),
        ("duration p50 / p90 / p99 (s)", " / ".join(_num(d[k]) for k in ("p50", "p90", "p99"))),
        ("offered GPU-hours", _num(desc["offered_gpu_hours"])),
        ("rows read", _num(desc["rows_read"])),
        ("rows skipped", _num(desc["rows_skipped"])),
    ]
    for k, v in rows:
        main.add_row(k, v)

    mix = Table(title="GPUs per job", title_justify="left")
    mix.add_column("GPUs", justify="right")
    mix.add_column("jobs", justify="right")
    mix.add_column("share", justify="right")
    for g, c in desc["gpu_mix"].items():
        mix.add_row(g, _num(c), f"{desc['gpu_mix_fraction'][g]:.1%}")
    parts: list = [main, mix]

    if desc["skipped"] or desc["notes"]:
        why = Table(title="skipped rows and notes", title_justify="left")
        why.add_column("reason / note")
        why.add_column("value", justify="right")
        for reason, c in desc["skipped"].items():
            why.add_row(f"skipped: {reason}", _num(c))
        for note, v in desc["notes"].items():
            why.add_row(f"note: {note}", _num(v) if not isinstance(v, dict) else
                        ", ".join(f"{k} {_num(x)}" for k, x in v.items()))
        parts.append(why)
    return Group(*parts)
