"""Policies and placers on hand-built situations (small tables, exact expectations)."""

from __future__ import annotations

import numpy as np
import pytest
from simdata import mixed_workload, shared_trace, small_cluster

from autoflow.cluster import ClusterSpec, Node, load_cluster, scale_to_load
from autoflow.core.estimator import DurationEstimator
from autoflow.errors import ConfigError
from autoflow.job import Job
from autoflow.metrics import summarize
from autoflow.placers import PLACERS, make_placer
from autoflow.policies import POLICIES, make_policy, parse_policy
from autoflow.policies.easy_backfill import EasyBackfill
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.state import ClusterState
from autoflow.traces.registry import load_workload
from autoflow.workload import Workload


def starts(policy: str, jobs: list[Job], nodes: list[Node]) -> dict[str, float]:
    result = Simulator(Workload(jobs), ClusterSpec("c", nodes), make_policy(policy),
                       SimConfig(check_invariants=True)).run()
    return {js.job.job_id: js.first_start for js in result.jobs}


def test_fifo_blocks_behind_the_head():
    jobs = [Job("run", 0, 100.0, num_gpus=2), Job("head", 1, 10.0, num_gpus=4),
            Job("small", 2, 10.0, num_gpus=1)]
    s = starts("fifo", jobs, [Node("n", "V100", 4)])
    assert s == {"run": 0, "head": 100.0, "small": 110.0}


def test_easy_backfill_fills_the_hole_without_delaying_the_head():
    # history: 1-GPU jobs take ~10 s, so 'small' is predicted to end before the head's
    # reservation (when 'run' ends) and may jump ahead
    jobs = [Job("h1", 0, 10.0, num_gpus=1), Job("run", 20, 100.0, num_gpus=2),
            Job("head", 21, 10.0, num_gpus=4), Job("small", 22, 10.0, num_gpus=1)]
    s = starts("easy-backfill", jobs, [Node("n", "V100", 4)])
    assert s["small"] == 22 and s["head"] == pytest.approx(120.0)


class _ReservationKept(EasyBackfill):
    """easy-backfill that checks, after each pass, that the head's reservation is free at
    the shadow time in a state rebuilt from the live one: every running job released
    that is predicted to end by then (those started in the pass by their prediction)."""

    checked = 0

    def _reservation(self, ctx, head):
        self._resv = super()._reservation(ctx, head)
        self._ends = {js.idx: ctx.now + ctx.predicted_remaining(js)
                      for js in ctx.running.values()}
        return self._resv

    def schedule(self, ctx):
        self._resv = None
        super().schedule(ctx)
        resv = self._resv
        if resv is None or resv.shadow == float("inf"):
            return
        at = ctx.state.copy()
        for js in ctx.running.values():
            if self._ends.get(js.idx, ctx.now + js.predicted) <= resv.shadow:
                at.release(js.placement)
        for node, gpus, milli, cpu, mem in resv.reserved:
            assert all(at.gpu_free[node, g] >= milli for g in gpus), (ctx.now, node, gpus)
            assert at.cpu_free[node] >= cpu and at.mem_free[node] >= mem, (ctx.now, node)
        _ReservationKept.checked += 1


@pytest.mark.parametrize("placer", sorted(PLACERS))
def test_easy_backfill_keeps_the_heads_reservation_free(placer):
    """Whatever starts beside the head in a pass (gangs, shared GPUs, type constraints,
    CPU and memory, node failures), its reserved placement is free at the shadow time
    as far as the predictions go."""
    before = _ReservationKept.checked
    cfg = SimConfig(failure_rate_per_node_day=20.0, repair_time_s=1800.0, seed=3,
                    check_invariants=True)
    Simulator(mixed_workload(n=300, seed=7, span=5000.0), small_cluster(),
              _ReservationKept(make_placer(placer)), cfg).run()
    assert _ReservationKept.checked - before > 100  # passes with a reservation checked


