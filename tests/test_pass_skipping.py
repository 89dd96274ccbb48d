"""Passes skip jobs that cannot start (whole shapes at a time, and the reachable state of
preemptive passes); skipping must never change what gets scheduled."""

from __future__ import annotations

import pytest
from simdata import mixed_workload, small_cluster

from autoflow.cluster import ClusterSpec, Node
from autoflow.core.jobstate import JobState
from autoflow.core.queue import SortedQueue
from autoflow.feasibility import shape_of
from autoflow.job import Job
from autoflow.policies import make_policy, preemptive
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.state import ClusterState
from autoflow.workload import Workload


def _queue_of(specs):
    state = ClusterState(small_cluster())
    q = SortedQueue(lambda js: (js.submit,), shape=lambda js: shape_of(state, js.req))
    jss = []
    for i, (t, gpus, cpu) in enumerate(specs):
        job = Job(f"j{i}", t, 10.0, num_gpus=gpus, cpu_milli=cpu)
        js = JobState(i, job, state.compile(job))
        q.add(js)
        jss.append(js)
    return q, jss


def test_iter_open_keeps_queue_order_and_skips_closed_shapes():
    q, jss = _queue_of([(5, 1, 0), (1, 2, 0), (3, 1, 0), (2, 8, 0), (4, 2, 0)])
    assert [js.idx for js in q.iter_open(lambda s: True)] == [1, 3, 2, 4, 0]
    assert [js.idx for js in q.iter_open(lambda s: s[1] != 2)] == [3, 2, 0]
    # after a given key; jobs that leave meanwhile are not yielded
    seen = []
    for js in q.iter_open(lambda s: True, after=q.key_of(jss[3])):
        seen.append(js.idx)
        if js.idx == 2:
            q.remove(jss[4])
    assert seen == [2, 0]


def test_iter_open_asks_before_each_job_and_drops_a_closed_shape_for_good():
    q, _ = _queue_of([(1, 1, 0), (2, 2, 0), (3, 1, 0), (4, 2, 0)])
    asked = []
    closed: set = set()

    def is_open(s):
        asked.append(s[1])
        return s not in closed

    out = []
    for js in q.iter_open(is_open):
        out.append(js.idx)
        closed.add(shape_of(ClusterState(small_cluster()), js.req))  # close after one job
    assert out == [0, 1]
    assert asked.count(1) <= 3 and asked.count(2) <= 3


def _timeline(policy: str, workload: Workload, cluster: ClusterSpec):
    res = Simulator(workload, cluster, make_policy(policy),
                    SimConfig(seed=3, check_invariants=True)).run()
    return [(js.job.job_id, js.first_start, js.finish, js.preemptions) for js in res.jobs]


def _crowded() -> tuple[Workload, ClusterSpec]:
    """A long queue on a small cluster: most jobs wait, most passes skip most of them."""
    w = mixed_workload(n=300, seed=11, span=1500.0)
    nodes = [Node("v0", "V100", 8, 64000, 262144), Node("v1", "V100", 8, 24000, 262144),
             Node("t0", "T4", 2, 16000, 65536), Node("t1", "T4", 2, 16000, 65536)]
    return w, ClusterSpec("crowded", nodes)


@pytest.mark.parametrize("policy", ["sjf", "easy-backfill", "las", "srtf-oracle",
                                    "sjf+fgd", "las+first-fit"])
def test_skipping_never_changes_the_schedule(policy, monkeypatch):
    w, c = _crowded()
    fast = _timeline(policy, w, c)
    plain_iter = SortedQueue.iter_open

    def no_skipping(self, is_open, after=None):
        return plain_iter(self, lambda s: True, after)

    monkeypatch.setattr(SortedQueue, "iter_open", no_skipping)
    monkeypatch.setattr(preemptive._Reachable, "LAZY", 10**9)
    assert _timeline(policy, w, c) == fast


def test_a_gang_across_nodes_is_not_rejected_for_its_total_cpu():
    """A 16-GPU gang asks 96 cores in all, more than one node has, but only 48 per node."""
    nodes = [Node(f"n{i}", "V100", 8, 64000, 0) for i in range(2)]
    w = Workload([Job("gang", 0.0, 100.0, num_gpus=16, cpu_milli=96000)], source="test")
    res = Simulator(w, ClusterSpec("two", nodes), make_policy("sjf")).run()
    assert res.jobs[0].first_start == 0.0
