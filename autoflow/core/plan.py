"""What would the policy do now? One scheduling pass run on a copy of the core.

``plan(core)`` answers with the decisions the policy's pass would take at the current
time — start this job on this placement, preempt that one — in the order it takes
them, and changes nothing: the pass runs on a deep copy of the core (state, queue,
running set, the policy and its own bookkeeping) bound to a backend that only records.
A service answers "where and when would this job run" with it; the decisions are what
``SchedulerCore`` would carry out if the pass ran for real at this instant.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .backend import NullMeter

if TYPE_CHECKING:
    from ..state import Placement
    from .jobstate import JobState
    from .scheduler import SchedulerCore


@dataclass(frozen=True)
class Start:
    job_id: str
    placement: tuple[tuple[int, tuple[int, ...], int, int, int], ...]  # node, GPUs, share, cpu, mem
    nodes: tuple[str, ...]  # node names, in placement order


@dataclass(frozen=True)
class Preempt:
    job_id: str


class _RecordingBackend:
    """Stands in for the real backend during a planned pass: the clock stands still,
    launches and halts are written down, timers are dropped (they are not decisions)."""

    def __init__(self, now: float, node_names: list[str]):
        self._now = now
        self._names = node_names
        self.decisions: list[Start | Preempt] = []

    def now(self) -> float:
        return self._now

    def call_at(self, t, fn) -> None:
        pass

    def launch(self, js: JobState, placement: Placement) -> None:
        p = tuple((int(n), tuple(int(g) for g in gpus), int(m), int(c), int(mem))
                  for n, gpus, m, c, mem in placement)
        self.decisions.append(Start(js.job.job_id, p,
                                    tuple(self._names[n] for n, *_ in placement)))

    def halt(self, js: JobState) -> None:
        self.decisions.append(Preempt(js.job.job_id))

    def true_duration(self, js: JobState) -> None:
        return None


def detached_copy(core: SchedulerCore, shared=()) -> SchedulerCore:
    """A deep copy of the core without its backend, meter and pass observers (the
    caller binds its own). Shared, not copied: what a copy only reads (jobs as submitted,
    the cluster spec, whatever the policy declares read-only, e.g. a learned model's
    weights, and ``shared``)."""
    backend, meter = core.backend, core.meter
    observers = getattr(core, "observers", None)
    memo = {id(js.job): js.job for js in core.jobs}
    memo[id(core.cluster)] = core.cluster
    for obj in (*getattr(core.policy, "shared_in_copies", ()), *shared):
        memo[id(obj)] = obj
    core.backend, core.meter = None, None
    if observers is not None:
        core.observers = []
    try:
        twin = copy.deepcopy(core, memo)
    finally:
        core.backend, core.meter = backend, meter
        if observers is not None:
            core.observers = observers
    return twin


def plan(core: SchedulerCore) -> list[Start | Preempt]:
    """The decisions one scheduling pass would take now, without taking them."""
    recorder = _RecordingBackend(core.backend.now(), [n.name for n in core.cluster.nodes])
    twin = detached_copy(core)
    twin.backend, twin.meter = recorder, NullMeter()
    twin.check = False
    twin._pass()
    return recorder.decisions
