"""las: Tiresias' discretized two-dimensional least attained service (preemptive).

A job's attained service is GPUs x time it has run. Jobs sit in priority queues cut at
``THRESHOLDS`` GPU-seconds (``las:T1/T2/...`` sets others); a lower queue always runs
first. Within a queue jobs rank by when they *entered* it, as in the simulator
published with the paper:

* a job enters the first queue when it is submitted, and a lower queue when its
  attained service crosses that queue's threshold (while it runs);
* a preempted job keeps its place: it resumes before the jobs that entered its queue
  after it did;
* a running job demoted into a lower queue lines up behind the jobs already waiting
  there, so they may preempt it.

A waiting job may preempt running training jobs that rank below it (a lower queue, or
the same queue entered later), worst-ranked first, until it fits; victims it turns out
not to need are handed back before anything is preempted
(``SchedContext.start_with_preemption``). No duration knowledge is used. Tiresias'
optional starvation promotion is left out: with short preempted segments it made jobs
thrash (measured on ITP cluster08: 5x the preemptions). (Gu et al., "Tiresias",
NSDI '19.) The rules before these, with a preempted job queued behind its queue's
waiting jobs, are ``las-fcfs`` (``las_fcfs.py``).
"""

from __future__ import annotations

import bisect
import itertools
import math

from ..core.jobstate import WAITING
from ..errors import ConfigError
from .base import Policy
from .preemptive import preemptive_pass

THRESHOLDS = (3600.0, 36000.0)  # GPU-seconds: 1 GPU-hour, 10 GPU-hours
EPS = 1e-6  # attained service is a float sum: a job at a threshold counts as past it


def level_of(attained: float, thresholds: tuple[float, ...] = THRESHOLDS) -> int:
    """The LAS queue of a job with this much attained service (GPU-seconds)."""
    return bisect.bisect_right(thresholds, attained + EPS)


def crosses_at(js, level: int, thresholds: tuple[float, ...] = THRESHOLDS) -> float:
    """When the running job's attained service reaches ``thresholds[level]``."""
    return js.seg_start + (thresholds[level] - js.attained) / js.job.gpu_demand


def parse_thresholds(arg: str, policy: str = "las") -> tuple[float, ...]:
    """``"1800/18000"`` -> ``(1800.0, 18000.0)``: GPU-seconds, positive and increasing."""
    try:
        values = tuple(float(x) for x in arg.split("/"))
    except ValueError:
        raise ConfigError(f"{policy}:{arg}: thresholds must be numbers of GPU-seconds separated "
                          f"by '/', e.g. {policy}:3600/36000") from None
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise ConfigError(f"{policy}:{arg}: every threshold must be a positive number of "
                          f"GPU-seconds")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ConfigError(f"{policy}:{arg}: thresholds must increase (each queue starts where "
                          f"the one before ends)")
    return values


def threshold_name(base: str, thresholds: tuple[float, ...]) -> str:
    """``las`` for Tiresias' thresholds, ``las:T1/T2`` otherwise."""
    if tuple(thresholds) == THRESHOLDS:
        return base
    return f"{base}:" + "/".join(f"{t:g}" for t in thresholds)


