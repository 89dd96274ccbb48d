"""cp-first: critical path first, non-preemptive (a workflow baseline).

A job's rank is the predicted length of the longest chain of work it still heads: its
own predicted duration plus the longest such chain among the jobs that depend on it
(``autoflow.workflow``), each stage predicted by the history estimator (the stages not
submitted yet too; never the truth). Every waiting job that fits is started, longest
chain first, ties by submission. A job outside any workflow heads a chain of one.

This is the list-scheduling rule of HEFT and Graphene and the critical-path baseline
Decima (SIGCOMM'19) compares against: the stages that gate the most remaining work go
first, so that a pipeline's tail is not left waiting behind short independent jobs.
"""

from __future__ import annotations

from .base import Policy, greedy_pass


def critical_path(ctx, js, memo: dict[int, float] | None = None) -> float:
    """Predicted seconds of the longest chain from ``js`` through its dependants."""
    memo = {} if memo is None else memo
    got = memo.get(js.idx)
    if got is not None:
        return got
    own = js.predicted if js.predicted > 0 else ctx.predict(js.job)
    tail = max((critical_path(ctx, kid, memo) for kid in ctx.dependants(js)), default=0.0)
    memo[js.idx] = out = max(own - js.progress, 0.0) + tail
    return out


class CriticalPathFirst(Policy):
    name = "cp-first"

    def prepare(self, ctx) -> None:
        self.ctx = ctx

    def queue_key(self, js) -> tuple:
        return (-critical_path(self.ctx, js), js.submit)

    def schedule(self, ctx) -> None:
        greedy_pass(ctx)
