"""What the simulator integrates over a run: GPU allocation, jobs in the system (plain
and weighted by 1 / duration, for the rewards), inference SLO misses, fragmentation.

A :class:`~autoflow.core.backend.Meter` of the scheduler core: told of every change
before it happens. It may read true durations (it is the simulator's, not a policy's).
"""

from __future__ import annotations

from ..job import BOUNDED_SLOWDOWN_MIN_S
from ..state import ClusterState


class SimMeter:
    def __init__(self, state: ClusterState, durations: list[float], frag_step: float):
        self.state = state
        self._weights = [1.0 / max(d, BOUNDED_SLOWDOWN_MIN_S) for d in durations]
        self.alloc_integral = 0.0  # milli-GPU-seconds allocated
        # jobs arrived and not finished, integrated over time (= total JCT at the end),
        # the same weighted by 1/duration (= total bounded slowdown), SLO misses
        self.in_system = 0
        self._in_system_weight = 0.0
        self.in_system_integral = 0.0
        self.slowdown_integral = 0.0
        self.slo_misses = 0
        self._last_t = 0.0
        self._frag_sum = 0.0
        self._frag_n = 0
        self._frag_next = 0.0
        self._frag_step = frag_step

    def advance(self, now: float) -> None:
        dt = now - self._last_t
        self.alloc_integral += self.state.used_milli * dt
        self.in_system_integral += self.in_system * dt
        self.slowdown_integral += self._in_system_weight * dt
        self._last_t = now

    def arrived(self, js) -> None:
        self.in_system += 1
        self._in_system_weight += self._weights[js.idx]

    def first_start(self, js, slo_missed: bool) -> None:
        if slo_missed:
            self.slo_misses += 1

    def finished(self, js) -> None:
        self.in_system -= 1
        self._in_system_weight -= self._weights[js.idx]

    def pass_begins(self, now: float) -> None:
        if now >= self._frag_next:  # time-averaged fragmentation, sampled at passes
            self._frag_sum += self.state.fragmentation()
            self._frag_n += 1
            self._frag_next = now + self._frag_step

    @property
    def fragmentation(self) -> float:
        return self._frag_sum / max(1, self._frag_n)
