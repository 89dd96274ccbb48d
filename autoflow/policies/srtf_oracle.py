"""srtf-oracle: shortest remaining time first by the *true* remaining time, preemptive
(an oracle: not deployable). A waiting job preempts running training jobs with more
remaining time when it cannot otherwise start."""

from __future__ import annotations

from .base import Policy
from .preemptive import preemptive_pass


class SrtfOracle(Policy):
    name = "srtf-oracle"
    oracle = True
    preemptive = True

    def queue_key(self, js) -> tuple:
        return (js.duration - js.progress, js.submit)  # fixed while waiting

    def preempt_key(self, js, now: float) -> tuple:
        return (js.remaining(now),)

    def schedule(self, ctx) -> None:
        preemptive_pass(ctx)