def test_sjf_uses_history_not_the_truth():
    # user a's past job took 1000 s, user b's 10 s: b's new job goes first even though
    # its true duration is longer
    jobs = [Job("a0", 0, 1000.0, user="a"), Job("b0", 0, 10.0, user="b"),
            Job("blocker", 1, 5000.0, num_gpus=1),
            Job("a1", 2000, 5.0, user="a"), Job("b1", 2000, 50.0, user="b")]
    s = starts("sjf", jobs, [Node("n", "V100", 2)])
    assert s["b1"] < s["a1"]
    s = starts("sjf-oracle", jobs, [Node("n", "V100", 2)])
    assert s["a1"] < s["b1"]


def test_estimator_falls_back_from_user_to_gpus_to_median_to_prior():
    est = DurationEstimator()
    assert est.predict(Job("q", 0, None, user="u")) == 3600.0  # nothing completed: prior
    assert DurationEstimator(prior=900.0).predict(Job("q", 0, None)) == 900.0
    est.observe(Job("x", 0, 100.0, num_gpus=4))
    est.observe(Job("y", 0, 300.0, num_gpus=4))
    assert est.predict(Job("q", 0, None, user="u")) == 200.0  # median of completed jobs
    est.observe(Job("z", 0, 1000.0, num_gpus=8))
    assert est.predict(Job("q", 0, None)) == 300.0  # odd count: the middle one
    est.observe(Job("h", 0, 50.0, num_gpus=2))
    assert est.predict(Job("q", 0, None, num_gpus=2, user="new")) == 50.0
    est.observe(Job("h", 0, 10.0, num_gpus=2, user="u"))
    assert est.predict(Job("q", 0, None, num_gpus=2, user="u")) == 10.0


def test_las_preempts_the_job_with_most_attained_service():
    jobs = [Job("old", 0, 50_000.0, num_gpus=1), Job("new", 5000, 100.0, num_gpus=1)]
    result = Simulator(Workload(jobs), ClusterSpec("c", [Node("n", "V100", 1)]),
                       make_policy("las"), SimConfig(restart_overhead_s=0)).run()
    old, new = result.jobs
    assert new.first_start == 5000 and old.preemptions == 1


def test_las_thresholds_set_where_a_job_is_demoted():
    # 'old' has run 2,000 GPU-seconds when 'new' arrives: still in the first queue under
    # Tiresias' thresholds, so 'new' waits until 'old' is demoted at 3,600; past the first
    # threshold under las:1800/18000, so 'new' preempts it at once
    jobs = [Job("old", 0, 10_000.0, num_gpus=1), Job("new", 2000, 100.0, num_gpus=1)]
    cluster = [Node("n", "V100", 1)]
    assert starts("las", jobs, cluster)["new"] == 3600.0
    assert starts("las:1800/18000", jobs, cluster)["new"] == 2000.0
    p = make_policy("las:1800/18000")
    assert p.thresholds == (1800.0, 18000.0) and p.name == "las:1800/18000"
    assert [p.level(a) for a in (0, 1799, 1800, 17_999, 18_000)] == [0, 0, 1, 1, 2]
    assert len(make_policy("las:600/6000/60000").ranked) == 4  # four queues


def test_las_with_tiresias_thresholds_written_out_is_las():
    w, spec = mixed_workload(150, seed=3), small_cluster()
    a = Simulator(w, spec, make_policy("las"), SimConfig(check_invariants=True)).run()
    b = Simulator(w, spec, make_policy("las:3600/36000"), SimConfig(check_invariants=True)).run()
    assert [(x.first_start, x.finish, x.preemptions) for x in a.jobs] == \
        [(x.first_start, x.finish, x.preemptions) for x in b.jobs]
    c = Simulator(w, spec, make_policy("las:60/600"), SimConfig(check_invariants=True)).run()
    assert [x.preemptions for x in c.jobs] != [x.preemptions for x in a.jobs]


