"""Workflows in the scheduler core (issue 21): a job that depends on others is held until
every one of them has succeeded, under every policy; a stage whose parent leaves without
succeeding is cancelled with its descendants; the workflow heuristics rank by what a
stage unlocks."""

from __future__ import annotations

import numpy as np
import pytest

from autoflow.cluster import ClusterSpec, Node
from autoflow.core.jobstate import DONE, HELD
from autoflow.errors import ConfigError
from autoflow.evaluate import evaluate
from autoflow.job import INFERENCE, Job
from autoflow.policies import known_policies, make_policy
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.workflow import check, topological, within
from autoflow.workload import Workload

CLUSTER = ClusterSpec("wf", [Node(f"n{i}", "a100", 4, 64000, 256000) for i in range(3)])


def pipelines(n: int = 24, seed: int = 0) -> Workload:
    """``n`` pipelines (two prepares joining into train, then evaluate and two serving
    replicas) beside independent training jobs, all stages submitted with their
    pipeline; heavy enough that stages wait."""
    rng = np.random.default_rng(seed)
    jobs = []
    for p in range(n):
        t = float(p * 900 + rng.uniform(0, 300))
        wf = f"p{p}"

        def stage(name, dur, gpus=1, deps=(), kind="training", t=t, wf=wf, **kw):
            jobs.append(Job(f"{wf}-{name}", t, float(dur), num_gpus=gpus, kind=kind,
                            group=name, workflow_id=wf,
                            depends_on=tuple(f"{wf}-{d}" for d in deps), **kw))

        stage("prep-a", rng.lognormal(np.log(600), 0.5), gpus=0, cpu_milli=8000)
        stage("prep-b", rng.lognormal(np.log(300), 0.5), gpus=0, cpu_milli=8000)
        stage("train", rng.lognormal(np.log(3600), 0.8), gpus=int(rng.choice([2, 4])),
              deps=("prep-a", "prep-b"))
        stage("eval", rng.lognormal(np.log(600), 0.5), deps=("train",))
        for r in range(2):
            stage(f"serve{r}", 4 * 3600.0, deps=("eval",), kind=INFERENCE, slo_s=60.0,
                  gpu_milli=500)
    for i in range(3 * n):
        jobs.append(Job(f"adhoc{i}", float(rng.uniform(0, n * 900)),
                        float(rng.lognormal(np.log(1800), 1.2)),
                        num_gpus=int(rng.choice([1, 1, 2, 4]))))
    return Workload(jobs, source="test pipelines")


def every_policy() -> list[str]:
    """Every registered policy, the learned ones and the argument forms included."""
    return sorted(set(known_policies()) | {"gittins:ssl", "sjf:ssl", "easy-backfill:ssl",
                                            "rl:workflows", "rl:slots"})


@pytest.mark.parametrize("policy", every_policy())
def test_every_dependency_is_honoured(policy):
    w = pipelines()
    sim = Simulator(w, CLUSTER, make_policy(policy), SimConfig(check_invariants=True))
    res = sim.run()
    by_id = {js.job.job_id: js for js in res.jobs}
    assert all(js.status == DONE and js.first_start is not None for js in res.jobs)
    for js in res.jobs:
        for p in js.job.depends_on:
            assert js.first_start >= by_id[p].finish, (policy, js.job.job_id, p)
    # a stage waits for its parents, not only for room: the last stage of every pipeline
    # starts after its train stage finished
    for p in range(24):
        assert by_id[f"p{p}-serve0"].first_start >= by_id[f"p{p}-train"].finish


def test_a_stage_is_held_then_released_in_order():
    jobs = [Job("a", 0.0, 100.0, workflow_id="w"),
            Job("b", 0.0, 50.0, workflow_id="w", depends_on=("a",)),
            Job("c", 0.0, 10.0, workflow_id="w", depends_on=("a", "b"))]
    sim = Simulator(Workload(jobs), CLUSTER, make_policy("fifo"))
    sim.begin()
    sim.env.run(until=1.0)
    states = {js.job.job_id: js.status for js in sim.jobs}
    assert states == {"a": "running", "b": HELD, "c": HELD}
    assert len(sim.core.waiting) == 0  # held jobs are not in the queue
    while sim.step():
        pass
    f = {js.job.job_id: (js.first_start, js.finish) for js in sim.jobs}
    assert f["a"] == (0.0, 100.0) and f["b"] == (100.0, 150.0) and f["c"] == (150.0, 160.0)


