"""Replays a workload as real Ray tasks: the scheduler core, the policy, and the Ray
backend (``RayBackend``) on a local multi-node Ray cluster shaped like the cluster spec.

A workload with workflows (``Job.depends_on``) is checked as the simulator checks it (a
dependency on a job not in it, or a cycle, is a ConfigError); the core holds each stage
until its parents have finished. A stage dropped because a job it depends on did not
succeed (``RayBackend.cancel``) never runs: it is listed in ``RayRun.dropped`` with the
reason.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..cluster import ClusterSpec
from ..core.estimator import DurationEstimator
from ..core.jobstate import JobState
from ..core.scheduler import SchedulerCore
from ..errors import ConfigError
from ..feasibility import check_all_fit
from ..policies.base import Policy
from ..sim.meter import SimMeter
from ..workflow import check as check_dependencies
from ..workflow import has_dependencies
from ..workload import Workload
from .local_ray import LocalRayCluster
from .ray_backend import RayBackend
from .ray_runner import RayRunner

CHECKPOINT_INTERVAL_S = 1800.0  # trace seconds between a replayed job's checkpoints


@dataclass
class RayRun:
    jobs: list[JobState]  # the core's records: submit, first start, finish (trace seconds)
    segments: list[dict]  # every task that ended: job, node, ray node, wall times, outcome
    lost: list[dict]  # work lost with a node: job, node, trace seconds
    node_ids: list[str]  # Ray node id of each cluster node
    wall_s: float
    pass_s: float  # wall seconds in the core's passes (decisions and task submission)
    decisions: int  # starts and preemptions
    meter: SimMeter  # GPU allocation and fragmentation, integrated over the run
    # stages dropped (never run) because a job they depend on did not succeed: job,
    # reason, trace seconds
    dropped: list[dict] = field(default_factory=list)


def replay_on_ray(workload: Workload, spec: ClusterSpec, policy: Policy, time_scale: float,
                  restart_overhead_s: float = 30.0,
                  cluster: LocalRayCluster | None = None,
                  checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
                  checkpoint_dir: str | None = None,
                  during: Callable[[RayBackend], None] | None = None,
                  progress: Callable[[int], object] | None = None,
                  timeout_s: float | None = None) -> RayRun:
    """Runs ``workload`` under ``policy`` with each job Ray tasks pinned where the policy
    placed it; on ``cluster`` if given (already entered), else on a local one started and
    stopped here. Checkpoints go to ``checkpoint_dir`` (a temporary folder by default).
    ``during(backend)``, if given, is called once the first jobs run (a fault test);
    ``progress(jobs_done)`` whenever jobs have finished. ``timeout_s``: a hang guard on
    the replay's wall time (``TimeoutError``)."""
    if not time_scale > 0:
        raise ConfigError(f"time_scale must be > 0, got {time_scale}")
    durations = []
    for j in workload.jobs:
        if j.duration is None:
            raise ConfigError(f"job {j.job_id} has an unknown duration: a replay needs one")
        durations.append(float(j.duration))
    if has_dependencies(workload.jobs):
        check_dependencies(workload.jobs, workload.source or "workload")
    if cluster is None:
        with LocalRayCluster(spec) as rc:
            return replay_on_ray(workload, spec, policy, time_scale, restart_overhead_s, rc,
                                 checkpoint_interval_s, checkpoint_dir, during, progress,
                                 timeout_s)
    if checkpoint_dir is None:
        with tempfile.TemporaryDirectory(prefix="autoflow-ckpt-") as tmp:
            return replay_on_ray(workload, spec, policy, time_scale, restart_overhead_s,
                                 cluster, checkpoint_interval_s, tmp, during, progress,
                                 timeout_s)
    runner = RayRunner(cluster.node_ids, checkpoint_dir, time_scale, checkpoint_interval_s)
    backend = RayBackend(runner, durations, [j.job_id for j in workload.jobs])
    core = SchedulerCore(spec, policy, backend, DurationEstimator(),
                         restart_overhead_s=restart_overhead_s)
    backend.core = core
    backend.progress = progress
    dropped: list[dict] = []
    core.on_drop = lambda js, why: dropped.append(
        {"job": js.job.job_id, "reason": why, "t": backend.now()})
    jobs = [core.register(j) for j in workload.jobs]
    check_all_fit(core.state.copy(), jobs, spec)
    span = workload.span + (sorted(durations)[len(durations) // 2] if durations else 1.0)
    core.meter = meter = SimMeter(core.state, durations, span / 500)
    if policy.oracle:
        for js, d in zip(jobs, durations):
            js.reveal(d)
    core.prepare()
    order = sorted(jobs, key=lambda js: js.submit)
    nxt = [0]

    def arrive() -> None:
        now = backend.now()
        first = nxt[0]
        while nxt[0] < len(order) and order[nxt[0]].submit <= now:
            nxt[0] += 1
        core.submit(order[first:nxt[0]])
        if nxt[0] < len(order):
            backend.call_at(order[nxt[0]].submit, arrive)

    t0 = time.perf_counter()
    backend.t0 = time.monotonic()
    if order:
        backend.call_at(order[0].submit, arrive)
    if during is not None:
        backend.run(lambda: core.all_done() or bool(core.running), timeout_s)
        during(backend)
    backend.run(core.all_done, timeout_s)
    meter.advance(backend.now())
    decisions = sum(js.starts + js.preemptions for js in jobs)
    return RayRun(jobs, runner.segments, backend.lost, list(cluster.node_ids),
                  time.perf_counter() - t0, backend.pass_s, decisions, meter, dropped)
