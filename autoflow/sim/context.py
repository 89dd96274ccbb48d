"""SchedContext: what a policy may see and do during one scheduling pass."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..feasibility import fits_now
from ..state import ClusterState, Req
from .jobstate import JobState

if TYPE_CHECKING:
    from ..policies.base import Policy
    from ..policies.queue import SortedQueue
    from .simulator import Simulator


class SchedContext:
    """Binds a policy to a simulator. ``try_start`` remembers, within one pass, which
    requirement shapes did not fit, so a long queue costs little when the cluster is full
    (a job needing at least as much of everything as one that failed fails too)."""

    def __init__(self, sim: Simulator):
        self._sim = sim
        self.state: ClusterState = sim.state
        self.policy: Policy = sim.policy
        self._failed: dict[tuple, list[Req]] = {}
        self._best: tuple[int, int] | None = None
        self.now = 0.0

    # -- what the policy sees -------------------------------------------------
    @property
    def waiting(self) -> SortedQueue:
        return self._sim.waiting

    @property
    def running(self) -> dict[int, JobState]:
        return self._sim.running

    def nothing_fits(self) -> bool:
        """No free GPU share on any live node, and no waiting job needs only CPU."""
        return self.state.used_milli >= self._sim.live_milli and not self._sim.cpu_only_waiting

    def predicted_remaining(self, js: JobState) -> float:
        """Predicted remaining run time (from the history estimator, never the truth)."""
        done = js.running_progress(self.now)
        return max(js.predicted - done, 0.1 * done, 60.0)

    # -- what the policy does -------------------------------------------------
    def begin_pass(self, now: float) -> None:
        self.now = now
        self._failed.clear()
        self._best = None

    def _known_to_fail(self, req: Req) -> bool:
        for f in self._failed.get((req.types_key, req.fractional), ()):
            if (req.num_gpus >= f.num_gpus and req.milli >= f.milli and req.cpu >= f.cpu
                    and req.mem >= f.mem):
                return True
        return False

    def try_start(self, js: JobState) -> bool:
        """Places and starts the job if it fits now; False otherwise."""
        req = js.req
        if req.demand_milli > self._sim.live_milli - self.state.used_milli:
            return False  # not enough free share in the whole cluster
        if self._best is None:  # largest free GPU share and CPU on any live node
            st = self.state
            live = st.up
            self._best = (int(st.gpu_free[live].max(initial=-1)),
                          int(st.cpu_free[live].max(initial=0)))
        if (req.milli > self._best[0] and req.num_gpus) or req.cpu > self._best[1]:
            return False
        if self._known_to_fail(req):
            return False
        placement = self.policy.placer.place(self.state, req)
        if placement is None:
            fails = self._failed.setdefault((req.types_key, req.fractional), [])
            if len(fails) < 32:
                fails.append(req)
            return False
        self._sim.start(js, placement)
        self._best = None
        return True

    def fits(self, js: JobState) -> bool:
        return not self._known_to_fail(js.req) and fits_now(self.state, js.req)

    def preempt(self, js: JobState) -> None:
        self._sim.preempt(js)
        self._failed.clear()  # capacity came back
        self._best = None

    def start_with_preemption(self, js: JobState, victims: list[JobState]) -> bool:
        """Preempts the shortest prefix of ``victims`` that lets ``js`` start, if any.

        Victims are released tentatively on the live state (no copy); if no prefix makes
        room they are put back exactly as they were."""
        state, req = self.state, js.req
        allowed = state.type_masks[req.types_key] & state.up
        free = int(state.free_milli[allowed].sum())
        gain = [sum(len(g) * m for node, g, m, _c, _m in v.placement if allowed[node])
                for v in victims]
        if free + sum(gain) < req.demand_milli:
            return False  # even all of them would not free enough GPU share
        released: list[JobState] = []
        placement = None
        for v, g in zip(victims, gain):
            state.release(v.placement)
            released.append(v)
            free += g
            if free >= req.demand_milli:
                placement = self.policy.placer.place(state, req)
                if placement is not None:
                    break
        for v in reversed(released):
            state.allocate(v.placement)
        if placement is None:
            return False
        for v in released:
            self.preempt(v)
        self._sim.start(js, placement)
        self._best = None
        return True

    def wakeup(self, at: float, fn=None, *args) -> None:
        """Asks for a scheduling pass at time ``at``; with ``fn``, calls ``fn(*args)`` first
        and skips the pass if it returns False."""
        self._sim.wakeup(at, fn, *args)
