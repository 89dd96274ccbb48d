"""A reference policy's cost on the agent's own episode, for a relative reward.

With ``reward_baseline="las"`` the environment plays each episode once under LAS at
reset — the same workload, cluster and simulator seed — and records LAS's cost over
simulated time. A step's reward is then the agent's cost minus LAS's cost over the same
interval, and at the end of the episode the rest of LAS's cost is settled, so an
episode's rewards sum to minus (the agent's total cost − LAS's).

This changes no optimal policy (LAS's part of the sum is fixed by the episode), but it
removes what the episode itself contributes — its size, its load, its bursts — from the
return: an agent that plays exactly like LAS earns 0 at every step, and a deviation
shows up as a non-zero reward from the moment the two schedules part. It is the
input-driven baseline of Mao et al., "Variance Reduction for Reinforcement Learning in
Input-Driven Environments" (ICLR '19), written into the reward.
"""

from __future__ import annotations

import numpy as np

from autoflow.evaluate import evaluate
from autoflow.job import BOUNDED_SLOWDOWN_MIN_S
from autoflow.sim.simulator import SimConfig


def units(jobs) -> dict[str, list]:
    """The units whose completion time the ``wct`` objective charges: each workflow
    (``Job.workflow_id``) as one unit, each job outside a workflow as its own."""
    out: dict[str, list] = {}
    for js in jobs:
        wf = js.job.workflow_id
        out.setdefault(f"w:{wf}" if wf else f"j:{js.idx}", []).append(js)
    return out


def unit_cost(jobs, t: float) -> float:
    """Seconds of units in the system up to time ``t`` (a unit is in from its first
    submission to its last finish): at the end of a run, the sum of its completion
    times (workflow completion times, and the JCT of each job outside a workflow)."""
    total = 0.0
    for stages in units(jobs).values():
        start = min(js.submit for js in stages)
        if start >= t:
            continue
        ends = [js.finish for js in stages]
        end = max(ends) if all(e is not None for e in ends) else t
        total += min(end, t) - start
    return total


def mean_unit_time(jobs) -> float:
    """Average completion time over units (see ``units``)."""
    u = units(jobs)
    return sum(max(js.finish for js in v) - min(js.submit for js in v)
               for v in u.values()) / max(1, len(u))


class BaselineCost:
    """``integral(t)``: the reference policy's cost from time 0 to ``t`` (seconds of
    jobs in the system, weighted per the objective; with ``wct``, of units: a workflow
    counts as one, in the system from its first submission to its last finish);
    ``total``: over its whole run."""

    def __init__(self, workload, cluster, policy: str, config: SimConfig, objective: str):
        res = evaluate(policy, workload, cluster, config).result
        submit = np.array([js.submit for js in res.jobs], dtype=np.float64)
        finish = np.array([js.finish for js in res.jobs], dtype=np.float64)
        if objective == "wct":  # units: whole workflows, and jobs outside any
            u = list(units(res.jobs).values())
            submit = np.array([min(js.submit for js in v) for v in u], dtype=np.float64)
            finish = np.array([max(js.finish for js in v) for v in u], dtype=np.float64)
        if objective == "makespan":  # the env charges the time until the last job is done
            end = float(finish.max(initial=0.0))
            self._t, self._rate = np.array([0.0, end]), np.array([1.0, 0.0])
        else:
            if objective == "slowdown":
                dur = np.array([js.duration for js in res.jobs], dtype=np.float64)
                weight = 1.0 / np.maximum(dur, BOUNDED_SLOWDOWN_MIN_S)
            else:
                weight = np.ones(len(submit))
            times = np.concatenate([submit, finish])
            change = np.concatenate([weight, -weight])
            order = np.argsort(times, kind="stable")
            self._t = times[order]
            self._rate = np.cumsum(change[order])  # cost per second after each event
        steps = np.diff(self._t) * self._rate[:-1]
        self._at = np.concatenate([[0.0], np.cumsum(steps)])  # cost up to each event
        self.total = float(self._at[-1])

    def integral(self, t: float) -> float:
        k = int(np.searchsorted(self._t, t, side="right")) - 1
        if k < 0:
            return 0.0
        return float(self._at[k] + self._rate[k] * (t - self._t[k]))
