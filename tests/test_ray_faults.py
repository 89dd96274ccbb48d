"""A Ray node dies while jobs run on it (its processes are killed): the jobs are
requeued and resume elsewhere from their last checkpoint, the work they lost is
measured, every job finishes and Ray's resources agree with the core's at the end."""

from __future__ import annotations

import time

import pytest
from raykit import local_cluster, need_ray, replay_on_ray

from autoflow.cluster import ClusterSpec, Node
from autoflow.job import Job
from autoflow.policies import make_policy
from autoflow.workload import Workload

ray = need_ray()

SPEC = ClusterSpec("two", [Node("a", "V100", 2), Node("b", "V100", 2)])
INTERVAL = 20.0  # trace seconds between checkpoints
SCALE = 0.02


def settled_free_gpus(expect: float) -> float:
    """Ray's count of free GPUs, once it has caught up with the tasks that ended (its
    resource view is refreshed asynchronously): polled until it reads ``expect`` or a
    minute has passed, then returned as it is."""
    deadline = time.monotonic() + 60.0
    while True:
        free = ray.available_resources().get("GPU", 0.0)
        if free == expect or time.monotonic() > deadline:
            return free
        time.sleep(0.2)


def test_jobs_of_a_dead_node_resume_from_their_checkpoints_elsewhere():
    w = Workload([Job(f"j{i}", 0.0, 300.0, 1) for i in range(4)])
    seen = {}

    def kill_node_b(backend):
        time.sleep(110 * SCALE)  # about 110 trace seconds of work: 5 checkpoints
        core = backend.core
        seen["victims"] = sorted(js.job.job_id for js in core.running.values()
                                 if any(p[0] == 1 for p in js.placement))
        rc.remove_node(1)

    with local_cluster(SPEC) as rc:
        run = replay_on_ray(w, SPEC, make_policy("fifo"), time_scale=SCALE,
                            restart_overhead_s=5.0, cluster=rc,
                            checkpoint_interval_s=INTERVAL, during=kill_node_b)
        free = settled_free_gpus(2.0)
    victims = seen["victims"]
    assert len(victims) == 2  # fifo's placement filled both nodes
    assert all(js.status == "done" for js in run.jobs)  # nothing accepted is lost
    for js in run.jobs:
        assert js.failures == (1 if js.job.job_id in victims else 0)
    assert sorted(x["job"] for x in run.lost) == victims
    for key in victims:
        segs = [s for s in run.segments if s["job"] == key]
        assert segs[0]["outcome"] == "lost" and segs[0]["node"] == 1
        resumed = segs[-1]
        assert resumed["outcome"] == "finished" and resumed["node"] == 0
        # it resumed from a checkpoint it wrote before the node died, not from zero
        assert INTERVAL <= resumed["resumed_from"] <= 160.0
        assert resumed["resumed_from"] % INTERVAL == pytest.approx(0.0, abs=1e-6)
        lost = next(x["lost_s"] for x in run.lost if x["job"] == key)
        assert 0.0 <= lost <= INTERVAL * 2  # at most a checkpoint interval, plus slack
    # nothing ran on the dead node after it died; its GPUs are gone from Ray and
    # every GPU of the live node is free again
    assert all(s["node"] == 0 for s in run.segments if s["outcome"] == "finished")
    assert free == 2.0


def test_gpu_types_are_honoured_on_a_heterogeneous_ray_cluster():
    """Jobs that allow only one GPU type run on the Ray node of that type, whose
    resources say so (``gpu-type:TYPE``)."""
    spec = ClusterSpec("mixed", [Node("v", "V100", 2), Node("a", "A100", 2)])
    jobs = [Job(f"j{i}", 2.0 * i, 40.0, 1 + i % 2, gpu_types=(("A100",), ("V100",))[i % 2])
            for i in range(6)]
    w = Workload(jobs)
    with local_cluster(spec) as rc:
        run = replay_on_ray(w, spec, make_policy("fifo"), time_scale=0.02, cluster=rc)
        resources = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    want = {j.job_id: j.gpu_types[0] for j in jobs}
    assert all(js.status == "done" for js in run.jobs)
    for seg in run.segments:
        assert seg["outcome"] == "finished"
        gpu_type = want[seg["job"]]
        assert spec.nodes[seg["node"]].gpu_type == gpu_type
        assert resources[seg["ray_node"]].get(f"gpu-type:{gpu_type}") == 2.0
