"""las-fcfs: LAS as autoflow ran it before it followed Tiresias' published simulator.

The same queues and thresholds as ``las`` (``las-fcfs:T1/T2/...`` sets others), with
three rules of its own:

* a preempted job re-enters its queue at the back (first come, first served by the time
  it last joined the waiting queue);
* a waiting job preempts only running jobs of strictly lower-priority queues, so a job
  demoted into a queue is never preempted by that queue's waiting jobs;
* victims are preempted worst first until the waiting job fits, including ones that
  turn out not to be needed.

Kept because it beats ``las`` on some workloads (see ``benchmarks/RESULTS.md``), and
because the learned agent's actions express exactly these rules (``las-expert``).
"""

from __future__ import annotations

from ..core.jobstate import WAITING
from .las import Las


class LasFcfs(Las):
    name = "las-fcfs"
    hand_back_victims = False

    def queue_key(self, js) -> tuple:
        return (self.prio.get(js.idx, 0), js.queue_since, js.submit)

    def preempt_key(self, js, now: float) -> tuple:
        if js.status == WAITING:
            return (self.prio.get(js.idx, 0),)
        return (self.level(js.attained_at(now)),)

    def victims_for(self, ctx, js) -> list:
        k = self.preempt_key(js, ctx.now)[0]
        # lowest queue first; within a queue the one that entered it last first
        return [ctx.running[key[-1]] for lvl in range(len(self.ranked) - 1, k, -1)
                for key in reversed(self.ranked[lvl])]

    def _demote(self, ctx, js, version: int) -> bool:
        """Moves a running job to the next queue; a pass is needed only if a waiting job
        now outranks it."""
        if js.version != version or js.status != "running":
            return False
        self._unrank(js)
        p = self.prio[js.idx] = self.prio.get(js.idx, 0) + 1
        self._starts += 1
        self._rank(js, (0.0, 0, self._starts, 0))
        self._arm(ctx, js)
        head = ctx.waiting.head()
        return head is not None and self.prio.get(head.idx, 0) < p

    def _start_stamp(self, ctx) -> tuple:
        """Running jobs of a queue rank by when they entered it (started or demoted)."""
        return (0.0, 0, self._starts, 0)

    def on_stop(self, ctx, js) -> None:
        self._unrank(js)
        self.prio[js.idx] = max(self.prio.get(js.idx, 0), self.level(js.attained))
