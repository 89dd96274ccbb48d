"""The fast paths of easy-backfill and srtf-oracle against their plain versions.

easy-backfill finds the jobs that may backfill through its own index of the queue
(``easy_lanes.Lanes``, kept by hooks and synced at each pass), and searches for the head's
reservation on lists of the released nodes only; srtf-oracle keeps a ranking of
the running training jobs per instant. Both must decide exactly what the plain code
decides: visiting every open job in queue order and playing every release on a full
copy of the cluster state, asking the placer at each instant (easy-backfill), sorting
every running job at each job that needs victims (srtf-oracle). Compared job by job on
workloads with every shape the simulator handles, with node failures (evicted jobs
come back to the queue with their old keys) and with each placer.
"""

from __future__ import annotations

import pytest
from simdata import mixed_workload, small_cluster

from autoflow.placers import PLACERS, make_placer
from autoflow.policies.base import Policy, greedy_pass
from autoflow.policies.easy_backfill import INF, EasyBackfill, _busy_first, _Reservation
from autoflow.policies.srtf_oracle import SrtfOracle
from autoflow.sim.simulator import SimConfig, Simulator


class PlainEasyBackfill(EasyBackfill):
    """The pass without the index: every job of an open shape is visited in queue order
    and put to the rule itself (no skipping of shapes wider than the spare GPU share:
    the fast path's bound must never pass over a job the rule would start)."""

    def schedule(self, ctx) -> None:
        head = greedy_pass(ctx, blocking=True)
        if head is None or ctx.nothing_fits():
            return
        resv = self._reservation(ctx, head)
        for js in ctx.open_waiting(after=ctx.waiting.key_of(head)):
            if ctx.nothing_fits():
                break
            resv.start(ctx, js, ctx.now + js.predicted <= resv.shadow)

    def _reservation(self, ctx, head):
        """Every running job released on a copy of the state in order of predicted end
        (those ending at one instant together), the placer asked after each instant."""
        state, req = ctx.state, head.req
        ends = sorted((ctx.now + ctx.predicted_remaining(js), js.idx, js.placement)
                      for js in ctx.running.values())
        at = state.copy()
        for i, (t, _idx, placement) in enumerate(ends):
            at.release(placement)
            if i + 1 < len(ends) and ends[i + 1][0] == t:
                continue
            reserved = self.placer.place(at, req)
            if reserved is not None:
                return _Reservation(self._shapes, t, state, at,
                                    _busy_first(state, at, req, reserved))
        return _Reservation(self._shapes, INF, state)


class PlainSrtfOracle(SrtfOracle):
    victims_for = Policy.victims_for  # sorts every running job at each call


def schedule_of(policy, workload, failures: float) -> dict:
    cfg = SimConfig(failure_rate_per_node_day=failures, repair_time_s=1800.0, seed=3,
                    check_invariants=True)
    result = Simulator(workload, small_cluster(), policy, cfg).run()
    return {js.job.job_id: (js.first_start, js.finish, js.preemptions, js.failures)
            for js in result.jobs}


@pytest.mark.parametrize("placer", sorted(PLACERS))
@pytest.mark.parametrize(("fast", "plain"), [(EasyBackfill, PlainEasyBackfill),
                                             (SrtfOracle, PlainSrtfOracle)])
def test_fast_path_decides_as_the_plain_pass(fast, plain, placer):
    workload = mixed_workload(n=400, seed=5, span=6000.0)  # a queue that builds up
    for failures in (0.0, 20.0):
        got = schedule_of(fast(make_placer(placer)), workload, failures)
        want = schedule_of(plain(make_placer(placer)), workload, failures)
        assert got == want
        if failures:
            assert any(f for *_x, f in got.values())  # evictions happened