class Las(Policy):
    name = "las"
    preemptive = True

    def __init__(self, placer, thresholds: tuple[float, ...] = THRESHOLDS):
        super().__init__(placer)
        self.thresholds = tuple(thresholds)
        self.name = threshold_name(type(self).name, self.thresholds)
        self.prepare(None)

    def prepare(self, ctx) -> None:
        n = len(self.thresholds) + 1
        # running training jobs by queue, each queue's sorted by rank (``_stamp``)
        self.ranked: list[list[tuple]] = [[] for _ in range(n)]
        self.stamp: dict[int, tuple] = {}  # a running job's rank among its queue's
        self.fresh: list[dict[int, tuple]] = [{} for _ in range(n)]  # demoted just now
        self.fresh_at = -1.0  # the instant ``fresh`` is about
        self.wkey: dict[int, tuple] = {}  # a waiting job's queue key, fixed while it waits
        # a job's queue, kept here (not on the job) so that policies sharing a run (the
        # adaptive scheduler's candidates) keep their own
        self.prio: dict[int, int] = {}
        self._starts = 0

    def level(self, attained: float) -> int:
        return level_of(attained, self.thresholds)

    # -- ranks ---------------------------------------------------------------------------
    # Within a queue, running jobs rank first (in the order they started or were demoted
    # into it), then waiting jobs: those preempted, the latest preemption first, then
    # those that arrived or were demoted and preempted at once, in that order. A job
    # demoted this instant ranks last until the pass has run.

    def queue_key(self, js) -> tuple:
        key = self.wkey.get(js.idx)
        return key if key is not None else (0, 1, js.submit, js.submit, js.idx)

    def preempt_key(self, js, now: float) -> tuple:
        # every waiting job of a queue has the same victims (the running jobs of lower
        # queues and those demoted into its own just now), so one key for them all: the
        # pass then finds the victims once per queue (``preemptive._Reachable``)
        if js.status == WAITING:
            return (self.queue_key(js)[0], 0)
        p = self.prio.get(js.idx, 0)
        if self.fresh_at == now and js.idx in self.fresh[p]:
            return (p, 2) + self.fresh[p][js.idx]
        return (p, -1) + self.stamp.get(js.idx, ())

    def victims_for(self, ctx, js) -> list:
        """Running training jobs ranked below ``js``, the worst first: lower queues, the
        bottom of each first; in its own queue only jobs demoted into it just now."""
        k = self.preempt_key(js, ctx.now)[0]
        fresh = self.fresh if self.fresh_at == ctx.now else None
        running, out = ctx.running, []
        for lvl in range(len(self.ranked) - 1, k - 1, -1):
            if fresh and fresh[lvl]:
                out.extend(running[i] for _f, i in sorted(
                    ((f, i) for i, f in fresh[lvl].items()), reverse=True))
            if lvl > k:
                out.extend(running[key[-1]] for key in reversed(self.ranked[lvl])
                           if not (fresh and key[-1] in fresh[lvl]))
        return out

    # -- bookkeeping ---------------------------------------------------------------------
    def _rank(self, js, stamp: tuple) -> None:
        self.stamp[js.idx] = stamp
        bisect.insort(self.ranked[self.prio.get(js.idx, 0)], stamp + (js.idx,))

    def _unrank(self, js) -> None:
        stamp = self.stamp.pop(js.idx, None)
        if stamp is not None:
            lst = self.ranked[self.prio.get(js.idx, 0)]
            del lst[bisect.bisect_left(lst, stamp + (js.idx,))]

    def on_start(self, ctx, js) -> None:
        self.wkey.pop(js.idx, None)
        if js.job.preemptible:
            self._starts += 1
            self._rank(js, self._start_stamp(ctx))
            self._arm(ctx, js)

    def rearm(self, ctx, js) -> None:
        if js.job.preemptible:
            self._arm(ctx, js)

    def _start_stamp(self, ctx) -> tuple:
        """A started job's rank among the running jobs of its queue: by when it started,
        after the jobs demoted into the queue at an earlier instant."""
        return (ctx.clock(), 0, self._starts, 0)

    def _arm(self, ctx, js) -> None:
        """Wakes up when the job crosses into the next queue (it may then be preempted)."""
        level, demand = self.prio.get(js.idx, 0), js.job.gpu_demand
        if level < len(self.thresholds) and demand > 0:
            ctx.wakeup(max(crosses_at(js, level, self.thresholds), ctx.now), self._demote, ctx,
                       js, js.version)

    def _demote(self, ctx, js, version: int) -> bool:
        """Moves a running job to the back of the next queue; a pass is needed only if a
        job waits in that queue or above."""
        if js.version != version or js.status != "running":
            return False
        now = ctx.clock()
        if self.fresh_at != now:
            self.fresh = [{} for _ in self.fresh]
            self.fresh_at = now
        self._unrank(js)
        p = self.prio[js.idx] = self.prio.get(js.idx, 0) + 1
        self._rank(js, (now, 1, js.submit, js.idx))
        self.fresh[p][js.idx] = (js.submit, js.idx)
        self._arm(ctx, js)
        head = ctx.waiting.head()
        return head is not None and self.queue_key(head)[0] <= p

    def on_stop(self, ctx, js) -> None:
        now = ctx.clock()
        stamp = self.stamp.get(js.idx, (now, 0, 0, 0))
        p = self.prio.get(js.idx, 0)
        fresh = self.fresh_at == now and self.fresh[p].pop(js.idx, None) is not None
        self._unrank(js)
        # a crossing in the segment that just ended whose timer has not fired yet (the
        # job stopped at that instant): the job was demoted now
        lvl, demand = self.level(js.attained), js.job.gpu_demand
        if lvl > p and demand > 0:
            before = js.attained - demand * js.last_run  # attained at the segment's start
            crossed = js.seg_start + (self.thresholds[lvl - 1] - before) / demand
            self.prio[js.idx] = lvl
            self.wkey[js.idx] = (lvl, 1, crossed, js.submit, js.idx)
        elif fresh:  # demoted and preempted at once: the back of the queue
            self.wkey[js.idx] = (p, 1, now, js.submit, js.idx)
        else:  # preempted (or evicted): the front of the waiting jobs
            self.wkey[js.idx] = (p, 0, -now) + stamp

    def on_finish(self, ctx, js) -> None:
        self.wkey.pop(js.idx, None)
        self.prio.pop(js.idx, None)

    def queue_of(self, js) -> int:
        """The LAS queue the job is in now (0 is the first)."""
        return self.prio.get(js.idx, 0)

    def schedule(self, ctx) -> None:
        preemptive_pass(ctx)
        self.fresh_at = -1.0  # the pass has placed the jobs demoted before it
