"""Simulator invariants, parametrized over every registered policy and placer."""

from __future__ import annotations

import pytest
from simdata import mixed_workload, small_cluster

from autoflow.cluster import ClusterSpec, Node
from autoflow.core.jobstate import DONE
from autoflow.errors import ClusterError
from autoflow.job import INFERENCE, Job
from autoflow.metrics import summarize
from autoflow.placers import PLACERS
from autoflow.policies import POLICIES, make_policy
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.workload import Workload

ALL = [f"{p}+{pl}" for p in POLICIES for pl in PLACERS]


def run(policy: str, workload=None, cluster=None, **cfg):
    sim = Simulator(workload or mixed_workload(), cluster or small_cluster(),
                    make_policy(policy), SimConfig(check_invariants=True, **cfg))
    return sim, sim.run()


@pytest.mark.parametrize("policy", ALL)
def test_invariants_hold_for_every_policy_and_placer(policy):
    sim, result = run(policy, failure_rate_per_node_day=20.0, repair_time_s=600.0)
    assert all(js.status == DONE for js in result.jobs)  # every job finishes
    for js in result.jobs:
        assert js.progress == pytest.approx(js.duration)
        assert js.submit <= js.first_start <= js.finish
        assert js.run_seconds >= js.duration - 1e-6  # never less work than the job needs
        assert js.starts == 1 + js.preemptions + js.failures  # one start per run segment
        if js.job.kind == INFERENCE:
            assert js.preemptions == 0  # inference is never preempted
    # GPU-time is conserved: what jobs received is what the cluster allocated
    got = sum(js.gpu_seconds for js in result.jobs)
    assert got == pytest.approx(result.allocated_gpu_seconds, rel=1e-9)
    assert sim.state.used_milli == 0 and not sim.running
    if not make_policy(policy).preemptive:
        assert sum(js.preemptions for js in result.jobs) == 0


@pytest.mark.parametrize("policy", list(POLICIES))
def test_same_seed_same_results(policy):
    a = summarize(run(policy, failure_rate_per_node_day=10.0)[1])
    b = summarize(run(policy, failure_rate_per_node_day=10.0)[1])
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b


def test_failures_depend_on_the_seed():
    a = run("fifo", failure_rate_per_node_day=10.0, seed=1)[1]
    b = run("fifo", failure_rate_per_node_day=10.0, seed=2)[1]
    assert [js.finish for js in a.jobs] != [js.finish for js in b.jobs]


def test_no_failures_no_preemption_means_exact_run_times():
    _, result = run("sjf")
    for js in result.jobs:
        assert js.run_seconds == pytest.approx(js.duration)
        assert js.finish - js.first_start == pytest.approx(js.duration)


def test_failure_loses_work_since_checkpoint_and_restarts():
    cluster = ClusterSpec("one", [Node("n0", "V100", 1)])
    w = Workload([Job("a", 0.0, 10_000.0)])
    sim = Simulator(w, cluster, make_policy("fifo"),
                    SimConfig(checkpoint_interval_s=1000.0, restart_overhead_s=50.0,
                              repair_time_s=100.0))
    sim.env.timeout(2500).callbacks.append(lambda _e: sim.failures.fail(0))
    result = sim.run()
    js = result.jobs[0]
    assert js.failures == 1 and js.starts == 2
    # ran 2500 s, kept 2000 s of progress (last checkpoint), down 100 s, then 50 s restart
    assert js.finish == pytest.approx(2500 + 100 + 50 + 8000)


def test_gang_wider_than_a_node_takes_whole_nodes():
    cluster = ClusterSpec("c", [Node(f"n{i}", "V100", 8) for i in range(3)])
    w = Workload([Job("small", 0.0, 100.0, num_gpus=1), Job("wide", 1.0, 100.0, num_gpus=16)])
    sim = Simulator(w, cluster, make_policy("fifo"), SimConfig(check_invariants=True))
    result = sim.run()
    wide = result.jobs[1]
    assert wide.first_start == 1.0  # two idle nodes remain beside the one in use
    # the 1-GPU job sits on one node; the gang took the other two whole
    assert len({js.finish for js in result.jobs}) == 2


def test_gang_within_a_node_waits_rather_than_split():
    cluster = ClusterSpec("c", [Node(f"n{i}", "V100", 4) for i in range(2)])
    w = Workload([Job("a", 0.0, 100.0, num_gpus=2), Job("b", 0.0, 100.0, num_gpus=2),
                  Job("c", 1.0, 100.0, num_gpus=4)])
    result = Simulator(w, cluster, make_policy("fifo+spread"), SimConfig()).run()
    # spread put a and b on different nodes: 4 GPUs are free, but not on one node
    assert result.jobs[2].first_start == pytest.approx(100.0)


def test_fractional_jobs_share_one_gpu():
    cluster = ClusterSpec("c", [Node("n0", "T4", 1)])
    w = Workload([Job(f"s{i}", 0.0, 100.0, num_gpus=1, gpu_milli=300) for i in range(3)]
                 + [Job("x", 0.0, 100.0, num_gpus=1, gpu_milli=300)])
    result = Simulator(w, cluster, make_policy("fifo"), SimConfig(check_invariants=True)).run()
    starts = sorted(js.first_start for js in result.jobs)
    assert starts == [0.0, 0.0, 0.0, 100.0]  # three shares of 300 fit, the fourth waits


def test_gpu_type_constraint_is_respected():
    cluster = ClusterSpec("c", [Node("v", "V100", 1), Node("t", "T4", 1)])
    w = Workload([Job("a", 0.0, 100.0, gpu_types=("T4",)), Job("b", 0.0, 100.0,
                                                               gpu_types=("T4",))])
    sim = Simulator(w, cluster, make_policy("sjf"), SimConfig())
    result = sim.run()
    assert sorted(js.first_start for js in result.jobs) == [0.0, 100.0]


def test_job_that_can_never_fit_is_a_clear_error():
    cluster = ClusterSpec("c", [Node("v", "V100", 4)])
    w = Workload([Job("big", 0.0, 10.0, num_gpus=8)])
    with pytest.raises(ClusterError, match="can never run"):
        Simulator(w, cluster, make_policy("fifo"))


def test_restart_overhead_is_paid_after_preemption():
    cluster = ClusterSpec("c", [Node("n0", "V100", 1)])
    long = Job("long", 0.0, 100_000.0)
    short = Job("short", 10_000.0, 100.0)
    result = Simulator(Workload([long, short]), cluster, make_policy("las"),
                       SimConfig(restart_overhead_s=500.0)).run()
    lg, sh = result.jobs
    assert lg.preemptions == 1
    assert sh.first_start == pytest.approx(10_000.0)  # preempted the 1-GPU-hour+ job
    assert lg.finish == pytest.approx(100_000 + 100 + 500)
    assert lg.run_seconds == pytest.approx(100_000 + 500)


def test_inference_slo_is_checked_against_start_delay():
    cluster = ClusterSpec("c", [Node("n0", "V100", 1)])
    w = Workload([Job("t", 0.0, 1000.0), Job("i", 1.0, 50.0, kind=INFERENCE, slo_s=60.0),
                  Job("i2", 2.0, 50.0, kind=INFERENCE, slo_s=5000.0)])
    m = summarize(Simulator(w, cluster, make_policy("fifo"), SimConfig()).run())
    assert m["slo_violations"] == 1 and m["inference_jobs"] == 2
