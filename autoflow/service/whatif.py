"""What-if replays: the live scheduler run forward on a copy, on predicted durations.

``fork(engine)`` copies the live :class:`~autoflow.core.scheduler.SchedulerCore` (as
``autoflow.core.plan`` does: a deep copy with the backend and the meter detached; the
jobs as submitted, the cluster spec, ended jobs and whatever the policy declares
read-only are shared, not copied) onto :class:`ReplayBackend`, a small event loop in
simulated cluster time. ``engine.lock`` is held only while copying: the replay itself runs
beside the live engine and changes nothing in it or in the store.

In the replay every job runs for its *predicted* duration, never a true one (the service
does not know it): the ``duration_estimate_s`` the job declared if any, else the core's
prediction (``JobState.predicted``), minus the work it has done — what ``--executor sim``
would run it for. Jobs already running finish when that remainder has elapsed; waiting
jobs start when the same policy, in the same state, starts them. The policy's wake-ups
that the live core armed on the service's timers (LAS's demotions, the agent's level
crossings) are armed again on the replay's clock.

``Replay.run(done, max_events)`` advances event by event until ``done()`` holds, no event
is left, or ``max_events`` events have run: it always ends.

Used by ``GET /v1/jobs/{id}/why`` (``eta_s``: when the replay starts the job) and
``POST /v1/simulate`` (hypothetical jobs added now: when they start and finish).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.backend import NullMeter
from ..core.jobstate import DONE, RUNNING, JobState
from ..core.plan import detached_copy
from ..job import WHOLE_GPU, Job

if TYPE_CHECKING:
    from ..core.scheduler import SchedulerCore
    from .engine import Engine

MAX_EVENTS = 20_000  # events a replay runs at most (plus EVENTS_PER_JOB per live job)
EVENTS_PER_JOB = 20


def predicted_duration(js: JobState) -> float:
    """The run time the service expects of the job: declared, else predicted."""
    est = js.job.extra.get("duration_estimate_s")
    return float(est) if est else float(js.predicted)


def predicted_remaining(js: JobState, now: float) -> float:
    """Predicted run time left (never negative: an overdue job ends at once)."""
    return max(0.0, predicted_duration(js) - js.running_progress(now))


@dataclass
class Start:
    time: float
    placement: list  # the core's placement: (node, GPUs, share, cpu, mem) per node


@dataclass
class ReplayBackend:
    """The replay's clock and execution: a heap of timed callbacks; a launched job
    completes after its predicted remaining run time (plus the restart overhead)."""

    now_: float
    core: SchedulerCore | None = None
    events: int = 0
    starts: dict[int, Start] = field(default_factory=dict)  # job idx -> first start here
    finishes: dict[int, float] = field(default_factory=dict)  # job idx -> completion
    preemptions: dict[int, int] = field(default_factory=dict)  # job idx -> halts here

    def __post_init__(self):
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()

    # -- the Backend protocol -----------------------------------------------------------
    def now(self) -> float:
        return self.now_

    def call_at(self, t: float, fn: Callable[[], object]) -> None:
        heapq.heappush(self._heap, (max(float(t), self.now_), next(self._seq), fn))

    def launch(self, js: JobState, placement) -> None:
        self.starts.setdefault(js.idx, Start(self.now_, [tuple(p) for p in placement]))
        self.complete_at(js, self.now_ + js.seg_overhead
                         + max(0.0, predicted_duration(js) - js.progress))

    def halt(self, js: JobState) -> None:
        self.preemptions[js.idx] = self.preemptions.get(js.idx, 0) + 1

    def true_duration(self, js: JobState) -> None:
        return None

    # -- the replay's own ------------------------------------------------------------------
    def complete_at(self, js: JobState, t: float) -> None:
        version = js.version
        self.call_at(t, lambda: self._complete(js, version))

    def _complete(self, js: JobState, version: int) -> None:
        if js.version != version or js.status != RUNNING:
            return  # a segment that was preempted
        self.core.finish(js, js.running_progress(self.now_))
        self.finishes[js.idx] = self.now_

    def pending(self) -> bool:
        return bool(self._heap)

    def step(self) -> None:
        t, _seq, fn = heapq.heappop(self._heap)
        self.now_ = t
        self.events += 1
        fn()


@dataclass
class Replay:
    """A copy of the live core on a :class:`ReplayBackend`, ready to run forward."""

    core: SchedulerCore
    backend: ReplayBackend
    now: float  # the cluster time the copy was taken at
    node_names: list[str]
    policy: str
    max_events: int
    exhausted: bool = False  # no event was left: nothing more would happen
    bounded: bool = False  # stopped at max_events

    def add(self, jobs: Iterable[Job]) -> list[JobState]:
        """Hypothetical jobs submitted now (to the copy only)."""
        core = self.core
        added = [core.register(job) for job in jobs]
        core.submit(added)
        self.max_events += EVENTS_PER_JOB * len(added)
        return added

    def run(self, done: Callable[[], bool]) -> bool:
        """Runs until ``done()``; False if the replay ended (nothing left, or the event
        bound) before that."""
        b = self.backend
        while not done():
            if not b.pending():
                self.exhausted = True
                return False
            if b.events >= self.max_events:
                self.bounded = True
                return False
            b.step()
        return True

    def placement_view(self, placement) -> dict:
        return {"nodes": [{"node": self.node_names[n],
                           "gpus": len(g) * m / WHOLE_GPU if m else 0,
                           "gpu_indices": list(g), "gpu_milli": m}
                          for n, g, m, _c, _mem in placement]}


def _copy(core: SchedulerCore) -> SchedulerCore:
    """A deep copy of the core without its backend, meter and observers; ended jobs
    are shared too (the replay only reads them)."""
    return detached_copy(core, [js for js in core.jobs if js.status == DONE])


def _rearm(twin: SchedulerCore) -> None:
    """The wake-ups the live core's policy armed for its running jobs, on the replay's
    clock (``Policy.rearm``: LAS's demotions, gittins' bin crossings), and the agent's
    level crossings."""
    policy, ctx = twin.policy, twin.ctx
    running = sorted(twin.running.values(), key=lambda js: js.start_seq)
    if hasattr(policy, "observer"):  # a policy deciding through the agent's observation
        from autoflow.envs.levels import arm_level_wakeup

        for js in running:
            arm_level_wakeup(ctx, js)
        return
    for js in running:
        policy.rearm(ctx, js)


def fork(engine: Engine, max_events: int | None = None) -> Replay:
    """A replay of the live engine's current state (the lock is held only to copy)."""
    with engine.lock:
        core = engine.core
        now = core.backend.now()
        twin = _copy(core)
        names = list(engine.node_names)
        label = engine.policy.label
    backend = ReplayBackend(now)
    backend.core = twin
    twin.backend, twin.meter = backend, NullMeter()
    twin.check = False
    twin._pass_pending = False  # a pass the live core awaits belongs to its timers
    twin.ctx.now = now
    for js in sorted(twin.running.values(), key=lambda js: js.start_seq):
        end = js.seg_start + js.seg_overhead + max(0.0, predicted_duration(js) - js.progress)
        backend.complete_at(js, max(end, now))
    _rearm(twin)
    twin.request_pass()
    live = len(twin.waiting) + len(twin.running)
    bound = max_events if max_events is not None else MAX_EVENTS + EVENTS_PER_JOB * live
    return Replay(twin, backend, now, names, label, bound)
