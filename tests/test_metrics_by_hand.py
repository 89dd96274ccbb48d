"""``autoflow.metrics.summarize`` against values worked out by hand on tiny traces."""

from __future__ import annotations

import pytest

from autoflow.cluster import ClusterSpec, Node
from autoflow.job import INFERENCE, Job
from autoflow.metrics import summarize
from autoflow.policies import make_policy
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.workload import Workload


def metrics(policy: str, jobs: list[Job], nodes: list[Node], **cfg) -> dict:
    result = Simulator(Workload(jobs), ClusterSpec("hand", nodes), make_policy(policy),
                       SimConfig(check_invariants=True, **cfg)).run()
    return summarize(result)


def test_jct_wait_slowdown_makespan_and_allocation_by_hand():
    # One node of 2 GPUs, FIFO; the trace starts at 100:
    #   a: submit 100, 2 GPUs, 100 s -> runs [100, 200]  JCT 100  wait  0
    #   b: submit 110, 1 GPU,   50 s -> runs [200, 250]  JCT 140  wait 90
    #   c: submit 120, 1 GPU,  200 s -> runs [200, 400]  JCT 280  wait 80
    #   d: submit 390, 2 GPUs,   5 s -> runs [400, 405]  JCT  15  wait 10
    jobs = [Job("a", 100, 100.0, num_gpus=2), Job("b", 110, 50.0), Job("c", 120, 200.0),
            Job("d", 390, 5.0, num_gpus=2)]
    m = metrics("fifo+first-fit", jobs, [Node("n", "V100", 2)])
    assert m["jobs"] == 4
    assert m["avg_jct"] == pytest.approx((100 + 140 + 280 + 15) / 4)  # 133.75
    # percentiles interpolate linearly over the sorted JCTs 15, 100, 140, 280:
    # p50 at rank 1.5 -> (100 + 140) / 2; p99 at rank 2.97 -> 140 + 0.97 x 140
    assert m["p50_jct"] == pytest.approx(120.0)
    assert m["p99_jct"] == pytest.approx(140 + 0.97 * 140)  # 275.8
    assert m["avg_wait"] == pytest.approx((0 + 90 + 80 + 10) / 4)  # 45
    assert m["p99_wait"] == pytest.approx(80 + 0.97 * 10)  # sorted 0, 10, 80, 90
    # bounded slowdown max(1, JCT / max(duration, 10 s)): a 1, b 2.8, c 1.4, d 15/10
    assert m["avg_bounded_slowdown"] == pytest.approx((1 + 2.8 + 1.4 + 1.5) / 4)  # 1.675
    assert m["makespan"] == pytest.approx(305.0)  # last finish 405 - first submit 100
    # GPU-seconds allocated 2 x 100 + 50 + 200 + 2 x 5 = 460 of 2 GPUs x 305 s
    assert m["gpu_allocation"] == pytest.approx(460 / 610)
    assert m["fragmentation"] == 0.0  # whole GPUs only: no partly used GPU ever
    assert m["preemptions"] == 0 and m["slo_violations"] == 0 and m["inference_jobs"] == 0


def test_wait_counts_time_spent_preempted():
    # One GPU, SRTF (oracle), restart overhead 30 s:
    #   long: submit 0, 1000 s; preempted at 100 by short (50 s left vs 900 s),
    #         restarts at 150: 30 s overhead + 900 s -> finish 1080
    #   short: runs [100, 150]
    # long: JCT 1080, held the GPU 100 + 930 = 1030 s -> waited 50 s; short waited 0
    jobs = [Job("long", 0, 1000.0), Job("short", 100, 50.0)]
    m = metrics("srtf-oracle+first-fit", jobs, [Node("n", "V100", 1)],
                restart_overhead_s=30.0)
    assert m["preemptions"] == 1
    assert m["avg_jct"] == pytest.approx((1080 + 50) / 2)
    assert m["avg_wait"] == pytest.approx((50 + 0) / 2)
    assert m["makespan"] == pytest.approx(1080.0)
    # the GPU was held every second (overhead included): 1030 + 50 = 1080 of 1 x 1080
    assert m["gpu_allocation"] == pytest.approx(1.0)
    # slowdown: long 1080 / 1000, short 50 / 50 = 1
    assert m["avg_bounded_slowdown"] == pytest.approx((1.08 + 1.0) / 2)


def test_inference_slo_is_judged_at_start_not_at_completion():
    # One GPU, FIFO. The SLO bounds the start delay (start - submit), not the JCT.
    #   t:  training,  submit 0,    1000 s -> runs [0, 1000]
    #   i1: SLO 60,    submit 940,    50 s -> starts 1000: delay 60, met (JCT 110)
    #   i2: no SLO (the default, 60 s), submit 950, 50 s -> starts 1050: delay 100, missed
    #   i3: SLO 60,    submit 2000, 5000 s -> starts 2000: delay 0, met (JCT 5000)
    jobs = [Job("t", 0, 1000.0),
            Job("i1", 940, 50.0, kind=INFERENCE, slo_s=60.0),
            Job("i2", 950, 50.0, kind=INFERENCE),
            Job("i3", 2000, 5000.0, kind=INFERENCE, slo_s=60.0)]
    m = metrics("fifo+first-fit", jobs, [Node("n", "V100", 1)], default_slo_s=60.0)
    assert m["inference_jobs"] == 3
    assert m["slo_violations"] == 1  # i2 only


def test_default_slo_applies_per_run_and_leaves_the_workload_untouched():
    # One GPU, FIFO: 'i' (inference, no SLO) submitted at 900 starts at 1000: delay 100 s,
    # a miss under a 60 s default, met under a 200 s default
    w = Workload([Job("t", 0, 1000.0), Job("i", 900, 50.0, kind=INFERENCE)])
    cluster = ClusterSpec("hand", [Node("n", "V100", 1)])
    runs = {d: summarize(Simulator(w, cluster, make_policy("fifo"),
                                   SimConfig(default_slo_s=d)).run())["slo_violations"]
            for d in (60.0, 200.0)}
    assert w.jobs[1].slo_s is None
    assert runs == {60.0: 1, 200.0: 0}
