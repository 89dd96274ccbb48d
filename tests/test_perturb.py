"""Perturbed replays: replay 0 as is; others jittered within bounds, seeded, none lost."""

from __future__ import annotations

from autoflow.job import Job
from autoflow.perturb import JITTER_S, OVERHEAD_RANGE, perturbed
from autoflow.sim.simulator import SimConfig
from autoflow.workload import Workload


def test_replays_are_seeded_bounded_and_keep_every_job():
    w = Workload([Job(f"j{i}", 1000.0 + 30.0 * i, 100.0, 1) for i in range(200)])
    same, cfg = perturbed(w, 0)
    assert same is w and cfg == SimConfig()
    a, ca = perturbed(w, 1)
    b, cb = perturbed(w, 1)
    c, _ = perturbed(w, 2)
    assert [j.submit_time for j in a] == [j.submit_time for j in b] and ca == cb
    assert [j.submit_time for j in a] != [j.submit_time for j in c]
    assert sorted(j.job_id for j in a) == sorted(j.job_id for j in w)  # none dropped
    times = [j.submit_time for j in a]
    assert times == sorted(times) and times[0] == 0.0  # sorted, shifted to start at 0
    orig = {j.job_id: j.submit_time for j in w}
    moved = [j.submit_time - orig[j.job_id] for j in a]  # jitter, less one common shift
    assert max(moved) - min(moved) <= 2 * JITTER_S + 1e-9
    assert max(moved) - min(moved) > JITTER_S  # and it does move them
    assert OVERHEAD_RANGE[0] <= ca.restart_overhead_s <= OVERHEAD_RANGE[1]
