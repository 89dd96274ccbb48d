"""Issue 15, section 2: a simulation that node failures keep from making progress ends
with a clear error naming a stuck job instead of running forever."""

from __future__ import annotations

import pytest
from hardening import assert_one_line_error, invoke

from autoflow.cluster import load_cluster
from autoflow.errors import ClusterError
from autoflow.evaluate import evaluate
from autoflow.job import Job
from autoflow.sim.failures import STUCK_REPAIR_CYCLES
from autoflow.sim.simulator import SimConfig
from autoflow.workload import Workload


def _gang_workload() -> Workload:
    # the 64-GPU gang needs all 8 nodes of philly-64 up at once
    return Workload([Job("gang", 0.0, 3600.0, num_gpus=64), Job("small", 10.0, 600.0)])


def test_a_gang_that_can_never_start_ends_the_run_naming_it():
    cfg = SimConfig(failure_rate_per_node_day=100, repair_time_s=3600)
    with pytest.raises(ClusterError, match=r"no progress .* job gang \(64 GPU"):
        evaluate("fifo", _gang_workload(), load_cluster("philly-64"), cfg, seed=0)


def test_jobs_killed_before_their_checkpoint_end_the_run():
    w = Workload([Job("long", 0.0, 10 * 86400.0, num_gpus=8)])
    cfg = SimConfig(failure_rate_per_node_day=100, repair_time_s=600,
                    checkpoint_interval_s=86400)
    with pytest.raises(ClusterError, match="job long"):
        evaluate("fifo", w, load_cluster("philly-64"), cfg, seed=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_moderate_failures_and_long_jobs_still_finish(seed):
    # a 20-day job with rare failures: no progress is seen between checkpoints for
    # longer than the repair cycles, yet the run is not stopped
    w = Workload([Job("long", 0.0, 20 * 86400.0, num_gpus=8), Job("s", 5.0, 60.0)])
    cfg = SimConfig(failure_rate_per_node_day=0.05, repair_time_s=60,
                    checkpoint_interval_s=4 * 3600)
    ev = evaluate("fifo", w, load_cluster("philly-64"), cfg, seed=seed)
    assert ev.metrics["jobs"] == 2
    assert STUCK_REPAIR_CYCLES * 60 < 4 * 3600  # the window is the checkpoint's, not 20 x 60 s


def test_bench_reports_the_stuck_run_in_one_line(tmp_path):
    p = tmp_path / "gang.csv"
    p.write_text("job_id,submission_time,duration,num_gpu\ngang,0,3600,64\nsmall,10,600,1\n")
    r = invoke("bench", "--trace", f"itp:{p}", "--policies", "fifo", "--failure-rate", "100",
               "--out", tmp_path / "o")
    assert_one_line_error(r, "no progress", "job gang", alone=False)
