"""Replays a workload as real Ray tasks: the scheduler core, the policy, and the Ray
backend (``RayBackend``) on a local multi-node Ray cluster shaped like the cluster spec.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..cluster import ClusterSpec
from ..core.estimator import DurationEstimator
from ..core.jobstate import JobState
from ..core.scheduler import SchedulerCore
from ..errors import ConfigError
from ..feasibility import check_all_fit
from ..policies.base import Policy
from ..workload import Workload
from .local_ray import LocalRayCluster
from .ray_backend import RayBackend


@dataclass
class RayRun:
    jobs: list[JobState]  # the core's records: submit, first start, finish (trace seconds)
    segments: list[dict]  # every task that ran to its end: job, node, ray node, wall times
    node_ids: list[str]  # Ray node id of each cluster node
    wall_s: float


def replay_on_ray(workload: Workload, spec: ClusterSpec, policy: Policy, time_scale: float,
                  restart_overhead_s: float = 30.0,
                  cluster: LocalRayCluster | None = None) -> RayRun:
    """Runs ``workload`` under ``policy`` with each job a Ray task pinned where the policy
    placed it; on ``cluster`` if given (already entered), else on a local one started and
    stopped here."""
    durations = []
    for j in workload.jobs:
        if j.duration is None:
            raise ConfigError(f"job {j.job_id} has an unknown duration: a replay needs one")
        durations.append(float(j.duration))
    if cluster is None:
        with LocalRayCluster(spec) as rc:
            return replay_on_ray(workload, spec, policy, time_scale, restart_overhead_s, rc)
    backend = RayBackend(cluster.node_ids, durations, time_scale)
    core = SchedulerCore(spec, policy, backend, DurationEstimator(),
                         restart_overhead_s=restart_overhead_s)
    backend.core = core
    jobs = [core.register(j) for j in workload.jobs]
    check_all_fit(core.state.copy(), jobs, spec)
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
    backend.run(core.all_done)
    return RayRun(jobs, backend.segments, list(cluster.node_ids), time.perf_counter() - t0)
