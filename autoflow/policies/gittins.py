"""gittins: Tiresias' discretized Gittins index over attained GPU-time, learned online
(preemptive).

A job's attained service ``a`` is the GPU-seconds it has received. Its rank is the
reverse Gittins index of the distribution of job sizes (GPU-seconds) seen so far:

    rank(a) = min over quanta D of  E[min(S - a, D) | S > a] / P(S - a <= D | S > a)

the expected service still to spend per chance of completing, minimised over how much
more service one looks ahead (the quanta are the sizes seen; the true Gittins index).
Lower ranks run first; ties by submission. ``S`` is drawn from the sizes of *completed*
jobs only (nothing from a job still running), refreshed as they complete (every
completion at first, then each time the count grows by a tenth); before any job has
completed, and for a job past every size seen, the rank is the start of its LAS queue
(0, 3,600 or 36,000 GPU-seconds: ``las``'s rule, so that a cold start does not time-slice
every job).

On heavy-tailed sizes the index falls as a job runs on (it is likely to be long): the
policy behaves like LAS. On light-tailed ones it rises (a job that has run is nearly
done): like FIFO, and running jobs are not preempted. As in Tiresias, ranks are
discretized: attained service is binned at 60 GPU-seconds times powers of two (and at
LAS's thresholds), and a
running job's rank changes when it crosses into the next bin (a wake-up; it may then be
preempted). A waiting job preempts running training jobs with a strictly worse rank.
(Gu et al., "Tiresias", NSDI '19, section 3.2; Gittins, "Bandit processes and dynamic
allocation indices", 1979.)
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from ..core.jobstate import WAITING
from .base import Policy
from .las import THRESHOLDS, level_of
from .preemptive import preemptive_pass

UNIT = 60.0  # GPU-seconds: the first bin's width; bins double from there
REFRESH = 1.1  # the size table is rebuilt when the completed count grows this much
EAGER = 64  # ... and at every completion until then
INF = math.inf
EPS = 1e-6  # attained service is a float sum: a job at a bin's start counts as in it


# bin edges: a minute of one GPU doubling, and LAS's thresholds (so that the LAS rule,
# used before any size is known, changes a job's rank exactly where ``las`` would)
EDGES = tuple(sorted({UNIT * 2.0 ** k for k in range(48)} | set(THRESHOLDS)))


def bin_of(attained: float) -> int:
    """0 below the first edge, then 1, 2, ... for each edge passed."""
    return bisect.bisect_right(EDGES, attained)


def bin_start(b: int) -> float:
    return 0.0 if b == 0 else EDGES[b - 1]


def reverse_index(sizes: np.ndarray, a: float) -> float:
    """``rank(a)`` above over the sorted ``sizes`` (INF when none exceeds ``a``)."""
    k = int(np.searchsorted(sizes, a, side="right"))
    rest = sizes[k:] - a  # what the survivors still need
    m = len(rest)
    if m == 0:
        return INF
    # quantum D = rest[j]: completing within it are the first j+1 survivors; the others
    # spend D each
    done = np.arange(1, m + 1, dtype=float)
    spent = np.cumsum(rest) + (m - done) * rest
    return float(np.min(spent / done))


class Gittins(Policy):
    name = "gittins"
    preemptive = True

    def __init__(self, placer):
        super().__init__(placer)
        self.prepare(None)

    def prepare(self, ctx) -> None:
        self.sizes: list[float] = []  # completed jobs' GPU-seconds, sorted
        self.table = np.zeros(0)  # the sizes the ranks are from (a snapshot of ``sizes``)
        self.ranks: dict[int, float] = {}  # bin -> rank, from ``table``

    # -- ranks ---------------------------------------------------------------------------
    def rank(self, attained: float) -> float:
        b = bin_of(attained + EPS)
        r = self.ranks.get(b)
        if r is None:
            a = bin_start(b)
            r = reverse_index(self.table, a) if len(self.table) else INF
            if r == INF:  # no size seen yet, or past every size seen: LAS's queues
                r = (0.0, *THRESHOLDS)[level_of(a)]
            self.ranks[b] = r
        return r

    def queue_key(self, js) -> tuple:
        return (self.rank(js.attained), js.submit)

    def preempt_key(self, js, now: float) -> tuple:
        if js.status == WAITING:
            return (self.rank(js.attained),)
        return (self.rank(js.attained_at(now)),)

    # -- bookkeeping ---------------------------------------------------------------------
    def on_start(self, ctx, js) -> None:
        if js.job.preemptible:
            self._arm(ctx, js)

    def rearm(self, ctx, js) -> None:
        if js.job.preemptible:
            self._arm(ctx, js)

    def _arm(self, ctx, js, b: int | None = None) -> None:
        """Wakes up when the running job crosses into bin ``b`` (default: the one after
        its current bin); its rank changes there."""
        demand = js.job.gpu_demand
        if demand > 0:
            if b is None:
                b = bin_of(js.attained_at(ctx.now) + EPS) + 1
            at = js.seg_start + (bin_start(b) - js.attained) / demand
            ctx.wakeup(max(at, ctx.now), self._crossed, ctx, js, js.version, b)

    def _crossed(self, ctx, js, version: int, b: int) -> bool:
        if js.version != version or js.status != "running":
            return False
        self._arm(ctx, js, b + 1)  # the next bin: progress even where floats round down
        return ctx.waiting.head() is not None  # a waiting job may now outrank it

    def on_finish(self, ctx, js) -> None:
        size = js.duration * js.job.gpu_demand  # completed: its size is known now
        bisect.insort(self.sizes, size)
        n = len(self.sizes)
        if n <= EAGER or n >= len(self.table) * REFRESH:
            self._refresh(ctx)

    def _refresh(self, ctx) -> None:
        """A new rank table from the sizes seen; the waiting jobs are ranked again."""
        self.table = np.asarray(self.sizes, dtype=float)
        self.ranks = {}
        waiting = ctx.waiting
        jobs = list(waiting)
        for w in jobs:
            waiting.remove(w)
        for w in jobs:
            waiting.add(w)

    def schedule(self, ctx) -> None:
        preemptive_pass(ctx)
