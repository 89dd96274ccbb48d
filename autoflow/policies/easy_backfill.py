"""easy-backfill: FIFO with EASY backfilling on predicted durations.

When the head of the queue does not fit, it gets a reservation: the earliest time at
which, by the predicted remaining times of running jobs, enough GPUs of its allowed
types will be free (the *shadow time*). Later jobs may start now if they fit and
either are predicted to end before the shadow time or use only GPUs the head will not
need then. Predictions come from the history estimator, never the true durations.
(Lifka, "The ANL/IBM SP scheduling system", 1995.)
"""

from __future__ import annotations

from .base import Policy, greedy_pass


class EasyBackfill(Policy):
    name = "easy-backfill"

    def schedule(self, ctx) -> None:
        head = greedy_pass(ctx, blocking=True)
        if head is None or ctx.nothing_fits():
            return
        shadow, extra = self._reservation(ctx, head)
        for js in ctx.open_waiting(after=ctx.waiting.key_of(head)):
            if ctx.nothing_fits():
                break
            ends_in_time = ctx.now + js.predicted <= shadow
            demand = js.job.gpu_demand
            runs_past_shadow = not ends_in_time
            if (ends_in_time or demand <= extra) and ctx.try_start(js) and runs_past_shadow:
                extra -= demand  # it runs past the shadow time on GPUs the head leaves

    @staticmethod
    def _reservation(ctx, head) -> tuple[float, float]:
        state = ctx.state
        allowed = state.type_masks[head.req.types_key] & state.up
        free = float(state.free_milli[allowed].sum()) / 1000.0
        need = head.job.gpu_demand
        if free >= need:  # enough GPUs in total, just fragmented: reserve "now"
            return ctx.now, free - need
        ends = []
        for js in ctx.running.values():
            gpus = sum(len(g) * m for n, g, m, _c, _m in js.placement if allowed[n]) / 1000.0
            if gpus:
                ends.append((ctx.now + ctx.predicted_remaining(js), gpus))
        ends.sort()
        for t, gpus in ends:
            free += gpus
            if free >= need:
                return t, free - need
        return float("inf"), 0.0
