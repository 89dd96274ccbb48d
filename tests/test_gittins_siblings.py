"""gittins-siblings: completed siblings bring a job forward, never hold it back."""

from __future__ import annotations

import random

import numpy as np
import pytest

from autoflow.cluster import ClusterSpec, Node
from autoflow.core.jobstate import DONE, JobState
from autoflow.job import Job
from autoflow.metrics import summarize
from autoflow.policies import make_policy
from autoflow.policies.gittins_siblings import TAIL, WINDOW
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.state import Req
from autoflow.workload import Workload


def run(policy: str, jobs: list[Job], gpus: int):
    r = Simulator(Workload(jobs), ClusterSpec("c", [Node("n", "V100", gpus)]),
                  make_policy(policy), SimConfig(restart_overhead_s=0.0,
                                                 check_invariants=True)).run()
    return summarize(r)["avg_jct"], r


def finishes(r) -> dict[str, float]:
    return {js.job.job_id: js.finish for js in r.jobs}


def test_without_siblings_it_is_gittins():
    """Jobs that never share a GPU count within the window: the same schedule."""
    rng = random.Random(5)
    jobs = [Job(f"j{i}", i * (WINDOW + 10.0), rng.lognormvariate(8, 1.5), 1 + i % 4)
            for i in range(60)]
    a, ra = run("gittins", jobs, 4)
    b, rb = run("gittins-siblings", jobs, 4)
    assert a == b and finishes(ra) == finishes(rb)


def two_users(n: int, seed: int) -> list[Job]:
    """Two users each submitting a 1-GPU job every 10 minutes: user a's run about 300 s,
    user b's about 3,000 s. Both sizes are in gittins's first bin, where it cannot tell
    them apart; their completed siblings can."""
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        t = i * 600.0
        jobs.append(Job(f"a{i}", t + rng.uniform(0, 300), 300 * rng.uniform(0.9, 1.1), 1,
                        user="a"))
        jobs.append(Job(f"b{i}", t + rng.uniform(0, 300), 3000 * rng.uniform(0.9, 1.1), 1,
                        user="b"))
    return sorted(jobs, key=lambda j: j.submit_time)


def test_short_siblings_bring_jobs_forward():
    """Overloaded (5 GPUs for 5.5 GPUs of work): gittins runs the two users' jobs in
    submission order; with their siblings' sizes the short jobs go first, close to the
    oracle's shortest-remaining-first."""
    jobs = two_users(100, seed=1)
    git, _ = run("gittins", jobs, 5)
    sib, _ = run("gittins-siblings", jobs, 5)
    oracle, _ = run("srtf-oracle", jobs, 5)
    assert sib < 0.8 * git
    assert sib < 1.1 * oracle


def state(idx: int, job: Job) -> JobState:
    return JobState(idx, job, Req(job.num_gpus, 1000, 0, 0, 0))


class Queue:
    """A stand-in for the waiting queue: records the jobs re-ranked."""

    def __init__(self, jobs=()):
        self.jobs, self.readded = list(jobs), []

    def __contains__(self, js):
        return js in self.jobs

    def remove(self, js):
        self.jobs.remove(js)

    def add(self, js):
        self.jobs.append(js)
        self.readded.append(js.job.job_id)

    def rekey(self):
        pass


class Ctx:
    def __init__(self, waiting):
        self.waiting = waiting


def test_long_siblings_do_not_hold_a_job_back_short_ones_bring_it_forward():
    pol = make_policy("gittins-siblings")
    pol.sizes = [100.0, 200.0, 50000.0]  # other completed jobs' sizes
    pol.table = np.asarray(pol.sizes)
    w = state(1, Job("w", 60.0, 100.0, 1, user="u"))
    other = state(2, Job("x", 60.0, 100.0, 1, user="v"))  # another user: not a sibling
    ctx = Ctx(Queue([w, other]))
    before = pol.queue_key(w)[0]
    assert before == pol.rank(0.0) and pol.siblings(w) is None
    long_done = state(0, Job("done", 0.0, 40000.0, 1, user="u"))
    long_done.status = DONE
    pol.on_finish(ctx, long_done)
    assert ctx.waiting.readded == ["w"]  # its waiting sibling was ranked again
    assert pol.siblings(w) is not None  # it has a sibling now ...
    assert pol.queue_key(w)[0] == pol.rank(0.0)  # ... and gittins's rank
    short_done = state(3, Job("short", 120.0, 50.0, 1, user="u"))
    short_done.status = DONE
    pol.on_finish(ctx, short_done)
    assert pol.queue_key(w)[0] < pol.rank(0.0)  # a short sibling brings it forward
    assert pol.siblings(other) is None


def test_a_job_past_its_siblings_falls_back_to_gittins():
    """A job predicted short by its sibling that runs far longer is demoted: it keeps its
    sibling rank only up to TAIL times the sibling's size."""
    pol = make_policy("gittins-siblings")
    pol.table = np.asarray([1000.0, 5000.0, 90000.0])
    js = state(0, Job("j", 0.0, 1.0, 1))
    pol.sib[0] = np.asarray([300.0, TAIL * 300.0])
    assert pol.job_rank(js, 0.0) < pol.rank(0.0)  # brought forward
    assert pol.job_rank(js, TAIL * 300.0 + 1) == pol.rank(TAIL * 300.0 + 1)  # gittins's again


def test_it_reads_no_true_duration_before_a_job_completes():
    """Siblings are completed jobs only: the core raises OracleError on any read of a
    duration not yet revealed, and the run is deterministic."""
    jobs = two_users(60, seed=7)
    a, ra = run("gittins-siblings", jobs, 5)
    b, rb = run("gittins-siblings", jobs, 5)
    assert a == b and finishes(ra) == finishes(rb)
    assert not make_policy("gittins-siblings").oracle


def test_index_lines_are_the_reverse_index():
    from autoflow.policies.gittins import reverse_index
    from autoflow.policies.gittins_siblings import index_lines

    rng = np.random.default_rng(4)
    for _ in range(200):
        sizes = np.sort(rng.lognormal(6, 2, rng.integers(1, 12)))
        k = int(rng.integers(0, len(sizes)))
        lo = sizes[k - 1] if k else 0.0
        a = float(rng.uniform(lo, sizes[k]))
        if a >= sizes[k]:
            continue
        got = min(c - m * a for c, m in index_lines(sizes[k:].tolist()))
        assert got == pytest.approx(reverse_index(sizes, a), rel=1e-9, abs=1e-6)
