"""las: Tiresias-style discretized two-dimensional least attained service (preemptive).

A job's attained service is GPUs x time it has run. Jobs sit in priority queues cut at
``THRESHOLDS`` GPU-seconds; a lower queue always runs first, first come first served
within a queue (by the time a job entered the queue). A waiting job preempts running
training jobs of strictly lower-priority queues. A job that has waited longer than
``STARVE_FACTOR`` times its last run goes back to the top queue (Tiresias' promotion).
No duration knowledge is used. (Gu et al., "Tiresias", NSDI '19.)
"""

from __future__ import annotations

import bisect

from .base import Policy, preemptive_pass

THRESHOLDS = (3600.0, 36000.0)  # GPU-seconds: 1 GPU-hour, 10 GPU-hours
STARVE_FACTOR = 8.0


class Las(Policy):
    name = "las"
    preemptive = True

    def level(self, attained: float) -> int:
        return bisect.bisect_right(THRESHOLDS, attained)

    def queue_key(self, js) -> tuple:
        level = self.level(js.attained)
        return (level, js.queue_since, js.submit)

    def preempt_key(self, js, now: float) -> tuple:
        if js.status == "waiting":
            starving = js.last_run > 0 and now - js.queue_since > STARVE_FACTOR * js.last_run
            return (0 if starving else self.level(js.attained),)
        return (self.level(js.attained_at(now)),)

    def on_start(self, ctx, js) -> None:
        # wake up when the job crosses into the next queue (it may then be preempted)
        level = self.level(js.attained)
        demand = js.job.gpu_demand
        if level < len(THRESHOLDS) and demand > 0:
            ctx.wakeup(ctx.now + (THRESHOLDS[level] - js.attained) / demand)

    def schedule(self, ctx) -> None:
        preemptive_pass(ctx)