def test_a_parent_that_does_not_succeed_cancels_its_descendants():
    jobs = [Job("a", 0.0, 100.0), Job("b", 0.0, 50.0, depends_on=("a",)),
            Job("c", 0.0, 10.0, depends_on=("b",)), Job("d", 0.0, 10.0),
            Job("e", 500.0, 10.0, depends_on=("a",))]  # submitted after a has left
    sim = Simulator(Workload(jobs), CLUSTER, make_policy("fifo"))
    dropped = []
    sim.core.on_drop = lambda js, why: dropped.append((js.job.job_id, why))
    sim.begin()
    sim.env.run(until=1.0)
    a = sim.core.by_id["a"]
    sim.core.remove(a)  # cancelled (or failed, as an executor would report)
    assert [d[0] for d in dropped] == ["b", "c"]
    assert dropped[0][1] == "depends on a, which did not succeed"
    assert dropped[1][1] == "depends on b, which did not succeed"
    while sim.step():
        pass
    assert [d[0] for d in dropped] == ["b", "c", "e"]
    assert sim.core.all_done()
    by_id = {js.job.job_id: js for js in sim.jobs}
    assert by_id["d"].finish == 10.0  # the independent job ran
    assert all(by_id[j].first_start is None for j in ("b", "c", "e"))


def test_bad_dependencies_are_refused_naming_the_job():
    with pytest.raises(ConfigError, match="job 'b' field 'depends_on': no job 'zz'"):
        check([Job("a", 0.0, 1.0), Job("b", 0.0, 1.0, depends_on=("zz",))], "f.csv")
    with pytest.raises(ConfigError, match="a, b depend on each other in a cycle"):
        check([Job("a", 0.0, 1.0, depends_on=("b",)), Job("b", 0.0, 1.0, depends_on=("a",))],
              "f.csv")
    with pytest.raises(ValueError, match="depends_on names the job itself"):
        Job("a", 0.0, 1.0, depends_on=("a",))
    with pytest.raises(ConfigError, match="in a cycle"):
        Simulator(Workload([Job("a", 0.0, 1.0, depends_on=("b",)),
                            Job("b", 0.0, 1.0, depends_on=("a",))]), CLUSTER,
                  make_policy("fifo"))


def test_topological_order_and_slices():
    jobs = [Job("c", 0.0, 1.0, depends_on=("b",)), Job("b", 0.0, 1.0, depends_on=("a",)),
            Job("a", 0.0, 1.0), Job("x", 0.0, 1.0)]
    assert [j.job_id for j in topological(jobs)] == ["a", "x", "b", "c"]
    assert [j.depends_on for j in within(jobs[:2])] == [("b",), ()]


def test_critical_path_first_runs_the_long_chain_first():
    """One free GPU at a time: cp-first starts the head of the long chain (whose
    dependants predict long) before an independent job that is itself longer."""
    history = [Job(f"h{i}", 0.0, d, group=g) for i, (g, d) in
               enumerate([("head", 100.0), ("tail", 5000.0), ("solo", 300.0)] * 4)]
    w = Workload(history + [
        Job("head", 30000.0, 100.0, group="head", workflow_id="w"),
        Job("tail", 30000.0, 5000.0, group="tail", workflow_id="w", depends_on=("head",)),
        Job("solo", 30000.0, 300.0, group="solo")])
    one = ClusterSpec("one", [Node("n0", "a100", 1)])
    order = {}
    for pol in ("cp-first", "srw", "fifo"):
        res = evaluate(pol, w, one).result
        starts = {js.job.job_id: js.first_start for js in res.jobs}
        order[pol] = sorted(("head", "solo"), key=starts.get)
    assert order["cp-first"] == ["head", "solo"]  # 100 + 5,000 predicted ahead of it
    assert order["srw"] == ["solo", "head"]  # its workflow has 5,100 s left, solo 300


def test_stages_first_never_demotes_a_stage():
    """Two GPUs, two long 1-GPU jobs: an independent one, then a stage a minute later.
    Under las-fcfs both sink to the lowest queue and a later short arrival preempts the
    one that entered it last, the stage; under stages-first the stage stays in the first
    queue, so the arrival preempts the independent job and the stage runs unbroken."""
    w = Workload([
        Job("solo", 0.0, 20 * 3600.0),
        Job("stage", 60.0, 20 * 3600.0, workflow_id="w"),
        Job("late", 15 * 3600.0, 600.0),
    ])
    two = ClusterSpec("two", [Node("n0", "a100", 2)])
    got = {}
    for pol in ("las-fcfs", "stages-first"):
        res = evaluate(pol, w, two).result
        got[pol] = {js.job.job_id: js for js in res.jobs}
    lf, sf = got["las-fcfs"], got["stages-first"]
    assert (lf["stage"].preemptions, lf["solo"].preemptions) == (1, 0)
    assert (sf["stage"].preemptions, sf["solo"].preemptions) == (0, 1)
    assert sf["stage"].finish == pytest.approx(60.0 + 20 * 3600.0)
    assert sf["late"].first_start == pytest.approx(15 * 3600.0)  # it preempted solo


def test_stages_first_thresholds_argument():
    assert make_policy("stages-first:1800/18000").thresholds == (1800.0, 18000.0)
    with pytest.raises(ConfigError, match="stages-first"):
        make_policy("stages-first:5/2")
