"""Policy: orders the waiting queue and decides what starts (and what is preempted).

A policy sees the cluster through a :class:`~autoflow.core.context.SchedContext`; it never
touches the simulator's internals, so the same policy runs in the simulator, in the
Gymnasium environment and behind the service. Stages follow kube-scheduler: the
policy *orders* (``queue_key``), the placer *filters* and *scores*, the context
*reserves* and *binds* (``try_start``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..feasibility import Shape, fits_on, needs_multi_node
from ..placers import Placer
from ..state import Req

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

    def rearm(self, ctx: SchedContext, js: JobState) -> None:
        """Sets again the wake-ups ``on_start`` set for this running job (on a copy of the
        core whose timers were not copied: the service's what-if replay)."""

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
    # After a pass with no waiting job fitting at its end (``cycle.settled``), a job
    # waiting since can fit now only on a node that gained capacity since, unless it is
    # a gang across nodes (the other nodes only lost capacity). So a job that waited
    # then is tried only if it fits on one of those nodes; when none gained capacity
    # (on openb about half the passes follow an arrival with nothing else changed),
    # only the jobs that joined the queue since are tried, in queue order.
    cycle, state = ctx.cycle, ctx.state
    settled = cycle.settled
    new = ctx.joined_since(settled[1]) if settled is not None else None
    if new is None:
        jobs = ctx.open_waiting()
    elif settled[0] == state.version:
        jobs = new
    else:
        jobs = _settled_pass(ctx, settled[0], new)
    for js in jobs:
        if ctx.nothing_fits():
            break
        ctx.try_start(js)
    cycle.settled = (state.version, ctx.enqueued)
    return None


def _settled_pass(ctx: SchedContext, version: int, new: list[JobState]):
    """The jobs of a greedy pass that may fit now, in queue order, when none fitted at
    the end of a pass that left the state at ``version`` and ``new`` joined the queue
    since: the new ones, gangs across nodes, and the jobs that fit on a node that gained
    capacity since (whole shapes at a time: those whose least need fits there)."""
    state, shape_of = ctx.state, ctx.shape
    grown = ctx.grown_since(version)
    fresh = {js.idx for js in new}
    fresh_shapes = {shape_of(js) for js in new}
    gained: dict[Shape, bool] = {}

    def is_open(shape: Shape) -> bool:
        if not ctx.shape_open(shape):
            return False
        types_key, num, milli, cpu, mem = shape
        if shape in fresh_shapes or num > state.widest(types_key):  # (a gang across nodes)
            return True
        ok = gained.get(shape)
        if ok is None:  # (capacity only shrinks in the pass: a "no" stays one)
            ok = fits_on(state, Req(num, milli, types_key, cpu, mem), grown)
            if not ok:
                gained[shape] = ok
        return ok

    for js in ctx.waiting.iter_open(is_open):
        if ctx.nothing_fits():
            return  # (as the caller would at the next job: not after skipping many)
        if (js.idx in fresh or needs_multi_node(state, js.req)
                or fits_on(state, js.req, grown)):
            yield js

