"""``gittins``: Tiresias' discretized Gittins index over attained GPU-time, from the
sizes of completed jobs only. Like LAS on heavy tails, like FIFO on light ones."""

from __future__ import annotations

import random

import numpy as np
import pytest

from autoflow.cluster import ClusterSpec, Node
from autoflow.job import Job
from autoflow.metrics import summarize
from autoflow.policies import make_policy
from autoflow.policies.gittins import INF, bin_of, bin_start, reverse_index
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.workload import Workload


def brute_rank(sizes, a):
    """min over quanta D of E[min(S-a, D) | S > a] / P(S-a <= D | S > a), written out."""
    rest = [s - a for s in sizes if s > a]
    if not rest:
        return INF
    best = INF
    for d in rest:
        p = sum(r <= d for r in rest) / len(rest)
        e = sum(min(r, d) for r in rest) / len(rest)
        best = min(best, e / p)
    return best


@pytest.mark.parametrize("seed", range(5))
def test_reverse_index_is_the_gittins_definition(seed):
    rng = random.Random(seed)
    sizes = sorted(rng.lognormvariate(6, 2) for _ in range(40))
    for a in (0.0, 50.0, 500.0, 5000.0, sizes[-1] + 1):
        assert reverse_index(np.asarray(sizes), a) == pytest.approx(brute_rank(sizes, a))


def test_the_index_follows_the_shape_of_the_sizes():
    light = np.asarray([1000.0] * 50)  # every job the same size: one that ran is nearer the end
    assert reverse_index(light, 0.0) == 1000.0 and reverse_index(light, 600.0) == 400.0
    heavy = np.asarray([10.0] * 45 + [100000.0] * 5)  # most short, a few very long
    # a job past the short ones is likely a long one: its rank gets worse (LAS-like)
    assert reverse_index(heavy, 0.0) < 20.0 < reverse_index(heavy, 20.0)
    assert reverse_index(heavy, 200000.0) == INF


def test_bins_are_las_queues():
    assert [bin_of(x) for x in (0, 3599.9, 3600, 35999, 36000, 1e9)] == [0, 0, 1, 1, 2, 2]
    assert [bin_start(b) for b in range(3)] == [0.0, 3600.0, 36000.0]


def run(policy: str, jobs: list[Job], gpus: int):
    r = Simulator(Workload(jobs), ClusterSpec("c", [Node("n", "V100", gpus)]),
                  make_policy(policy), SimConfig(restart_overhead_s=0.0,
                                                 check_invariants=True)).run()
    return summarize(r)["avg_jct"], r


def test_light_tails_run_like_fifo_heavy_tails_like_las():
    rng = random.Random(3)
    # light: 4-GPU jobs of 2,000 s +- 10% (8,000 GPU-s: past LAS's first threshold),
    # arriving faster than 8 GPUs serve them
    light = [Job(f"l{i}", i * 900.0, 2000.0 * rng.uniform(0.9, 1.1), 4) for i in range(80)]
    fifo, _ = run("fifo", light, 8)
    las, _ = run("las", light, 8)
    git, _ = run("gittins", light, 8)
    assert git <= fifo * 1.02 < las  # LAS time-slices equal jobs; gittins lets them finish
    # heavy: mostly short jobs with a few very long ones
    heavy = [Job(f"h{i}", i * 60.0, 100000.0 if i % 10 == 0 else rng.uniform(100, 600), 1)
             for i in range(200)]
    fifo, _ = run("fifo", heavy, 4)
    las, _ = run("las", heavy, 4)
    git, _ = run("gittins", heavy, 4)
    assert git <= las * 1.05 and git < 0.5 * fifo  # short jobs get past the long ones


def test_it_reads_no_true_duration_before_a_job_completes():
    """Only completed jobs' sizes enter the index: a run with every duration hidden until
    completion (the core raises OracleError otherwise) and the same schedule twice."""
    rng = random.Random(1)
    jobs = [Job(f"j{i}", i * 100.0, rng.lognormvariate(6, 1.5), rng.choice((1, 2, 4)))
            for i in range(150)]
    a, ra = run("gittins", jobs, 8)
    b, rb = run("gittins", jobs, 8)
    assert a == b and [js.finish for js in ra.jobs] == [js.finish for js in rb.jobs]
    assert not make_policy("gittins").oracle
