"""The agent's LAS levels: its queue order, its wake-ups, and the running jobs by level.

The agent sees LAS's queues (``las_level`` is LAS's ``level_of``): waiting jobs in order
of least attained service (``agent_queue_key``), running ones in LAS's victim order
(``running_levels``), and it is asked to decide again when a running training job's
attained service crosses into the next level (``arm_level_wakeup``), as LAS is.
"""

from __future__ import annotations

from autoflow.core.jobstate import JobState
from autoflow.job import TRAINING
from autoflow.policies.las import THRESHOLDS, crosses_at, level_of

las_level = level_of  # the agent sees LAS's queues


def arm_level_wakeup(ctx, js: JobState) -> None:
    """Asks for a decision when a running training job's attained service crosses into the
    next LAS level (then it may become worth preempting), as LAS itself does."""
    demand, level = js.job.gpu_demand, las_level(js.attained)
    if level < len(THRESHOLDS) and demand > 0 and js.job.preemptible:
        ctx.wakeup(max(crosses_at(js, level), ctx.now), _crossed, ctx, js, js.version,
                   level + 1)


def _crossed(ctx, js: JobState, version: int, level: int) -> bool:
    if js.version != version or js.status != "running":
        return False  # it stopped meanwhile
    if level < len(THRESHOLDS):  # and on to the level after
        ctx.wakeup(max(crosses_at(js, level), ctx.now), _crossed, ctx, js, version,
                   level + 1)
    head = ctx.waiting.head()  # as LAS: a pass only if a waiting job now outranks it
    return head is not None and las_level(head.attained) < level


def running_levels(running, now: float) -> tuple[list[tuple], int, int, list[tuple]]:
    """``(not preemptible, -level, -entered, -start order, job)`` for every running job:
    its LAS level, when it entered that level (its start, or the moment its attained
    service crossed the level's threshold while running) and its start order. Sorted
    ascending, this is las-fcfs's victim order (highest level, the latest to reach it).
    Also how many running jobs are preemptible (training), the sum of their levels, and
    ``(level, job)`` of those not started at ``now`` (the victims that pass may take).
    Levels and crossings are LAS's own (``level_of``, ``crosses_at``)."""
    out = []
    append = out.append
    n_pre = level_sum = 0
    victims = []
    for r in running:
        start = r.seg_start
        level = level_of(r.attained_at(now))
        fixed = r.job.kind != TRAINING
        if not fixed:
            n_pre += 1
            level_sum += level
            if start < now:
                victims.append((level, r))
        entered = start
        if level and r.attained < THRESHOLDS[level - 1] and r.job.gpu_demand > 0:
            entered = crosses_at(r, level - 1)
        append((fixed, -level, -entered, -r.start_seq, r))
    return out, n_pre, level_sum, victims


def agent_queue_key(js: JobState) -> tuple:
    """The queue order the agent sees: least attained service first, then arrival."""
    return (las_level(js.attained), js.queue_since, js.submit)
