"""The cluster states reachable by preempting running jobs, one per LAS level.

A blocked waiting job of LAS level ``k`` could start if every preemptible running job of
a higher level (not started at this instant) were preempted: what LAS's pass could give
it. :class:`ReachStates` builds these states lazily for one decision, keeps them across
the decisions of one instant while only the agent's own starts and preemptions change
the cluster, and answers which blocked jobs would fit (the ``fits_by_preempting``
feature, the reach slots of the queue window in ``envs.window``).
"""

from __future__ import annotations

from autoflow.core.jobstate import JobState
from autoflow.feasibility import ShapeGate, fits_now

from .levels import las_level


class ReachStates:
    """For each LAS level ``k`` of waiting jobs, the cluster as it would be once every
    preemptible running job of a higher level (and not started at this instant) were
    preempted: what LAS's pass could give a job of that level. Built lazily, once per
    decision."""

    def __init__(self, ctx, victims: list[tuple[int, JobState]], kept: dict | None = None):
        self.ctx = ctx
        self.victims = victims  # (LAS level, job): ``running_levels``' victims
        self._top: int | None = None
        self._states: dict[int, tuple] = kept if kept is not None else {}
        # the live state these were built for: the same instant and version
        self._now, self._version = ctx.now, ctx.state.version

    # The states stay true across the decisions of one instant when only the agent's
    # own actions changed the cluster: a start takes the same GPUs in every state (the
    # job started now, so it is nobody's victim), a preemption frees the job's GPUs in
    # the states that had not freed them already. Any other change (an event, time
    # passing) changes the version or the instant, and they are built afresh.
    def states_if_current(self, ctx) -> dict | None:
        """The states, if the cluster is still the one they were kept for."""
        if ctx is self.ctx and ctx.now == self._now and ctx.state.version == self._version:
            return self._states
        return None

    def after_start(self, placement, version: int) -> None:
        """The agent started a job with ``placement`` on the live state at ``version``."""
        if version != self._version:
            self._version = None  # not ours to follow
            return
        for st, gate, known in self._states.values():
            st.allocate(placement)
            known.clear()
        self._version = self.ctx.state.version

    def after_preempt(self, job: JobState, placement, version: int) -> None:
        """The agent preempted ``job`` (which held ``placement``) at ``version``."""
        if version != self._version:
            self._version = None
            return
        level = next((lvl for lvl, r in self.victims if r is job), None)
        for k, (st, gate, known) in self._states.items():
            if level is None or level <= k:  # this state still held the job
                st.release(placement)
                known.clear()
        self._version = self.ctx.state.version

    @property
    def top(self) -> int:
        """The highest LAS level of a victim: no job of that level or above can gain."""
        if self._top is None:
            self._top = max((lvl for lvl, _ in self.victims), default=0)
        return self._top

    def _state(self, k: int) -> tuple:
        got = self._states.get(k)
        if got is None:
            st = self.ctx.state.without(r.placement for lvl, r in self.victims if lvl > k)
            got = self._states[k] = (st, ShapeGate(st), {})
        return got

    def fits_level(self, k: int, req) -> bool:
        """Whether ``req`` fits in the reachable state of LAS level ``k``."""
        st, _gate, known = self._state(k)
        ok = known.get(req)
        if ok is None:
            ok = known[req] = fits_now(st, req)
        return ok

    def fits(self, js: JobState) -> bool:
        k = las_level(js.attained)
        return k < self.top and self.fits_level(k, js.req)

    def first_blocked(self, ctx, skip: set[int], limit: int, budget: int) -> list[JobState]:
        """The first ``limit`` waiting jobs in queue order (not in ``skip``) that do not
        fit now but would fit in their level's reachable state; ``budget`` jobs examined
        at most."""
        out: list[JobState] = []
        waiting = ctx.waiting
        for k in range(self.top):
            if len(out) >= limit:
                break
            _st, gate, _known = self._state(k)
            for js in waiting.iter_open(gate.open, (k,) if k else None):
                budget -= 1
                if waiting.key_of(js)[0] > k or budget < 0:
                    break
                if js.idx in skip or ctx.fits(js) or not self.fits_level(k, js.req):
                    continue
                out.append(js)
                if len(out) >= limit:
                    break
        return out
