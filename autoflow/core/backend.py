"""The two seams of the scheduler core: the backend that carries decisions out, and the
meter that watches them.

A :class:`Backend` owns the clock and the jobs' execution. The core asks it for the
time (``now``), for a call at a later time (``call_at``: scheduling passes, policy
wake-ups), to run a job on a placement (``launch``) and to stop one (``halt``). The
backend reports back through the core: ``SchedulerCore.finish`` when a job completes,
``evict`` when a job is lost with its node, ``node_down`` / ``node_up``. The
simulator (``autoflow.sim.SimulatedBackend``) is one backend; the service's live
backend and the Ray executor are others. Policies never see a backend.

A :class:`Meter` is told of every change before it happens (``advance``) and of
arrivals, first starts, completions and passes, so that it can integrate what it
likes over time (the simulator's allocation and reward integrals, a service's
Prometheus gauges). ``NullMeter`` watches nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..state import Placement
    from .jobstate import JobState


class Backend(Protocol):
    def now(self) -> float:
        """The current time in seconds."""

    def call_at(self, t: float, fn: Callable[[], object]) -> None:
        """Calls ``fn()`` at time ``t`` (at once-later if ``t`` is not in the future: after
        the calls already due at this instant)."""

    def launch(self, js: JobState, placement: Placement) -> None:
        """Runs the job on ``placement`` (the core has reserved it already)."""

    def halt(self, js: JobState) -> None:
        """Stops the running job (preempted: the core keeps its checkpointed progress)."""

    def true_duration(self, js: JobState) -> float | None:
        """The job's true duration, where the backend knows it (a simulator); else None.
        Handed only to policies marked oracle."""


class Meter(Protocol):
    def advance(self, now: float) -> None:
        """Time has come to ``now``; a change follows."""

    def arrived(self, js: JobState) -> None: ...

    def first_start(self, js: JobState, slo_missed: bool) -> None: ...

    def finished(self, js: JobState) -> None: ...

    def pass_begins(self, now: float) -> None: ...


class NullMeter:
    """Watches nothing."""

    def advance(self, now: float) -> None:
        pass

    def arrived(self, js: JobState) -> None:
        pass

    def first_start(self, js: JobState, slo_missed: bool) -> None:
        pass

    def finished(self, js: JobState) -> None:
        pass

    def pass_begins(self, now: float) -> None:
        pass
