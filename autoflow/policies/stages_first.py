"""stages-first: las-fcfs, with every stage of a workflow kept in the first queue.

Independent jobs are scheduled exactly as ``las-fcfs`` schedules them: least attained
service, in queues cut at the thresholds (``stages-first:T1/T2/...`` sets others), a
waiting job preempting running jobs of strictly lower queues. A job that is a stage of a
workflow (``Job.workflow_id``) is never demoted: however much service it has attained it
stays in the first queue, so it is never preempted by an independent job and, when it
waits, it waits at the head of the queue with the jobs that have just arrived.

Why: under LAS a pipeline's training stage sinks to the lowest queue like any long job
and is then preempted by every new arrival, and its evaluation and serving stages cannot
start until it ends, so the whole workflow waits on the busiest queue. On
``builtin:ml-pipelines`` (philly-64) this is what makes ``las``'s average workflow
completion time 3.8x this policy's (cp-first's 2.2x), which is within 0.1% of the no-wait
bound there; the independent jobs pay 4-10% of their average completion time (see
``benchmarks/RESULTS.md``, "Workflows (issue 21)"). No duration knowledge is used.

The price: a long stage holds its GPUs against short independent jobs as a
non-preemptive scheduler would, and a workload made only of workflows is scheduled
first come, first served.
"""

from __future__ import annotations

from .las_fcfs import LasFcfs


def is_stage(js) -> bool:
    """Whether the job is a stage of a workflow."""
    return bool(js.job.workflow_id)


class StagesFirst(LasFcfs):
    name = "stages-first"

    def preempt_key(self, js, now: float) -> tuple:
        return (0,) if is_stage(js) else super().preempt_key(js, now)

    def _arm(self, ctx, js) -> None:
        if not is_stage(js):  # a stage never crosses into the next queue
            super()._arm(ctx, js)

    def on_stop(self, ctx, js) -> None:
        if is_stage(js):
            self._unrank(js)
            self.prio[js.idx] = 0
        else:
            super().on_stop(ctx, js)
