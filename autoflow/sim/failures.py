"""Node failures: each live node fails at a constant rate and is repaired after a delay.

Jobs on a failed node go back to the queue; training resumes from its last checkpoint.
Randomness comes only from the configured seed.

A run that failures keep from making progress ends with a clear error instead of running
forever (``--failure-rate 1000``: a gang that needs eight nodes up at once never starts,
and jobs that are killed before their first checkpoint never keep any work). Progress is
a finished job or work that a failure would keep (``_kept``: checkpointed training, any
inference work); when jobs are waiting or running and none is made for
``STUCK_REPAIR_CYCLES`` repair times (and at least twice the checkpoint interval plus the
restart overhead, so that an uninterrupted job always passes a checkpoint), the run
stops with :class:`~autoflow.errors.ClusterError` naming a job that is stuck.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..core.jobstate import DONE, RUNNING
from ..errors import ClusterError

if TYPE_CHECKING:
    from .simulator import SimConfig, Simulator


STUCK_REPAIR_CYCLES = 20  # repair times without progress before a run is declared stuck


class FailureModel:
    def __init__(self, sim: Simulator, config: SimConfig):
        self.sim = sim
        self.rate = config.failure_rate_per_node_day / 86400.0
        self.repair = config.repair_time_s
        self.interval = config.checkpoint_interval_s
        self.rng = np.random.default_rng([config.seed, 7919])
        self.count = 0
        # the no-progress guard: a window of repair cycles, checked once per repair time
        self.window = max(STUCK_REPAIR_CYCLES * self.repair,
                          2.0 * (self.interval + config.restart_overhead_s))
        self._progress = (-1, -1.0)  # (jobs done, work kept) at the last progress
        self._since = 0.0  # when progress was last seen
        self._checked = -math.inf
        self._open: list = []  # submitted jobs not done at the last check
        self._seen = 0  # jobs submitted at the last check

    def start(self) -> None:
        if self.rate > 0:
            self.sim.env.process(self._failures())

    def _failures(self):
        sim = self.sim
        state = sim.state
        while not sim.all_done():
            live = np.flatnonzero(state.up)
            if live.size == 0:
                yield sim.env.timeout(self.repair)
                self.check_progress()
                continue
            yield sim.env.timeout(float(self.rng.exponential(1.0 / (self.rate * live.size))))
            if sim.all_done():
                return
            self.check_progress()
            live = np.flatnonzero(state.up)
            if live.size:
                self.fail(int(self.rng.choice(live)))

    def check_progress(self) -> None:
        """Raises ClusterError when no progress was made for ``window`` seconds while
        jobs were waiting or running (see the module docstring). Looks at most once per
        repair time; reads the state only."""
        sim = self.sim
        now = sim.env.now
        if now - self._checked < self.repair:
            return
        self._checked = now
        arrived = sim._next_arrival
        self._open = [js for js in (*self._open, *sim.jobs[self._seen:arrived])
                      if js.status != DONE]
        self._seen = arrived
        done = sim.core.done
        if not self._open:  # nothing waits or runs: idle, not stuck
            self._progress, self._since = (done, -1.0), now
            return
        kept = 0.0  # work of the open jobs that a failure now would keep
        for js in self._open:
            kept += (self._kept(js, js.running_progress(now)) if js.status == RUNNING
                     else js.progress)
        if done > self._progress[0] or kept > self._progress[1] + 1e-9:
            self._progress, self._since = (done, kept), now
            return
        self._progress = (done, kept)
        if now - self._since >= self.window:
            stuck = min(self._open, key=lambda js: (js.progress, js.submit))
            j = stuck.job
            raise ClusterError(
                f"no progress for {(now - self._since) / 3600:.1f} h of simulated time "
                f"({STUCK_REPAIR_CYCLES} or more repair times) under node failures: no job "
                f"finished or kept work; e.g. job {j.job_id} ({j.num_gpus} GPU(s), "
                f"{stuck.status}, failed {stuck.failures} time(s)) cannot run long enough "
                f"with {self.rate * 86400:g} failures per node per day and "
                f"{self.repair:g} s repairs; lower --failure-rate or --repair-time, or "
                "checkpoint more often (--checkpoint-interval)")

    def _kept(self, js, done: float) -> float:
        """Training resumes from its last checkpoint; other work is kept whole."""
        if js.preemptible and self.interval > 0:
            return math.floor(done / self.interval) * self.interval
        return done

    def fail(self, node: int) -> None:
        self.count += 1
        self.sim.env.timeout(self.repair).callbacks.append(
            lambda _e: self.sim.core.node_up(node))
        self.sim.core.node_down(node, self._kept)
