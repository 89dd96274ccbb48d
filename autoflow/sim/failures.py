"""Node failures: each live node fails at a constant rate and is repaired after a delay.

Jobs on a failed node go back to the queue; training resumes from its last checkpoint.
Randomness comes only from the configured seed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .simulator import SimConfig, Simulator


class FailureModel:
    def __init__(self, sim: Simulator, config: SimConfig):
        self.sim = sim
        self.rate = config.failure_rate_per_node_day / 86400.0
        self.repair = config.repair_time_s
        self.interval = config.checkpoint_interval_s
        self.rng = np.random.default_rng([config.seed, 7919])
        self.count = 0

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
                continue
            yield sim.env.timeout(float(self.rng.exponential(1.0 / (self.rate * live.size))))
            if sim.all_done():
                return
            live = np.flatnonzero(state.up)
            if live.size:
                self.fail(int(self.rng.choice(live)))

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
