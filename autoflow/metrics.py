"""Scheduling-quality metrics of one simulated run.

``summarize(result)`` gives the dict that ``bench`` writes to ``results.json``:

* JCT (finish - submit), wait (JCT - time spent running, so a workflow stage's wait
  includes the time it was held for its parents), bounded slowdown, makespan, GPU
  allocation, fragmentation, preemptions, node failures.
* ``slo_violations`` of ``inference_jobs``: an inference job violates its SLO when its
  *start delay* exceeds ``slo_s``. The start delay counts from the moment the job became
  **eligible** to start: its submission, or, for a job with ``depends_on``, the latest of
  its submission and the finishes of the jobs it depends on (a serving stage submitted
  with its pipeline is not late while its parents still run).

When any job of the run is a workflow stage (``Job.workflow_id``), these are added (a run
without workflows has none of them):

* ``workflows``: the number of workflows; ``avg_wct``, ``p50_wct``, ``p99_wct``: workflow
  completion time, the last finish among a workflow's jobs minus the first submit among
  them, over the workflows that completed (every job started; see ``dropped_workflows``).
* ``avg_stage_wait``, ``p99_stage_wait``: a stage's wait runs from its eligibility (as
  above) to its first start, over every workflow stage that started; ``stage_wait``:
  ``{stage name: avg wait}``, the stage name being ``Job.group`` when set (the pipeline
  workloads set it to the stage template, e.g. ``"recsys/train"``), else ``Job.kind``.
* ``serving_stages``: the inference jobs among the stages that started;
  ``serving_slo_violations``: those whose start delay from eligibility exceeded their SLO.
* ``dropped_workflows``: workflows with a dropped job (no completion time).

``dropped_jobs``: jobs that never started (a stage cancelled because a job it depends on
did not succeed). It is present whenever the run has workflows (0 included) and in any
other run that dropped a job. A dropped job has no start, so it is left out of every
time figure (JCT, wait, slowdown, SLO and stage figures) and of ``inference_jobs`` and
``serving_stages``; it still counts in ``jobs`` and in the makespan (it ends when it is
dropped). A job that started and was then cancelled (a live scheduler's ``remove``) keeps
its JCT; its slowdown uses the time it ran in place of a duration it never completed.

A figure over no jobs (say, ``avg_wct`` when no workflow completed) is NaN, written to
JSON as ``null``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .core.jobstate import OracleError
from .job import BOUNDED_SLOWDOWN_MIN_S, INFERENCE
from .sim.simulator import SimResult


def _mean(a) -> float:
    return float(np.mean(a)) if len(a) else float("nan")


def _pct(a, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def _duration(js) -> float:
    """The true duration; for a job that was cancelled while running (it never
    completed), the time it ran."""
    try:
        return js.duration
    except OracleError:
        return js.run_seconds


def eligible_times(jobs) -> dict[int, float]:
    """Job index -> when it became eligible to start: its submit time, or for a job with
    ``depends_on`` the latest of that and its parents' finishes (parents not in the run,
    or without a finish, are ignored)."""
    by_id = {js.job.job_id: js for js in jobs}
    out = {}
    for js in jobs:
        t = js.submit
        for p in js.job.depends_on:
            parent = by_id.get(p)
            if parent is not None and parent.finish is not None:
                t = max(t, parent.finish)
        out[js.idx] = t
    return out


def summarize(result: SimResult) -> dict:
    """The metrics of one run (see the module docstring): SLO start delays count from
    eligibility, workflow keys only when a job has a ``workflow_id``, ``dropped_jobs``
    when there are workflows or dropped jobs."""
    jobs = result.jobs
    ran = [js for js in jobs if js.first_start is not None]
    dropped = len(jobs) - len(ran)
    eligible = eligible_times(jobs)
    submit = np.array([js.submit for js in ran], dtype=float)
    finish = np.array([js.finish for js in ran], dtype=float)
    first = np.array([js.first_start for js in ran], dtype=float)
    elig = np.array([eligible[js.idx] for js in ran], dtype=float)
    dur = np.array([_duration(js) for js in ran], dtype=float)
    run = np.array([js.run_seconds for js in ran], dtype=float)
    jct = finish - submit
    wait = np.maximum(0.0, jct - run)
    slowdown = np.maximum(1.0, jct / np.maximum(dur, BOUNDED_SLOWDOWN_MIN_S))
    makespan = (float(max(js.finish for js in jobs) - min(js.submit for js in jobs))
                if jobs else 0.0)
    inf = np.array([js.job.kind == INFERENCE for js in ran], dtype=bool)
    slo = np.array([js.job.slo_s if js.job.slo_s is not None else np.inf for js in ran],
                   dtype=float)
    violated = inf & ((first - elig) > slo)
    cap = result.capacity_gpus * makespan
    out = {
        "avg_jct": _mean(jct),
        "p50_jct": _pct(jct, 50),
        "p99_jct": _pct(jct, 99),
        "avg_wait": _mean(wait),
        "p99_wait": _pct(wait, 99),
        "avg_bounded_slowdown": _mean(slowdown),
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
    }
    if any(js.job.workflow_id for js in jobs):
        out |= workflow_metrics(jobs, eligible)
    if dropped or "workflows" in out:
        out["dropped_jobs"] = dropped
    return out | ({"guard": dict(result.guard)} if result.guard else {})


def workflow_metrics(jobs, eligible: dict[int, float]) -> dict:
    """The workflow keys of ``summarize`` (see the module docstring); ``eligible`` is
    ``eligible_times(jobs)``."""
    flows: dict[str, list] = defaultdict(list)
    for js in jobs:
        if js.job.workflow_id:
            flows[js.job.workflow_id].append(js)
    wct = [max(js.finish for js in stages) - min(js.submit for js in stages)
           for stages in flows.values() if all(js.first_start is not None for js in stages)]
    waits: list[float] = []
    by_stage: dict[str, list[float]] = defaultdict(list)
    serving = serving_missed = 0
    for stages in flows.values():
        for js in stages:
            if js.first_start is None:
                continue
            w = max(0.0, js.first_start - eligible[js.idx])
            waits.append(w)
            by_stage[js.job.group or js.job.kind].append(w)
            if js.job.kind == INFERENCE:
                serving += 1
                slo = js.job.slo_s
                serving_missed += int(slo is not None and w > slo)
    return {
        "workflows": len(flows),
        "avg_wct": _mean(wct),
        "p50_wct": _pct(wct, 50),
        "p99_wct": _pct(wct, 99),
        "avg_stage_wait": _mean(waits),
        "p99_stage_wait": _pct(waits, 99),
        "stage_wait": {name: _mean(v) for name, v in sorted(by_stage.items())},
        "serving_stages": serving,
        "serving_slo_violations": serving_missed,
        "dropped_workflows": len(flows) - len(wct),
    }
