"""Scheduling-quality metrics of one simulated run."""

from __future__ import annotations

import numpy as np

from .job import BOUNDED_SLOWDOWN_MIN_S, INFERENCE
from .sim.simulator import SimResult


def summarize(result: SimResult) -> dict:
    jobs = result.jobs
    submit = np.array([js.submit for js in jobs])
    finish = np.array([js.finish for js in jobs], dtype=float)
    first = np.array([js.first_start for js in jobs], dtype=float)
    dur = np.array([js.duration for js in jobs])
    run = np.array([js.run_seconds for js in jobs])
    jct = finish - submit
    wait = np.maximum(0.0, jct - run)
    slowdown = np.maximum(1.0, jct / np.maximum(dur, BOUNDED_SLOWDOWN_MIN_S))
    makespan = float(finish.max() - submit.min()) if len(jobs) else 0.0
    inf = np.array([js.job.kind == INFERENCE for js in jobs])
    slo = np.array([js.job.slo_s if js.job.slo_s is not None else np.inf for js in jobs])
    violated = inf & ((first - submit) > slo)
    cap = result.capacity_gpus * makespan
    return {
        "avg_jct": float(jct.mean()),
        "p50_jct": float(np.percentile(jct, 50)),
        "p99_jct": float(np.percentile(jct, 99)),
        "avg_wait": float(wait.mean()),
        "p99_wait": float(np.percentile(wait, 99)),
        "avg_bounded_slowdown": float(slowdown.mean()),
        "makespan": makespan,
        "gpu_allocation": float(result.allocated_gpu_seconds / cap) if cap > 0 else 0.0,
        "fragmentation": float(result.fragmentation),
        "slo_violations": int(violated.sum()),
        "inference_jobs": int(inf.sum()),
        "preemptions": int(sum(js.preemptions for js in jobs)),
        "node_failures": int(result.failures),
        "jobs": len(jobs),
        "wall_s": float(result.wall_s),
        "oracle": bool(result.oracle),
    } | ({"guard": dict(result.guard)} if result.guard else {})
