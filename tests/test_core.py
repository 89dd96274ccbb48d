"""The scheduler core outside the simulator: a hand-written backend drives every
registered policy the way the service will (a clock of its own, completions pushed from
outside), and ``plan`` answers "what would you do now?" without doing it."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import replace

import numpy as np
import pytest
from simdata import mixed_workload, small_cluster

from autoflow.core import SchedulerCore
from autoflow.core.jobstate import DONE, RUNNING, OracleError
from autoflow.core.plan import Preempt, Start, plan
from autoflow.policies import make_policy
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.workload import Workload

# every registered policy (the learned ones built lazily), each with a different placer
EVERY = ["fifo+first-fit", "sjf+best-fit", "las+best-fit", "las+fgd", "easy-backfill+spread",
         "sjf-oracle+first-fit", "srtf-oracle+best-fit", "rl+best-fit", "las-expert+best-fit"]


class FakeBackend:
    """Not the simulator: a plain clock and a list of timers. The jobs' true durations
    live with the test (``world``), which pushes completions into the core itself."""

    def __init__(self):
        self.t = 0.0
        self._timers: list = []
        self._seq = itertools.count()
        self.running: dict[int, tuple] = {}  # job index -> (launch time, version)
        self.halted = 0

    def now(self) -> float:
        return self.t

    def call_at(self, t, fn) -> None:
        heapq.heappush(self._timers, (max(t, self.t), next(self._seq), fn))

    def launch(self, js, placement) -> None:
        assert js.idx not in self.running and placement == js.placement
        self.running[js.idx] = (self.t, js.version)

    def halt(self, js) -> None:
        del self.running[js.idx]
        self.halted += 1

    def true_duration(self, js):
        return None

    def next_timer(self) -> float:
        return self._timers[0][0] if self._timers else float("inf")

    def fire_due(self) -> None:
        while self._timers and self._timers[0][0] <= self.t:
            _t, _s, fn = heapq.heappop(self._timers)
            fn()


def drive(policy: str, workload, cluster, overhead: float = 30.0):
    """Runs the workload through a core on the fake backend; returns the core."""
    backend = FakeBackend()
    pol = make_policy(policy)
    core = SchedulerCore(cluster, pol, backend, restart_overhead_s=overhead,
                         check_invariants=True)
    jobs = [core.register(j) for j in workload.jobs]
    truth = [j.duration for j in workload.jobs]
    if pol.oracle:
        for js, d in zip(jobs, truth):
            js.reveal(d)
    core.prepare()
    arrivals = sorted(jobs, key=lambda js: (js.submit, js.idx))
    k = 0
    while not core.all_done():
        # the world: when does each running job complete (its remaining work + overhead)
        ends = [(start + core.jobs[i].seg_overhead + truth[i] - core.jobs[i].progress, i)
                for i, (start, _v) in backend.running.items()]
        t_end = min(ends)[0] if ends else float("inf")
        t_arr = arrivals[k].submit if k < len(arrivals) else float("inf")
        t = min(t_end, t_arr, backend.next_timer())
        assert t < float("inf"), f"{policy}: stuck with {len(core.waiting)} waiting"
        backend.t = max(backend.t, t)
        for end, i in sorted(ends):
            if end <= backend.t:
                del backend.running[i]
                core.finish(core.jobs[i], truth[i])
        batch = []
        while k < len(arrivals) and arrivals[k].submit <= backend.t:
            batch.append(arrivals[k])
            k += 1
        if batch:
            core.submit(batch)
        backend.fire_due()
    return core, backend


@pytest.mark.parametrize("policy", EVERY)
def test_every_policy_runs_on_a_backend_that_is_not_the_simulator(policy):
    w = mixed_workload(80, seed=3, span=2000.0)
    core, backend = drive(policy, w, small_cluster())
    assert core.done == len(w) and not core.running and not len(core.waiting)
    for js, job in zip(core.jobs, w.jobs):
        assert js.status == DONE
        assert js.submit <= js.first_start <= js.finish
        assert js.progress == pytest.approx(job.duration)  # did all of its work
        assert js.starts == 1 + js.preemptions
    assert backend.halted == sum(js.preemptions for js in core.jobs)
    if "las" in policy or "srtf" in policy:
        assert backend.halted > 0  # the preemptive ones did preempt through the backend


@pytest.mark.parametrize("policy", ["fifo+best-fit", "sjf+best-fit", "las+best-fit",
                                    "easy-backfill+best-fit", "rl+best-fit"])
def test_the_fake_backend_gives_the_simulators_schedule(policy):
    """The core decides; the backend only carries out: the same decisions either way."""
    w = mixed_workload(80, seed=3, span=2000.0)
    core, _ = drive(policy, w, small_cluster())
    sim = Simulator(w, small_cluster(), make_policy(policy), SimConfig()).run()
    assert [js.preemptions for js in core.jobs] == [js.preemptions for js in sim.jobs]
    # the same times, up to how each backend adds up a job's end (float rounding)
    got = [(js.first_start, js.finish) for js in core.jobs]
    want = [(js.first_start, js.finish) for js in sim.jobs]
    assert got == [pytest.approx(x, rel=1e-12) for x in want]


def test_the_callers_workload_is_not_changed():
    w = mixed_workload(60, seed=1)
    before = [(j.duration, j.slo_s) for j in w.jobs]
    Simulator(w, small_cluster(), make_policy("las"), SimConfig(default_slo_s=123.0)).run()
    assert [(j.duration, j.slo_s) for j in w.jobs] == before


@pytest.mark.parametrize("policy", ["fifo", "sjf", "las", "easy-backfill", "rl"])
def test_a_non_oracle_policy_cannot_read_a_true_duration(policy):
    """Structural guard: before a job completes, its JobState holds no true duration
    unless the policy is an oracle; reading it raises."""
    w = mixed_workload(40, seed=2)
    pol = make_policy(policy)
    seen = []
    schedule = pol.schedule

    def peeking(ctx):
        for js in list(ctx.waiting)[:3] + list(ctx.running.values())[:3]:
            with pytest.raises(OracleError):
                _ = js.duration
            assert js.job.duration is None
            seen.append(js.idx)
        schedule(ctx)

    pol.schedule = peeking
    res = Simulator(w, small_cluster(), pol).run()
    assert seen
    assert all(js.duration == j.duration for js, j in zip(res.jobs, w.jobs))  # once done


def test_an_oracle_policy_reads_the_truth():
    w = mixed_workload(40, seed=2)
    res = Simulator(w, small_cluster(), make_policy("sjf-oracle")).run()
    assert all(js.truth == j.duration for js, j in zip(res.jobs, w.jobs))


def _core_at(policy: str, until: float):
    """A simulator run stopped at the first event at or after ``until`` with jobs
    waiting."""
    w = mixed_workload(120, seed=5, span=1500.0)
    sim = Simulator(w, small_cluster(), make_policy(policy), SimConfig())
    sim.begin()
    while sim.step():
        if sim.env.now >= until and len(sim.waiting) > 3 and not sim.core._pass_pending:
            return sim
    raise AssertionError("never reached a busy instant")


def _snapshot(core):
    return (core.state.version, core.state.used_milli, len(core.waiting),
            sorted(core.running), [(js.status, js.version, js.priority, js.starts)
                                   for js in core.jobs])


@pytest.mark.parametrize("policy", ["fifo", "sjf", "las", "easy-backfill", "srtf-oracle",
                                    "rl"])
def test_plan_answers_what_the_pass_would_do_and_changes_nothing(policy):
    sim = _core_at(policy, 600.0)
    core = sim.core
    before = _snapshot(core)
    decisions = plan(core)
    assert _snapshot(core) == before  # nothing changed
    assert plan(core) == decisions  # and asking again gives the same answer
    # now let the pass run for real: it takes exactly those decisions, in that order
    done = []
    start, preempt = core.start, core.preempt
    core.start = lambda js, p: (done.append(Start(js.job.job_id, tuple(
        (int(n), tuple(int(g) for g in gs), int(m), int(c), int(mm))
        for n, gs, m, c, mm in p), tuple(core.cluster.nodes[n].name for n, *_ in p))),
        start(js, p))
    core.preempt = lambda js: (done.append(Preempt(js.job.job_id)), preempt(js))
    core._pass()
    assert done == decisions
    for d in decisions:
        if isinstance(d, Start):
            js = next(j for j in core.jobs if j.job.job_id == d.job_id)
            assert js.status == RUNNING


def test_plan_of_an_idle_queue_is_empty():
    sim = _core_at("fifo", 600.0)
    core = sim.core
    for js in list(core.waiting):
        core.waiting.remove(js)
    assert plan(core) == []


def _decisions(policy: str, workload, until: float) -> list:
    """Every start (time, job, placement) and stop before ``until``."""
    pol = make_policy(policy)
    log = []
    on_start, on_stop = pol.on_start, pol.on_stop

    def start(ctx, js):
        log.append(("start", ctx.now, js.job.job_id, tuple(map(tuple, js.placement))))
        on_start(ctx, js)

    def stop(ctx, js):
        log.append(("stop", ctx.now, js.job.job_id))
        on_stop(ctx, js)

    pol.on_start, pol.on_stop = start, stop
    res = Simulator(workload, small_cluster(), pol, SimConfig()).run()
    return [e for e in log if e[1] < until], res


@pytest.mark.parametrize("policy", ["sjf", "easy-backfill", "las", "rl", "fifo"])
def test_decisions_do_not_depend_on_durations_of_jobs_not_yet_completed(policy):
    """Perturbing the true durations of the jobs that have not completed by time T (made
    longer, so none completes before T) leaves every decision before T unchanged: no
    non-oracle policy learns anything from a job before it completes (the estimator's
    prior included)."""
    w = mixed_workload(150, seed=4, span=3000.0)
    before, res = _decisions(policy, w, float("inf"))
    t = sorted(js.finish for js in res.jobs)[len(w) // 3]  # a third of the jobs done
    rng = np.random.default_rng(0)
    jobs = [replace(j, duration=j.duration * float(rng.uniform(1.5, 4.0)))
            if js.finish > t else j for j, js in zip(w.jobs, res.jobs)]
    after, _ = _decisions(policy, Workload(jobs, w.source), t)
    assert [e for e in before if e[1] < t] == after
    assert len(after) > 50  # a real stretch of decisions was compared


def test_library_code_has_no_bare_assert():
    """Invariants are checked by code that survives ``python -O`` (a service runs so)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = []
    for folder in ("autoflow", "envs", "agents", "generators"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Assert):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert found == []


def test_an_over_allocation_is_caught_under_python_O():
    import subprocess
    import sys

    code = ("from autoflow.cluster import ClusterSpec, Node\n"
            "from autoflow.errors import InvariantError\n"
            "from autoflow.state import ClusterState\n"
            "st = ClusterState(ClusterSpec('c', [Node('n', 'V100', 1)]))\n"
            "st.allocate([(0, (0,), 1000, 0, 0)])\n"
            "try:\n    st.allocate([(0, (0,), 500, 0, 0)])\n"
            "except InvariantError as e:\n    print('caught', e)\n")
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("caught GPU 0 of node 0 over-allocated")
