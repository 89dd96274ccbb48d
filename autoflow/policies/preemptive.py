"""The scheduling pass of preemptive policies (las, srtf-oracle).

Jobs are tried in queue order; a job that does not fit may preempt running training
jobs that rank strictly below it (``Policy.victims_for``), worst first.

A long queue stays cheap through a *reachable* state: the live cluster plus everything
the current victims hold. A job that does not fit there cannot start even by
preempting, and whole shapes of jobs are skipped against it (``SortedQueue.iter_open``).
This is sound because the reachable state only shrinks during a pass: preemption keys
do not decrease along the queue (so later jobs have fewer victims), a plain start uses
capacity, and a start by preemption turns victims' capacity into the new job's.

Policies using this pass must keep two promises: waiting jobs' preemption keys do not
decrease along the queue, and ``victims_for(js)`` depends only on ``preempt_key(js)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.jobstate import RUNNING
from ..feasibility import Shape, ShapeGate, fits_now

if TYPE_CHECKING:
    from ..core.context import SchedContext
    from ..core.jobstate import JobState


def preemptive_pass(ctx: SchedContext) -> None:
    reach = _Reachable(ctx)
    for js in ctx.waiting.iter_open(reach.shape_open):
        if ctx.try_start(js):
            reach.started(js)
            continue
        victims = reach.victims_for(js)
        if not victims:
            if ctx.nothing_fits():
                break
            continue
        if reach.may_fit(js) and ctx.start_with_preemption(js, victims):
            reach.preempted_for(js, victims)
        else:
            reach.failures += 1


class _Reachable:
    """What a waiting job could get by preempting every job it outranks. Built only once
    a pass has seen a few jobs fail to start even by preemption (short queues never pay
    for it)."""

    LAZY = 8  # failed preemption attempts before the reachable state is built

    def __init__(self, ctx: SchedContext):
        self.ctx = ctx
        self.key: tuple | None = None
        self.victims: list[JobState] = []
        self.state = None  # live state + victims' holdings, once built
        self.gate: ShapeGate | None = None  # shape checks against that state (kept while
        # it stays at one version)
        self.failures = 0

    def victims_for(self, js: JobState) -> list[JobState]:
        ctx = self.ctx
        key = ctx.policy.preempt_key(js, ctx.now)
        if key == self.key:
            self.victims = [v for v in self.victims if v.status == RUNNING]
            return self.victims
        new = ctx.policy.victims_for(ctx, js)
        if self.state is not None:  # the key grew: non-victims hold their share again
            keep = {v.idx for v in new}
            for v in self.victims:
                if v.idx not in keep and v.status == RUNNING:
                    self.state.allocate(v.placement)
        self.key, self.victims = key, new
        return new

    def may_fit(self, js: JobState) -> bool:
        """False if ``js`` cannot start even by preempting all its victims."""
        if self.failures < self.LAZY:
            return True
        if self.state is None:
            self.state = self.ctx.state.without(v.placement for v in self.victims)
            self.gate = ShapeGate(self.state)
        return fits_now(self.state, js.req)

    def started(self, js: JobState) -> None:
        if self.state is not None:
            self.state.allocate(js.placement)

    def preempted_for(self, js: JobState, victims: list[JobState]) -> None:
        self.victims = [v for v in victims if v.status == RUNNING]
        self.started(js)

    def shape_open(self, shape: Shape) -> bool:
        if self.key is None:
            return True  # nothing known yet
        if not self.victims:
            return self.ctx.shape_open(shape)  # reachable = live
        if self.gate is None:
            return True
        return self.gate.open(shape)
