"""``autoflow.evaluate``: one run of a policy, summarized; the same figures as by hand."""

from __future__ import annotations

import pytest
from simdata import mixed_workload, small_cluster

from autoflow.cluster import ClusterSpec, Node
from autoflow.evaluate import evaluate, evaluate_at_load, evaluate_many
from autoflow.job import Job
from autoflow.load import TOLERANCE
from autoflow.metrics import summarize
from autoflow.policies import make_policy
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.workload import Workload

HAND = [Job("a", 100, 100.0, num_gpus=2), Job("b", 110, 50.0), Job("c", 120, 200.0),
        Job("d", 390, 5.0, num_gpus=2)]


def _same(a: dict, b: dict) -> None:
    """Equal metrics, the simulation's wall time aside."""
    assert {k: v for k, v in a.items() if k != "wall_s"} == \
        {k: v for k, v in b.items() if k != "wall_s"}


@pytest.mark.parametrize("policy", ["fifo+first-fit", "las", "sjf-oracle"])
def test_metrics_are_summarize_of_the_simulators_run(policy):
    w, c = Workload(HAND), ClusterSpec("hand", [Node("n", "V100", 2)])
    ev = evaluate(policy, w, c)
    _same(ev.metrics, summarize(Simulator(w, c, make_policy(policy), SimConfig()).run()))
    assert ev.policy == policy and ev.guard == {}
    assert [js.job.job_id for js in ev.result.jobs] == ["a", "b", "c", "d"]


def test_jcts_by_hand():
    # one node of 2 GPUs, FIFO: a runs [100, 200], b [200, 250], c [200, 400], d [400, 405]
    ev = evaluate("fifo+first-fit", Workload(HAND), ClusterSpec("hand", [Node("n", "V100", 2)]))
    assert ev.jcts.tolist() == [100.0, 140.0, 280.0, 15.0]
    assert ev.metrics["avg_jct"] == pytest.approx(133.75)


def test_a_policy_object_gives_what_its_spec_gives():
    w, c = mixed_workload(80, seed=3), small_cluster()
    by_spec = evaluate("las+fgd", w, c)
    by_object = evaluate(make_policy("las+fgd"), w, c)
    _same(by_spec.metrics, by_object.metrics)
    assert by_object.policy == make_policy("las+fgd").label


def test_the_seed_makes_runs_repeatable_and_replaces_the_configs():
    w, c = mixed_workload(80, seed=4), small_cluster()
    failing = SimConfig(failure_rate_per_node_day=40.0, repair_time_s=600.0, seed=9)
    a = evaluate("las", w, c, failing, seed=1)
    b = evaluate("las", w, c, failing, seed=1)
    _same(a.metrics, b.metrics)
    assert a.metrics["node_failures"] > 0
    _same(a.metrics, evaluate("las", w, c, SimConfig(**{**failing.__dict__, "seed": 1})).metrics)
    others = [evaluate("las", w, c, failing, seed=s).metrics for s in (2, 3)]
    assert any(o["avg_jct"] != a.metrics["avg_jct"] for o in others)  # failures moved


def test_evaluate_many_runs_each_spec_and_reports_each():
    w, c = mixed_workload(60, seed=5), small_cluster()
    seen = []
    runs = evaluate_many(["fifo", "sjf", "las"], w, c, seed=0, on_done=seen.append)
    assert list(runs) == ["fifo", "sjf", "las"] == [ev.policy for ev in seen]
    _same(runs["sjf"].metrics, evaluate("sjf", w, c).metrics)


def test_evaluate_at_load_reaches_the_load_and_runs_what_it_fitted():
    w = mixed_workload(120, seed=6)
    r = evaluate_at_load(["fifo", "las"], w, small_cluster(), 0.9)
    assert abs(r.fit.achieved / 0.9 - 1) <= TOLERANCE
    assert r.runs["las"].result.cluster is r.fit.spec
    assert set(r.avg_jct()) == {"fifo", "las"}
    _same(r.runs["fifo"].metrics, evaluate("fifo", r.fit.workload, r.fit.spec).metrics)
    as_is = evaluate_at_load(["fifo"], w, small_cluster(), None)
    assert as_is.fit.method == "none" and as_is.fit.spec.name == "test-small"
