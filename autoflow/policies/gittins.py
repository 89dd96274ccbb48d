"""gittins: Tiresias' discretized Gittins index over attained GPU-time, learned online
(preemptive).

A job's attained service ``a`` is the GPU-seconds it has received. Its rank is the
reverse Gittins index of the distribution of job sizes (GPU-seconds) seen so far:

    rank(a) = min over quanta D of  E[min(S - a, D) | S > a] / P(S - a <= D | S > a)

the expected service still to spend per chance of completing, minimised over how much
more service one looks ahead (the quanta are the sizes seen; the true Gittins index).
Lower ranks run first; ties by submission. ``S`` is drawn from the sizes of *completed*
jobs only (nothing from a job still running), refreshed as they complete (every
completion at first, then each time the count grows by a tenth).

As in Tiresias, ranks are discretized at LAS's queue thresholds (3,600 and 36,000
GPU-seconds): a job's rank is the index at the start of its queue, and a running job's
rank changes when it crosses into the next queue (a wake-up; it may then be preempted).
A waiting job preempts running training jobs with a strictly worse rank. Before any job
has completed the rank is the start of the job's queue (``las``'s order); a job past
every size seen ranks last.

On heavy-tailed sizes the index of the next queue is worse (a job that ran past a
threshold is likely long): the policy behaves like LAS. On light-tailed ones it is
better (a job that has run is nearly done): like FIFO, and running jobs are not
preempted. Finer bins (a GPU-minute doubling) were measured and left: they preempt more
and vary more from trace to trace (benchmarks/RESULTS.md, "`gittins`").
(Gu et al., "Tiresias", NSDI '19, section 3.2; Gittins, "Bandit processes and dynamic
allocation indices", 1979.)
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from ..core.jobstate import WAITING
from .base import Policy
from .las import THRESHOLDS
from .preemptive import preemptive_pass

REFRESH = 1.1  # the size table is rebuilt when the completed count grows this much
EAGER = 64  # ... and at every completion until then
INF = math.inf
EPS = 1e-6  # attained service is a float sum: a job at a bin's start counts as in it
EDGES = tuple(THRESHOLDS)  # bin edges: LAS's queue thresholds


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
            if len(self.table):  # past every size seen: INF, the last (Tiresias)
                r = reverse_index(self.table, a)
            else:  # no size seen yet: the start of its LAS queue
                r = a
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
            if b > len(EDGES):
                return  # in the last bin: its rank no longer changes
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
        ctx.waiting.rekey()

    def schedule(self, ctx) -> None:
        preemptive_pass(ctx)
