"""srw: shortest remaining workflow first, non-preemptive (a workflow baseline).

A job's rank is the predicted work its whole workflow has left when it joins the queue:
the sum, over the workflow's jobs that have not finished, of predicted remaining
duration times GPUs held (a CPU-only stage counts as a hundredth of a GPU, so that its
time is not free). Every waiting job that fits is started, the workflow with the least
work left first, ties by submission. A job outside any workflow is a workflow of one:
this is sjf by predicted GPU-time for independent jobs.

Shortest-remaining-processing-time first lowers the mean completion time of single
jobs; applied to whole workflows it finishes nearly done pipelines first (the
"smallest remaining" rule of multi-stage job schedulers such as Graphene's and
Decima's baselines). Predictions come from the history estimator, never the truth.
"""

from __future__ import annotations

from ..core.jobstate import DONE
from .base import Policy, greedy_pass

CPU_ONLY_WEIGHT = 0.01  # GPUs a CPU-only stage counts as


def remaining_work(ctx, js) -> float:
    """Predicted GPU-seconds left in ``js``'s workflow (its own, outside any)."""
    total = 0.0
    for s in ctx.workflow(js):
        if s.status == DONE:
            continue
        pred = s.predicted if s.predicted > 0 else ctx.predict(s.job)
        total += max(pred - s.progress, 0.0) * max(s.job.gpu_demand, CPU_ONLY_WEIGHT)
    return total


class ShortestRemainingWorkflow(Policy):
    name = "srw"

    def prepare(self, ctx) -> None:
        self.ctx = ctx

    def queue_key(self, js) -> tuple:
        return (remaining_work(self.ctx, js), js.submit)

    def schedule(self, ctx) -> None:
        greedy_pass(ctx)
