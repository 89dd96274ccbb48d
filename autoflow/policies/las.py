"""las: Tiresias-style discretized two-dimensional least attained service (preemptive).

A job's attained service is GPUs x time it has run. Jobs sit in priority queues cut at
``THRESHOLDS`` GPU-seconds (``las:T1/T2/...`` sets others); a lower queue always runs
first, first come first served within a queue (by the time a job entered the queue). A
waiting job preempts running training jobs of strictly lower-priority queues. No duration
knowledge is used.
Tiresias' optional starvation promotion is left out: with short preempted segments it
made jobs thrash (measured on ITP cluster08: 5x the preemptions). (Gu et al., "Tiresias", NSDI '19.)
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


def parse_thresholds(arg: str) -> tuple[float, ...]:
    """``"1800/18000"`` -> ``(1800.0, 18000.0)``: GPU-seconds, positive and increasing."""
    try:
        values = tuple(float(x) for x in arg.split("/"))
    except ValueError:
        raise ConfigError(f"las:{arg}: thresholds must be numbers of GPU-seconds separated "
                          f"by '/', e.g. las:3600/36000") from None
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise ConfigError(f"las:{arg}: every threshold must be a positive number of "
                          f"GPU-seconds")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ConfigError(f"las:{arg}: thresholds must increase (each queue starts where "
                          f"the one before ends)")
    return values


class Las(Policy):
    name = "las"
    preemptive = True

    def __init__(self, placer, thresholds: tuple[float, ...] = THRESHOLDS):
        super().__init__(placer)
        self.thresholds = tuple(thresholds)
        if self.thresholds != THRESHOLDS:
            self.name = "las:" + "/".join(f"{t:g}" for t in self.thresholds)
        # running preemptible jobs by queue level, kept current by start/stop hooks and
        # demotion timers
        self.running_at: list[dict] = [{} for _ in range(len(self.thresholds) + 1)]

    def level(self, attained: float) -> int:
        return level_of(attained, self.thresholds)

    def waiting_level(self, js) -> int:
        """A job never climbs back: it keeps the queue it was demoted to while running."""
        return max(js.priority, self.level(js.attained))

    def queue_key(self, js) -> tuple:
        return (self.waiting_level(js), js.queue_since, js.submit)

    def preempt_key(self, js, now: float) -> tuple:
        if js.status == WAITING:
            return (self.waiting_level(js),)
        return (self.level(js.attained_at(now)),)

    def victims_for(self, ctx, js) -> list:
        k = self.preempt_key(js, ctx.now)[0]
        # lowest queue first; within a queue the most recently started first
        return [r for lvl in range(len(self.running_at) - 1, k, -1)
                for r in reversed(self.running_at[lvl].values())]

    def on_start(self, ctx, js) -> None:
        js.priority = self.waiting_level(js)
        if js.job.preemptible:
            self.running_at[js.priority][js.idx] = js
            self._arm(ctx, js)

    def _arm(self, ctx, js) -> None:
        """Wakes up when the job crosses into the next queue (it may then be preempted)."""
        level, demand = js.priority, js.job.gpu_demand
        if level < len(self.thresholds) and demand > 0:
            ctx.wakeup(max(crosses_at(js, level, self.thresholds), ctx.now), self._demote, ctx,
                       js, js.version)

    def _demote(self, ctx, js, version: int) -> bool:
        """Moves a running job to the next queue; a pass is needed only if a waiting job
        now outranks it."""
        if js.version != version or js.status != "running":
            return False
        del self.running_at[js.priority][js.idx]
        js.priority += 1
        self.running_at[js.priority][js.idx] = js
        self._arm(ctx, js)
        head = ctx.waiting.head()
        return head is not None and self.waiting_level(head) < js.priority

    def on_stop(self, ctx, js) -> None:
        self.running_at[js.priority].pop(js.idx, None)

    def schedule(self, ctx) -> None:
        preemptive_pass(ctx)
