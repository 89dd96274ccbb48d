"""What a learned scheduler sees at a decision, what it may do, and doing it.

Shared by the Gymnasium environment (training) and the ``rl`` policy (bench, service),
so that the agent sees exactly the same thing in both. Everything is computed from a
:class:`~autoflow.core.context.SchedContext`; the true duration is never read.

The observation has a fixed size whatever the cluster or the queue:

* ``jobs``: ``queue_slots`` rows of job features, a window of the waiting queue
  (``envs.window``): its head, blocked jobs that preempting would let start
  (``envs.reach``), jobs that fit now. How many waiting jobs are not shown is a cluster
  feature. Rows are kept per job between decisions (``envs.rows``).
* ``running``: ``running_slots`` rows of features of running jobs, preemptible ones
  first, in LAS's victim order (``envs.levels``).
* ``cluster``: free capacity (in all and by GPU type), fragmentation, queue and
  running-set summaries (``envs.cluster_row``).

Actions (``envs.obs_config``): ``0..Q-1`` start queue slot *i*; ``Q..Q+R-1`` preempt
running slot *j*; ``Q+R`` wait for the next event. This module holds the
:class:`Observer`, which builds a :class:`Decision` and applies an action; it also
re-exports the names of the modules above that were once defined here.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

import numpy as np

from autoflow.core.jobstate import JobState

from .cluster_row import ClusterRow
from .features import CLIP, CLUSTER_FEATURES, JOB_FEATURES, RUNNING_FEATURES, TYPE_SLOTS
from .las_choice import las_action
from .levels import agent_queue_key, arm_level_wakeup, las_level, running_levels
from .obs_config import ObsConfig
from .reach import ReachStates
from .rows import N_JOB, N_RUN, JobRows, RunningRows
from .window import queue_window, running_window

__all__ = [
    "CLIP", "CLUSTER_FEATURES", "JOB_FEATURES", "RUNNING_FEATURES", "TYPE_SLOTS",
    "Decision", "ObsConfig", "Observer", "agent_queue_key", "arm_level_wakeup",
    "las_level", "running_levels",
]

_LAS_CHOICE, _LAS_VICTIM = JOB_FEATURES.index("las_choice"), RUNNING_FEATURES.index("las_victim")
_LAS_WAITS = CLUSTER_FEATURES.index("las_waits")


@dataclass
class Decision:
    obs: dict[str, np.ndarray]
    mask: np.ndarray  # bool, one per action
    queue: list[JobState | None]
    running: list[JobState | None]
    now: float
    reachable: list[bool]  # per queue slot: fits once every job of a higher LAS level is
    # preempted (False where preemption is off)
    victim_keys: list[tuple]  # per shown running job: (LAS level, entered it, start order)
    can_act: bool = True  # some start or preemption is allowed (else only waiting)


_OBSERVERS = itertools.count()


class Observer:
    """Builds decisions from a scheduling context and applies actions to it."""

    def __init__(self, config: ObsConfig | None = None):
        self.config = config or ObsConfig()
        c = self.config
        if c.queue_slots < 1 or c.running_slots < 1 or not 0 <= c.head_slots <= c.queue_slots:
            raise ValueError(f"bad observation config {c}")
        # per decision, from the context's cycle state (``ctx.cycle.instant``): the jobs
        # the agent preempted at this instant (not restarted at it) and the reachable
        # states, where preemption is on
        self._preempted_now: set[int] = set()
        self._reach: ReachStates | None = None
        self.scratch_key = ("agent", next(_OBSERVERS))  # its entry in the cycle state
        self._cluster = ClusterRow(c.queue_slots)  # keeps the cluster's GPU type order
        self._ctx = None  # the run the row tables belong to
        q, r = c.queue_slots * len(JOB_FEATURES), c.running_slots * len(RUNNING_FEATURES)
        self._size = q + r + len(CLUSTER_FEATURES)
        self._zeros = [0.0] * max(q, r)  # padding of absent rows
        self._pack = struct.Struct(f"{self._size}d").pack  # the fastest list -> array
        self._views = lambda buf: (buf[:q].reshape(c.queue_slots, -1),
                                   buf[q: q + r].reshape(c.running_slots, -1), buf[q + r:])

    # -- the decision ---------------------------------------------------------------
    def observe(self, ctx) -> Decision:
        c = self.config
        now = ctx.now
        kept_now = ctx.cycle.instant(self.scratch_key, dict, now)
        self._preempted_now = kept_now.setdefault("preempted", set())
        total_gpus = max(1.0, ctx.state.total_milli / 1000.0)
        if ctx is not self._ctx:  # a new run: fresh tables of rows
            self._ctx = ctx
            self._job_rows, self._run_rows = JobRows(total_gpus), RunningRows(total_gpus)
        keyed, n_pre, level_sum, victims = running_levels(ctx.running.values(), now)
        if c.preemption:  # the reachable states of the last decision, if still true
            last = kept_now.get("reach")
            kept = last.states_if_current(ctx) if last is not None else None
            self._reach = kept_now["reach"] = ReachStates(ctx, victims, kept)
        queue, hidden = queue_window(ctx, c, self._reach, self._preempted_now)
        running, victim_keys = running_window(keyed, c.running_slots)
        head = ctx.waiting.head()

        q = c.queue_slots
        gone, fits_now_ = self._preempted_now, ctx.fits
        fits = [js.idx not in gone and fits_now_(js) for js in queue]
        blocked = not all(fits)
        reachable = (self._reachable(ctx, queue, fits, now) if c.preemption and blocked
                     else [False] * len(queue))
        flat: list[float] = []  # jobs, running, cluster: one float32 array at the end
        for row in self._job_rows.rows(queue, fits, reachable, head, now):
            flat += row
        flat += self._zeros[: (q - len(queue)) * N_JOB]
        preempt = [False] * c.running_slots
        if running:
            for row in self._run_rows.rows(running, now, [k[0] for k in victim_keys]):
                flat += row
            if c.preemption and blocked:
                preempt[: len(running)] = [r.job.preemptible and r.seg_start < now
                                           for r in running]
        flat += self._zeros[: (c.running_slots - len(running)) * N_RUN]
        n_fit = sum(fits)
        wait = not (not ctx.running and n_fit)
        mask = np.array([*fits, *[False] * (q - len(queue)), *preempt, wait], dtype=bool)
        flat += self._cluster.row(ctx, queue, hidden, n_fit, now, total_gpus, n_pre,
                                  level_sum)
        buf = np.frombuffer(self._pack(*flat), dtype=np.float64).astype(np.float32)
        np.minimum(buf, CLIP, out=buf)
        np.maximum(buf, -CLIP, out=buf)
        jobs, run, cluster = self._views(buf)
        obs = {"jobs": jobs, "running": run, "cluster": cluster}
        pad_q = [*queue, *[None] * (c.queue_slots - len(queue))]
        pad_r = [*running, *[None] * (c.running_slots - len(running))]
        pad_reach = [*reachable, *[False] * (c.queue_slots - len(queue))]
        d = Decision(obs, mask, pad_q, pad_r, now, pad_reach, victim_keys,
                     n_fit > 0 or True in preempt)
        if c.las_hint:
            a = las_action(d, c)
            if a < q:
                jobs[a, _LAS_CHOICE] = 1.0
            elif a < c.wait_action:
                run[a - q, _LAS_VICTIM] = 1.0
            else:
                cluster[_LAS_WAITS] = 1.0
        return d

    def _reachable(self, ctx, queue, fits, now: float) -> list[bool]:
        """Which blocked jobs would fit if every preemptible job of a higher LAS level
        (and not started at this instant) were preempted."""
        reach = self._reach
        return [not ok and js.idx not in self._preempted_now and reach.fits(js)
                for js, ok in zip(queue, fits)]

    # -- acting -----------------------------------------------------------------------
    def apply(self, ctx, decision: Decision, action: int) -> bool:
        """Does ``action``; False if it is not allowed now (nothing is changed then)."""
        c = self.config
        if not 0 <= action < c.n_actions or not decision.mask[action]:
            return False
        if action == c.wait_action:
            return True
        version = ctx.state.version
        if action < c.queue_slots:
            js = decision.queue[action]
            if js is None or not ctx.try_start(js):
                return False
            if self._reach is not None:
                self._reach.after_start(js.placement, version)
            return True
        r = decision.running[action - c.queue_slots]
        if r is None or r.status != "running":
            return False
        placement = r.placement
        ctx.preempt(r)
        self._preempted_now.add(r.idx)
        if self._reach is not None:
            self._reach.after_preempt(r, placement, version)
        return True