@pytest.mark.parametrize("arg, msg", [("abc", "must be numbers"), ("1800/900", "must increase"),
                                      ("0/10", "positive"), ("100/inf", "positive"),
                                      ("1800//9000", "must be numbers")])
def test_bad_las_thresholds_are_refused_before_anything_runs(arg, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        parse_policy(f"las:{arg}+fgd")
    assert f"las:{arg}" in str(e.value)


def test_srtf_oracle_preempts_longer_remaining():
    jobs = [Job("long", 0, 10_000.0), Job("short", 100, 50.0)]
    s = starts("srtf-oracle", jobs, [Node("n", "V100", 1)])
    assert s["short"] == 100


@pytest.mark.parametrize("name", list(PLACERS))
def test_every_placer_returns_a_feasible_placement(name):
    spec = ClusterSpec("c", [Node("a", "T4", 2, 8000, 1000), Node("b", "V100", 8, 8000, 1000)])
    state = ClusterState(spec)
    placer = make_placer(name)
    for job in [Job("w", 0, 1, num_gpus=8), Job("f", 0, 1, gpu_milli=300, cpu_milli=100),
                Job("t", 0, 1, gpu_types=("T4",)), Job("c", 0, 1, num_gpus=0, cpu_milli=500)]:
        req = state.compile(job)
        p = placer.place(state, req)
        assert p is not None
        state.allocate(p)
        for node, gpus, milli, _c, _m in p:
            if job.gpu_types:
                assert spec.nodes[node].gpu_type in job.gpu_types
            assert len(gpus) == job.num_gpus
    assert (state.gpu_free[state.gpu_free >= 0] >= 0).all()
    assert placer.place(state, state.compile(Job("x", 0, 1, num_gpus=8))) is None


def test_best_fit_packs_and_spread_spreads():
    spec = ClusterSpec("c", [Node("a", "V100", 4), Node("b", "V100", 4)])
    for name, expect_same in (("best-fit", True), ("spread", False)):
        state = ClusterState(spec)
        placer = make_placer(name)
        p1 = placer.place(state, state.compile(Job("1", 0, 1)))
        state.allocate(p1)
        p2 = placer.place(state, state.compile(Job("2", 0, 1)))
        assert (p1[0][0] == p2[0][0]) is expect_same, name


def test_fgd_keeps_whole_gpus_for_whole_gpu_jobs():
    # one GPU already half used: FGD puts the next 0.5 share there, not on an idle GPU
    spec = ClusterSpec("c", [Node("a", "T4", 2)])
    state = ClusterState(spec)
    fgd = make_placer("fgd")
    reqs = [state.compile(Job(str(i), 0, 1, gpu_milli=500)) for i in range(3)]
    reqs.append(state.compile(Job("w", 0, 1)))
    fgd.prepare(reqs, state)
    state.allocate(fgd.place(state, reqs[0]))
    second = fgd.place(state, reqs[1])
    assert second[0][1] == (int(np.argmin(state.gpu_free[0])),)


def test_policy_names_and_errors():
    assert parse_policy("las+fgd") == ("las", None, "fgd")
    assert parse_policy("fifo") == ("fifo", None, "best-fit")
    with pytest.raises(ConfigError, match="unknown policy 'nope'"):
        make_policy("nope")
    with pytest.raises(ConfigError, match="unknown placer 'worst-fit'"):
        make_policy("fifo+worst-fit")
    for name, cls in POLICIES.items():
        assert cls.oracle == name.endswith("-oracle")


def test_sjf_oracle_beats_fifo_on_itp_cluster02_at_load_09():
    w = load_workload(f"itp:{shared_trace('itp', 'cluster02.csv')}").shifted()
    spec = scale_to_load(load_cluster("itp-8gpu"), w, 0.9)
    fifo = summarize(Simulator(w, spec, make_policy("fifo")).run())
    sjf = summarize(Simulator(w, spec, make_policy("sjf-oracle")).run())
    assert sjf["avg_jct"] < fifo["avg_jct"]
