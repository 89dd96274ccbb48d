"""Policy: orders the waiting queue and decides what starts (and what is preempted).

A policy sees the cluster through a :class:`~autoflow.core.context.SchedContext`; it never
touches the simulator's internals, so the same policy runs in the simulator, in the
Gymnasium environment and behind the service. Stages follow kube-scheduler: the
policy *orders* (``queue_key``), the placer *filters* and *scores*, the context
*reserves* and *binds* (``try_start``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..placers import Placer

if TYPE_CHECKING:
    from ..core.context import SchedContext
    from ..core.jobstate import JobState


class Policy:
    name = "base"
    oracle = False  # reads true durations: named as an oracle in every table
    preemptive = False
    # when a start by preemption needs fewer victims than it released, the rest keep
    # running (``SchedContext.start_with_preemption``)
    hand_back_victims = True

    def __init__(self, placer: Placer):
        self.placer = placer

    def queue_key(self, js: JobState) -> tuple:
        """Sort key of a waiting job, fixed while it waits (lower runs first)."""
        return (js.submit,)

    def preempt_key(self, js: JobState, now: float) -> tuple:
        """Priority for preemption, evaluated now: a waiting job may preempt running jobs
        whose key is strictly greater. Only preemptive policies use it."""
        return self.queue_key(js)

    def victims_for(self, ctx: SchedContext, js: JobState) -> list[JobState]:
        """Running training jobs that ``js`` may preempt, worst-ranked first."""
        k = self.preempt_key(js, ctx.now)
        ranked = [(self.preempt_key(r, ctx.now), r.idx, r) for r in ctx.running.values()
                  if r.preemptible]
        return [r for rk, _i, r in sorted(ranked, reverse=True) if rk > k]

    def prepare(self, ctx: SchedContext) -> None:
        """Called once before the first event."""

    def schedule(self, ctx: SchedContext) -> None:
        """One scheduling pass: by default start, in queue order, every job that fits."""
        greedy_pass(ctx)

    def on_start(self, ctx: SchedContext, js: JobState) -> None:
        """A job started; a policy may ask for a later pass with ``ctx.wakeup``."""

    def on_finish(self, ctx: SchedContext, js: JobState) -> None:
        """A job completed."""

    def on_stop(self, ctx: SchedContext, js: JobState) -> None:
        """A job left the running set (completed, preempted or evicted by a failure)."""

    @property
    def label(self) -> str:
        return f"{self.name}+{self.placer.name}"


def greedy_pass(ctx: SchedContext, blocking: bool = False) -> JobState | None:
    """Starts waiting jobs in queue order. If ``blocking``, stops at the first job that
    does not fit and returns it; otherwise skips the jobs that do not fit (whole shapes
    at a time, see ``SchedContext.open_waiting``) and returns None."""
    if blocking:
        for js in ctx.waiting:
            if ctx.nothing_fits() or not ctx.try_start(js):
                return js
        return None
    for js in ctx.open_waiting():
        if ctx.nothing_fits():
            break
        ctx.try_start(js)
    return None
