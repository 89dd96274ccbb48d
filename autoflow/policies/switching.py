"""Switching: one run scheduled by a set of candidate policies, one of them in charge.

The adaptive learned scheduler (``agents.adaptive``) does not replace the heuristics: it
decides, as the run goes and from what the run has shown so far, *which* of them
schedules. :class:`Switching` is that mechanism, with the choice left to a ``chooser``.

* Every candidate sees every event (``on_start``, ``on_stop``, ``on_finish``), so its
  bookkeeping (LAS's queues and ranks, gittins' size table) is current whenever it is
  put in charge. Only the candidate in charge orders the queue (``queue_key``), picks
  victims (``preempt_key``, ``victims_for``) and runs the passes (``schedule``). The
  wake-ups a candidate sets ask for a pass only while it is in charge; while it is not,
  they still update its own state. So a run that keeps one candidate in charge from
  start to end is that candidate's run, start for start (``tests/test_adaptive.py``).
* A choice is due at the first pass and whenever the number of completed jobs has grown
  by ``GROWTH`` (at least ``MIN_GAP`` more) since the last choice: a run of n jobs
  sees O(log n) choices. At a pass where one is due, ``chooser(self, ctx)`` returns the
  candidate's index; or None, and then the pass is skipped, ``pending`` is set, and a
  pass is asked for at the same instant: the caller (the training environment) calls
  ``switch`` before that pass runs. Either way the pass runs under the new choice.
* Switching re-keys the waiting queue by the new candidate's order.

What the chooser can know about the workload is kept by :class:`WorkloadStats` (durations
of *completed* jobs only, arrivals, the queue).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ..core.jobstate import JobState
from .base import Policy

GROWTH = 1.25  # a choice is due when the completed count grew by a quarter ...
MIN_GAP = 10  # ... and by at least this many jobs


class _CandidateCtx:
    """The scheduling context as one candidate sees it: the same, except that its
    wake-ups ask for a pass only while it is the candidate in charge."""

    __slots__ = ("_cand", "_ctx", "_owner")

    def __init__(self, ctx, owner: Switching, cand: Policy):
        self._ctx, self._owner, self._cand = ctx, owner, cand

    def __getattr__(self, name):
        if name.startswith("_"):  # own slots not set yet (a copy being made), dunders
            raise AttributeError(name)
        return getattr(self._ctx, name)

    def wakeup(self, at: float, fn=None, *args) -> None:
        self._ctx.wakeup(at, self._owner._guard, self._cand, fn, args)


class Switching(Policy):
    name = "switching"
    preemptive = True

    def __init__(self, candidates: Sequence[Policy],
                 chooser: Callable[[Switching, object], int | None] | None = None,
                 first: int = 0):
        if not candidates:
            raise ValueError("switching needs at least one candidate policy")
        super().__init__(candidates[0].placer)
        self.candidates = list(candidates)
        self.chooser = chooser
        self.first = first
        self.prepare(None)

    def prepare(self, ctx) -> None:
        self.active_index = self.first
        self.active = self.candidates[self.first]
        self.due = True  # the first pass chooses
        self.pending = False
        self.next_at = MIN_GAP
        self.completed = 0
        self.since = 0  # completed count the choice schedule counts from (``restart``)
        self.choices: list[tuple[float, int, int]] = []  # (time, completed, candidate)
        self._views: dict[int, _CandidateCtx] = {}
        self._ctx = None
        for c in self.candidates:
            c.prepare(ctx)

    # -- delegation ------------------------------------------------------------------
    @property
    def hand_back_victims(self) -> bool:  # read by the context at each preempting start
        return self.active.hand_back_victims

    def queue_key(self, js: JobState) -> tuple:
        return self.active.queue_key(js)

    def preempt_key(self, js: JobState, now: float) -> tuple:
        return self.active.preempt_key(js, now)

    def victims_for(self, ctx, js: JobState) -> list[JobState]:
        return self.active.victims_for(ctx, js)

    def _view(self, ctx, i: int) -> _CandidateCtx:
        if ctx is not self._ctx:
            self._ctx, self._views = ctx, {}
        v = self._views.get(i)
        if v is None:
            v = self._views[i] = _CandidateCtx(ctx, self, self.candidates[i])
        return v

    def _guard(self, cand: Policy, fn, args) -> bool:
        wanted = fn(*args) is not False if fn is not None else True
        return wanted and cand is self.active

    def on_start(self, ctx, js: JobState) -> None:
        for i, c in enumerate(self.candidates):
            c.on_start(self._view(ctx, i), js)

    def rearm(self, ctx, js: JobState) -> None:
        for i, c in enumerate(self.candidates):
            c.rearm(self._view(ctx, i), js)

    def on_stop(self, ctx, js: JobState) -> None:
        for i, c in enumerate(self.candidates):
            c.on_stop(self._view(ctx, i), js)

    def on_finish(self, ctx, js: JobState) -> None:
        for i, c in enumerate(self.candidates):
            c.on_finish(self._view(ctx, i), js)
        self.completed += 1
        if self.completed >= self.next_at:
            self.due = True
            n = self.completed - self.since
            self.next_at = self.since + max(n + MIN_GAP, math.ceil(n * GROWTH))

    def restart_choices(self, seen: int = 0) -> None:
        """A choice at the next pass, then again as the completed count grows from here
        as it does in a run that has seen ``seen`` completions (after a new chooser was
        swapped in, shown the last ``seen`` completions)."""
        self.since = self.completed - seen
        self.due = True
        self.next_at = self.since + max(seen + MIN_GAP, math.ceil(seen * GROWTH))

    # -- choosing --------------------------------------------------------------------
    def schedule(self, ctx) -> None:
        if self.due:
            self.due = False
            k = self.chooser(self, ctx) if self.chooser is not None else None
            if k is None:  # chosen outside: the caller switches, then this pass runs
                self.pending = True
                ctx.wakeup(ctx.now)
                return
            self.switch(ctx, k)
        self.active.schedule(ctx)

    def switch(self, ctx, k: int) -> None:
        """Puts candidate ``k`` in charge (from the next pass; re-keys the queue)."""
        if not 0 <= k < len(self.candidates):
            raise ValueError(f"no candidate {k} (there are {len(self.candidates)})")
        self.pending = False
        self.choices.append((ctx.now, self.completed, k))
        if k == self.active_index:
            return
        self.active_index, self.active = k, self.candidates[k]
        ctx.waiting.rekey()
        ctx.cycle.settled = None  # what the last greedy pass settled is in another order

    def queue_of(self, js: JobState) -> int | None:
        f = getattr(self.active, "queue_of", None)
        return f(js) if f is not None else None

    @property
    def label(self) -> str:
        return f"{self.name}+{self.placer.name}"
