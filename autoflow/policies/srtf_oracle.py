"""srtf-oracle: shortest remaining time first by the *true* remaining time, preemptive
(an oracle: not deployable). A waiting job preempts running training jobs with more
remaining time when it cannot otherwise start.

Victims are ranked by their remaining time at the pass's instant: the ranking of the
running training jobs is built once per instant (at the first job that needs victims)
and kept by the start and stop hooks while the instant lasts, instead of sorting every
running job again at each job that does not fit. The running training jobs are kept
by the same hooks."""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from .base import Policy
from .preemptive import preemptive_pass


class SrtfOracle(Policy):
    name = "srtf-oracle"
    oracle = True
    preemptive = True

    def __init__(self, placer):
        super().__init__(placer)
        self._at: float | None = None  # the instant the ranking is for
        self._ranked: list[tuple] = []  # (remaining, idx, job) ascending
        self._rems: list[float] = []  # the remaining times alone, for bisect
        self._rem_of: dict[int, float] = {}  # a ranked job's remaining time then
        self._running: dict[int, object] = {}  # the running training jobs (preemptible)

    def queue_key(self, js) -> tuple:
        return (js.duration - js.progress, js.submit)  # fixed while waiting

    def preempt_key(self, js, now: float) -> tuple:
        return (js.remaining(now),)

    def schedule(self, ctx) -> None:
        preemptive_pass(ctx)

    def victims_for(self, ctx, js) -> list:
        """``Policy.victims_for``: running training jobs with more remaining time than
        ``js``, the most first (ties: the higher index first)."""
        now = ctx.now
        if self._at != now:
            self._rank(ctx)
        k = js.remaining(now)  # preempt_key(js, now)
        return [r for _rem, _i, r in reversed(self._ranked[bisect_right(self._rems, k):])]

    def _rank(self, ctx) -> None:
        now = ctx.now
        ranked = []
        for r in self._running.values():
            # r.remaining(now) written out: the same operations in the same order (so
            # the same floats), without three calls per job
            rem = r.truth - (r.progress + max(0.0, now - r.seg_start - r.seg_overhead))
            ranked.append((max(0.0, rem), r.idx, r))
        ranked.sort()
        self._ranked = ranked
        self._rems = [x[0] for x in ranked]
        self._rem_of = {i: rem for rem, i, _r in ranked}
        self._at = now

    def prepare(self, ctx) -> None:
        self._at, self._running = None, {}

    def on_start(self, ctx, js) -> None:
        if not js.preemptible:
            return
        self._running[js.idx] = js
        if self._at == ctx.now:  # (a ranking of another instant is built anew)
            rem = js.remaining(ctx.now)
            i = bisect_left(self._ranked, (rem, js.idx))
            self._ranked.insert(i, (rem, js.idx, js))
            self._rems.insert(i, rem)
            self._rem_of[js.idx] = rem

    def on_stop(self, ctx, js) -> None:
        self._running.pop(js.idx, None)
        rem = self._rem_of.pop(js.idx, None)
        if rem is not None:
            i = bisect_left(self._ranked, (rem, js.idx))
            del self._ranked[i], self._rems[i]
