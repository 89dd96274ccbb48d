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


def test_the_observation_carries_what_waiting_stages_unlock():
    """``--workflow-features``: at the first pass the head of a three-stage chain waits
    and its two descendants are held; the block counts them, their GPU demand and the
    work hanging behind the head. Without dependencies the block is all zeros, and a
    model without it keeps the schema hash the shipped model was trained with."""
    import math

    from autoflow.envs.workload_features import (
        WORKFLOW_FEATURES,
        WORKLOAD_FEATURES,
        obs_size,
        schema_hash,
        workflow_features,
    )

    from autoflow.cluster import ClusterSpec, Node
    from autoflow.policies import make_policy
    from autoflow.policies.critical_path import critical_path
    from autoflow.sim.simulator import Simulator
    from autoflow.workload import Workload

    cluster = ClusterSpec("c", [Node("n0", "a100", 4, 64000, 256000)])
    seen = []
    fifo = make_policy("fifo")
    inner = fifo.schedule

    def record(ctx):
        total = ctx.state.total_milli / 1000.0
        crit = {js.job.job_id: critical_path(ctx, js) for js in ctx.waiting}
        seen.append((workflow_features(ctx, total), crit,
                     {js.job.job_id: js.predicted for js in ctx.waiting}))
        inner(ctx)

    fifo.schedule = record
    chain = [Job("a", 0.0, 100.0, workflow_id="w"),
             Job("b", 0.0, 500.0, num_gpus=2, workflow_id="w", depends_on=("a",)),
             Job("c", 0.0, 50.0, num_gpus=4, workflow_id="w", depends_on=("b",))]
    Simulator(Workload(chain), cluster, fifo).run()
    f, crit, predicted = seen[0]
    assert f["held_log"] == pytest.approx(math.log1p(2) / 5)
    assert f["held_demand"] == pytest.approx((2 + 4) / 4 / 3)
    assert f["waiting_heads_share"] == 1.0
    own = max(predicted["a"], 1.0)
    tail = crit["a"] - max(predicted["a"], 0.0)
    assert tail > 0
    assert f["unlock_ratio"] == pytest.approx(math.log10(1 + tail / own) / 2, rel=1e-6)

    seen.clear()
    fifo.schedule = record
    Simulator(Workload([Job("x", 0.0, 10.0), Job("y", 0.0, 10.0)]), cluster, fifo).run()
    assert seen[0][0] == {k: 0.0 for k in WORKFLOW_FEATURES}

    assert obs_size(3, workflow=True) == len(WORKLOAD_FEATURES) + len(WORKFLOW_FEATURES) + 3
    cands = ["fifo", "las"]
    assert schema_hash(cands) == schema_hash(cands, workflow=False) != schema_hash(
        cands, workflow=True)


def test_a_model_with_the_workflow_block_round_trips_and_schedules(tmp_path):
    """A card trained with ``--workflow-features`` records the flag and the longer
    observation, loads back as such, runs a pipeline workload with every dependency
    honoured, and a card whose flag disagrees with its weights is refused by name."""
    import json

    from autoflow.agents.adaptive import CANDIDATES, Selector, export, load
    from autoflow.envs.workload_features import obs_size

    d = obs_size(len(CANDIDATES), workflow=True)
    out = np.zeros(len(CANDIDATES), np.float32)
    out[CANDIDATES.index("las")] = 10.0
    sel = Selector([(np.zeros((d, 4), np.float32), np.zeros(4, np.float32)),
                    (np.zeros((4, len(CANDIDATES)), np.float32), out)])
    card = export(sel, CANDIDATES, tmp_path / "wf", {"note": "test"}, workflow_features=True)
    assert card["network"]["workflow_features"] is True
    _, cands, back = load(tmp_path / "wf.json")
    assert cands == CANDIDATES and back["sha256"] == card["sha256"]

    chain = [Job("a", 0.0, 100.0, workflow_id="w"),
             Job("b", 0.0, 50.0, workflow_id="w", depends_on=("a",)),
             Job("z", 5.0, 30.0)]
    ev = evaluate(f"rl:{tmp_path / 'wf.json'}", Workload(chain), ONE,
                  SimConfig(check_invariants=True))
    by_id = {js.job.job_id: js for js in ev.result.jobs}
    assert sorted(by_id) == ["a", "b", "z"] and all(js.finish for js in by_id.values())
    assert by_id["b"].first_start >= by_id["a"].finish

    bad = dict(card)
    bad["network"] = {**card["network"], "workflow_features": False}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="bad.json: it records feature schema"):
        load(tmp_path / "bad.json")


def test_the_shipped_workflow_model_schedules_pipelines():
    """``rl:workflows``: the adaptive scheduler trained on pipelines, shipped with the
    package. It loads by name (its weights checked against the card), carries the workflow
    block and the workflow heuristics, and on a pipeline workload it has not seen beats
    the critical-path baseline and las on average workflow completion time."""
    from autoflow.agents import adaptive
    from autoflow.agents.rl_policy import MODELS_DIR, shipped

    from autoflow.bench import prepare_fit
    from autoflow.policies import make_policy

    assert shipped("workflows") == str(MODELS_DIR / "rl-workflows.json")
    assert shipped("no-such-model") == "no-such-model"
    pol = make_policy("rl:workflows")
    assert pol.label.startswith("rl:workflows")
    assert "stages-first" in pol.candidate_names and "cp-first" in pol.candidate_names
    assert adaptive.uses_workflow_features(pol.card)
    with pytest.raises(ConfigError, match="not found"):
        make_policy("rl:no-such-model")
    fit = prepare_fit("builtin:ml-pipelines:500", "philly-64", 1.1, 3)
    wct = {p: evaluate(p, fit.workload, fit.spec, seed=3).metrics["avg_wct"]
           for p in ("rl:workflows", "cp-first", "las")}
    assert wct["rl:workflows"] < 0.9 * min(wct["cp-first"], wct["las"])
