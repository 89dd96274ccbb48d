"""How closely a real run followed the simulated one: the same workload, cluster and
policy simulated by the core, compared job by job.

``compare`` gives the per-job JCT correlation (real vs simulated), the ratio of the
average JCTs (real / simulated), the preemptions of both, the launch delay (decision to
process start, wall seconds and trace seconds), the wall time the core spent per
decision (policy, bookkeeping and Ray task submission) and the work lost.
``real_metrics`` summarizes a real run with the metrics ``bench`` reports.
"""

from __future__ import annotations

import numpy as np

from ..metrics import summarize
from ..sim.simulator import SimResult
from .replay import RayRun


def jcts(jobs) -> np.ndarray:
    return np.array([js.finish - js.submit for js in jobs], dtype=float)


def real_metrics(run: RayRun, spec, policy) -> dict:
    """``bench``'s metrics of a real run (times in trace seconds)."""
    res = SimResult(run.jobs, spec, policy.label, policy.oracle, run.wall_s,
                    run.meter.alloc_integral / 1000.0, sum(n.gpus for n in spec.nodes),
                    run.meter.fragmentation, sum(js.failures for js in run.jobs),
                    getattr(policy, "guard_stats", {}))
    return summarize(res)


def _pcts(x: np.ndarray, scale: float = 1.0) -> dict:
    if not len(x):
        return {"p50": None, "p95": None, "max": None}
    return {"p50": float(np.percentile(x, 50)) * scale,
            "p95": float(np.percentile(x, 95)) * scale, "max": float(x.max()) * scale}


def compare(run: RayRun, sim: SimResult, time_scale: float) -> dict:
    by_id = {js.job.job_id: js for js in sim.jobs}
    real = jcts(run.jobs)
    simulated = jcts([by_id[js.job.job_id] for js in run.jobs])
    corr = (float(np.corrcoef(real, simulated)[0, 1])
            if len(real) > 1 and real.std() > 0 and simulated.std() > 0 else None)
    lag = np.array([s["began"] - s["launched"] for s in run.segments if "began" in s])
    return {
        "jct_correlation": corr,
        "avg_jct_ratio": float(real.mean() / simulated.mean()) if len(real) else None,
        "avg_jct_real_s": float(real.mean()) if len(real) else None,
        "avg_jct_simulated_s": float(simulated.mean()) if len(real) else None,
        "preemptions_real": int(sum(js.preemptions for js in run.jobs)),
        "preemptions_simulated": int(sum(js.preemptions for js in sim.jobs)),
        "decisions": run.decisions,
        "overhead_per_decision_ms": (1000.0 * run.pass_s / run.decisions
                                     if run.decisions else None),
        "launch_delay_wall_ms": _pcts(lag, 1000.0),
        "launch_delay_trace_s": _pcts(lag, 1.0 / time_scale),
        "segments": len(run.segments),
        "lost_work_s": float(sum(x["lost_s"] for x in run.lost)),
        "time_scale": time_scale,
        "wall_s": run.wall_s,
    }
