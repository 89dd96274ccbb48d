"""Which jobs fill the agent's slots: the queue window and the running window.

The queue window holds the head of the queue (fit or not, so that a blocked head is
visible), the first blocked jobs that could start by preempting jobs of a higher LAS
level (``envs.reach``), then jobs that fit now: the earliest in queue order and the
shortest by predicted duration. A queue no longer than the window is shown whole. The
running window shows preemptible jobs first, in LAS's victim order (``envs.levels``).

``states`` is the decision's :class:`~autoflow.envs.reach.ReachStates` (None where
preemption is off), ``gone`` the jobs the agent preempted at this instant (not to be
restarted at it).
"""

from __future__ import annotations

from autoflow.core.jobstate import JobState

from .levels import las_level
from .obs_config import ObsConfig
from .reach import ReachStates


def queue_window(ctx, c: ObsConfig, states: ReachStates | None,
                 gone: set[int]) -> tuple[list[JobState], int]:
    """The shown waiting jobs in queue order, and how many waiting jobs are not shown."""
    waiting = ctx.waiting
    if len(waiting) <= c.queue_slots:  # every waiting job fits in the window
        return waiting.first(c.queue_slots), 0
    shown = waiting.first(c.head_slots)
    seen = {js.idx for js in shown}
    n_reach = min(c.reach_slots, c.queue_slots - len(shown)) if states else 0
    if len(waiting) <= min(c.scan_limit, c.reach_scan_limit):
        fitting, reach = walk(ctx, seen, n_reach, states, gone)
    else:
        fitting, reach = search(ctx, c, seen, n_reach, states, gone)
    if states is not None:
        shown = shown + reach
        seen.update(js.idx for js in reach)
        fitting = [js for js in fitting if js.idx not in seen]
    room = c.queue_slots - len(shown)
    early = fitting[: (room + 1) // 2]
    rest = sorted(fitting[len(early):], key=lambda js: (js.predicted, js.idx))
    shown = shown + early + rest[: room - len(early)]
    if len(shown) < c.queue_slots:  # few fit: show more of the queue
        ids = {s.idx for s in shown}
        more = [js for js in waiting.first(c.queue_slots + len(shown)) if js.idx not in ids]
        shown += more[: c.queue_slots - len(shown)]
    shown.sort(key=waiting.key_of)
    return shown, len(waiting) - len(shown)


def walk(ctx, seen: set[int], n_reach: int, states: ReachStates | None,
         gone: set[int]) -> tuple[list[JobState], list[JobState]]:
    """A short queue in one pass: the jobs that fit now (not shown already) and the
    first ``n_reach`` blocked ones that preempting jobs of a higher LAS level would
    let start, both in queue order. The same lists as ``search``, which skips
    whole shapes to stay cheap on a long queue."""
    fitting: list[JobState] = []
    reach: list[JobState] = []
    rs = states
    top = rs.top if rs is not None else 0
    for js in ctx.waiting:
        if js.idx in gone:
            continue
        if ctx.fits(js):
            if js.idx not in seen:
                fitting.append(js)
        elif (len(reach) < n_reach and js.idx not in seen
              and (k := las_level(js.attained)) < top and rs.fits_level(k, js.req)):
            reach.append(js)
    return fitting, reach


def search(ctx, c: ObsConfig, seen: set[int], n_reach: int, states: ReachStates | None,
           gone: set[int]) -> tuple[list[JobState], list[JobState]]:
    """``walk`` for a long queue: at most ``scan_limit`` fitting jobs, and the
    blocked ones found within ``reach_scan_limit`` jobs examined."""
    fitting: list[JobState] = []
    for js in ctx.open_waiting():
        if len(fitting) >= c.scan_limit:
            break
        if js.idx not in seen and js.idx not in gone and ctx.fits(js):
            fitting.append(js)
    reach = (states.first_blocked(ctx, seen | gone, n_reach, c.reach_scan_limit)
             if states else [])
    return fitting, reach


def running_window(keyed: list[tuple], slots: int) -> tuple[list[JobState], list[tuple]]:
    """The shown running jobs, LAS's victims first (highest level, then the latest to
    reach it), and their ``(level, entered, start order)`` keys. ``keyed``:
    ``running_levels`` of the running jobs."""
    top = sorted(keyed)[:slots]  # keys are unique (start order)
    return [k[-1] for k in top], [(-k[1], -k[2], -k[3]) for k in top]
