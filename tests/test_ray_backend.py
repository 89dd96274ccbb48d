"""The Ray backend on a real local two-node Ray cluster (logical GPUs): every job runs
as a Ray task on the node the policy chose, Ray never runs more GPUs on a node than it
has, preempted jobs checkpoint, stop and resume from their checkpoint, nothing is lost."""

from __future__ import annotations

import pytest
from raykit import local_cluster, need_ray, replay_on_ray

from autoflow.cluster import ClusterSpec, Node
from autoflow.job import Job
from autoflow.policies import make_policy
from autoflow.workload import Workload

ray = need_ray()

SPEC = ClusterSpec("two", [Node("a", "V100", 2), Node("b", "V100", 2)])


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(SPEC) as rc:
        yield rc


def check_run(run, workload):
    by_id = {j.job_id: j for j in workload.jobs}
    assert all(js.status == "done" for js in run.jobs)  # nothing lost
    for seg in run.segments:  # each task ran on the node the policy placed it on
        assert seg["outcome"] in ("finished", "stopped")
        assert seg["ray_node"] == run.node_ids[seg["node"]]
    for js in run.jobs:  # a job takes at least its duration, from submission
        assert js.finish - js.submit >= by_id[js.job.job_id].duration * 0.99
    # Ray never ran more GPUs on a node than it has (from the tasks' own clocks)
    for node in range(len(SPEC.nodes)):
        events = []
        for seg in run.segments:
            if seg["node"] == node:
                events += [(seg["began"], seg["gpus"]), (seg["ended"], -seg["gpus"])]
        used = 0
        for _t, d in sorted(events, key=lambda e: (e[0], e[1])):
            used += d
            assert used <= SPEC.nodes[node].gpus


def test_fifo_runs_every_job_where_it_was_placed(cluster):
    jobs = [Job(f"j{i}", 5.0 * i, 20.0 + 10.0 * (i % 4), 1 + (i % 2)) for i in range(10)]
    w = Workload(jobs)
    run = replay_on_ray(w, SPEC, make_policy("fifo"), time_scale=0.05, cluster=cluster)
    check_run(run, w)
    assert len(run.segments) == len(jobs)  # fifo never preempts: one task a job


def test_las_preemption_stops_the_task_and_the_job_resumes(cluster):
    """Two 2-GPU jobs fill the cluster; a third arrives after they passed LAS's first
    queue (threshold 20 GPU-seconds) and preempts one of them."""
    jobs = [Job("long-a", 0.0, 200.0, 2), Job("long-b", 0.0, 200.0, 2),
            Job("short", 30.0, 20.0, 2)]
    w = Workload(jobs)
    run = replay_on_ray(w, SPEC, make_policy("las:20/2000"), time_scale=0.02,
                        restart_overhead_s=5.0, cluster=cluster)
    check_run(run, w)
    pre = [js for js in run.jobs if js.preemptions]
    assert len(pre) == 1 and pre[0].job.job_id.startswith("long")
    short = next(js for js in run.jobs if js.job.job_id == "short")
    assert short.finish < pre[0].finish  # it ran in the preempted job's place
    # the preempted job checkpointed when asked to stop and resumed from that checkpoint
    segs = [s for s in run.segments if s["job"] == pre[0].job.job_id]
    assert [s["outcome"] for s in segs] == ["stopped", "finished"]
    assert segs[0]["resumed_from"] == 0.0 and segs[0]["reached"] > 20.0
    assert segs[1]["resumed_from"] == pytest.approx(segs[0]["reached"])
    assert segs[1]["reached"] == 200.0
    assert not run.lost


def test_a_policy_that_leaves_the_cluster_idle_is_an_error_not_a_hang(cluster):
    from autoflow.core.scheduler import SchedulingError
    from autoflow.placers import make_placer
    from autoflow.policies.base import Policy

    class Idle(Policy):
        name = "idle"

        def schedule(self, ctx):
            pass  # never starts anything

    w = Workload([Job("j0", 0.0, 10.0, 1)])
    with pytest.raises(SchedulingError, match="idle with 1 job"):
        replay_on_ray(w, SPEC, Idle(make_placer("best-fit")), time_scale=0.05, cluster=cluster)


def test_shared_gpus_run_side_by_side_as_fractional_ray_gpus(cluster):
    """Six half-GPU jobs fit three to a node at once (2 GPUs each): Ray runs them side by
    side with num_gpus=0.5, where whole-GPU tasks could run only two to a node."""
    jobs = [Job(f"h{i}", 0.0, 100.0, 1, 500) for i in range(6)]
    w = Workload(jobs)
    run = replay_on_ray(w, SPEC, make_policy("fifo"), time_scale=0.02, cluster=cluster)
    assert all(js.status == "done" for js in run.jobs)
    # none waited for another: all six started before any of them ended
    assert max(js.first_start for js in run.jobs) < min(js.finish for js in run.jobs)
    busiest = 0
    for node in range(2):
        spans = [(s["began"], s["ended"]) for s in run.segments if s["node"] == node]
        busiest = max(busiest, max(sum(b <= t < e for b, e in spans) for t, _ in spans))
    assert busiest >= 3  # more tasks at once on one node than it has GPUs


def test_a_gang_over_two_nodes_starts_as_one_placement_group(cluster):
    """A 4-GPU job on two 2-GPU nodes: one task per node, both in one placement group
    whose bundles are held to the nodes the policy chose; the group is removed after."""
    from ray.util.placement_group import placement_group_table

    w = Workload([Job("gang", 0.0, 60.0, 4), Job("solo", 5.0, 30.0, 1)])
    run = replay_on_ray(w, SPEC, make_policy("fifo"), time_scale=0.02, cluster=cluster)
    check_run(run, w)
    parts = [s for s in run.segments if s["job"] == "gang"]
    assert sorted(s["node"] for s in parts) == [0, 1] and {s["rank"] for s in parts} == {0, 1}
    pgs = {s["placement_group"] for s in parts}
    assert len(pgs) == 1
    assert placement_group_table()[pgs.pop()]["state"] == "REMOVED"
    assert "placement_group" not in next(s for s in run.segments if s["job"] == "solo")
