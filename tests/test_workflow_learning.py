"""Learning on pipelines (issue 21): the adaptive scheduler's ``wct`` objective charges
units (a workflow as one, from its submission to its last stage's end), its candidates
can include the workflow heuristics, and ``autoflow train`` checks both flags."""

from __future__ import annotations

import numpy as np
import pytest
from autoflow.agents.adaptive_env import RuleChoiceEnv
from autoflow.envs.baseline import BaselineCost, mean_unit_time, unit_cost, units
from hardening import assert_one_line_error, invoke

from autoflow.cluster import ClusterSpec, Node
from autoflow.errors import ConfigError
from autoflow.evaluate import evaluate
from autoflow.job import Job
from autoflow.sim.simulator import SimConfig
from autoflow.workload import Workload

ONE = ClusterSpec("one", [Node("n0", "a100", 1)])


def chain() -> Workload:
    """On one GPU under fifo: a (0-100) -> b (100-150) of workflow w; x (150-160)."""
    return Workload([Job("a", 0.0, 100.0, workflow_id="w"),
                     Job("b", 0.0, 50.0, workflow_id="w", depends_on=("a",)),
                     Job("x", 10.0, 10.0)])


def test_units_charge_a_workflow_once():
    res = evaluate("fifo", chain(), ONE).result
    assert sorted(len(v) for v in units(res.jobs).values()) == [1, 2]
    # w: 0..150 (150 s); x: 10..160 (150 s) — a job-level sum would be 100 + 150 + 150
    assert unit_cost(res.jobs, 1e9) == 300.0
    assert mean_unit_time(res.jobs) == 150.0
    assert unit_cost(res.jobs, 50.0) == 50.0 + 40.0  # both units in the system so far
    ref = BaselineCost(chain(), ONE, "fifo", SimConfig(), "wct")
    assert ref.total == 300.0 and ref.integral(50.0) == 90.0


class _One:
    """A sampler that always hands out the same episode."""

    def __init__(self, w, c):
        self.w, self.c = w, c

    def sample(self, rng):
        return self.w, self.c


def test_the_wct_objective_sums_to_the_unit_time_ratio():
    rng = np.random.default_rng(0)
    jobs = []
    for p in range(12):
        t = float(p * 400)
        jobs += [Job(f"p{p}-a", t, float(rng.uniform(100, 900)), workflow_id=f"p{p}"),
                 Job(f"p{p}-b", t, float(rng.uniform(100, 900)), num_gpus=2,
                     workflow_id=f"p{p}", depends_on=(f"p{p}-a",))]
    jobs += [Job(f"x{i}", float(rng.uniform(0, 4800)), float(rng.lognormal(6, 1.5)))
             for i in range(60)]
    two = ClusterSpec("two", [Node("n0", "a100", 2)])
    env = RuleChoiceEnv(_One(Workload(jobs), two), ("fifo", "las", "cp-first", "srw"),
                        "las", objective="wct")
    env.reset(seed=1)
    total, done = 0.0, False
    while not done:
        _, r, done, _, _ = env.step(2)
        total += r
    assert total == pytest.approx(1.0 - env.ratio(), abs=1e-9)
    las = evaluate("las", Workload(jobs), two).result
    assert env.ref.total == pytest.approx(unit_cost(las.jobs, 1e12))
    assert env.ratio() == pytest.approx(mean_unit_time(env.sim.jobs) / mean_unit_time(las.jobs))
    with pytest.raises(ConfigError, match="objective must be one of jct, wct"):
        RuleChoiceEnv(_One(Workload(jobs), two), objective="makespan")


def test_train_flags_are_checked(tmp_path):
    base = ("train", "--workloads", "builtin:ml-pipelines", "--out", str(tmp_path / "o"))
    assert_one_line_error(invoke(*base, "--objective", "speed"), "--objective")
    assert_one_line_error(invoke(*base, "--candidates", "fifo"), "--candidates")
    assert_one_line_error(invoke(*base, "--candidates", "fifo,nope"), "nope")
    assert_one_line_error(invoke(*base, "--candidates", "fifo,rl"), "heuristic")
    assert_one_line_error(invoke(*base, "--agent", "slots", "--objective", "wct"),
                          "--agent adaptive")
