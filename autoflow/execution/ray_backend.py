"""The Ray backend: the scheduler core's decisions carried out as real Ray tasks.

Each start launches the job through a :class:`~autoflow.execution.ray_runner.RayRunner`:
one task per node of the placement the policy chose, pinned there, holding exactly that
node's GPUs or GPU share. A replayed trace job runs for what is left of its duration after
its last checkpoint (plus the restart overhead after a stop), scaled by ``time_scale``
(0.001: a trace second is a millisecond). Preemption asks the job to checkpoint and stop;
it resumes from that checkpoint. A node that dies takes its jobs with it: the core
requeues them (``node_down``) with the progress of their last checkpoint, and the work
they lost is recorded (``lost``).

Workflows (``Job.depends_on``) are the core's: a stage is held until every job it depends
on has finished, and only then can the policy start it, so no task of a stage is launched
before its parents' tasks have ended. ``cancel`` takes a job out (stopping its tasks if it
runs); the core drops the jobs that depend on it, and the replay records them
(``RayRun.dropped``).

Time is the wall clock, scaled: ``now()`` is trace seconds since the run began. The wall
time spent in the core's passes (policy decisions and task submission) is measured
(``pass_s``), as is each segment's launch delay (decision to process start).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable

from ..core.jobstate import DONE, RUNNING, JobState
from ..core.scheduler import SchedulingError
from ..errors import ClusterError
from ..state import Placement
from . import checkpoints
from .ray_runner import Failed, Finished, NodeLost, RayRunner, parts_of

POLL_S = 0.05  # real seconds between looks at the running tasks, at most


class RayBackend:
    def __init__(self, runner: RayRunner, durations: list[float], keys: list[str]):
        self.runner = runner
        self.durations = durations
        self.keys = keys
        self.index = {k: i for i, k in enumerate(keys)}
        self.scale = runner.scale
        self.core = None
        self.t0 = time.monotonic()
        self._timers: list[tuple[float, int, Callable]] = []
        self._seq = itertools.count()
        self.pass_s = 0.0  # wall seconds in timer calls: scheduling passes, arrivals
        self.lost: list[dict] = []  # work lost with a node: job, node, trace seconds
        self.progress: Callable[[int], object] | None = None  # told the jobs done

    # -- the Backend protocol -------------------------------------------------------------
    def now(self) -> float:
        return (time.monotonic() - self.t0) / self.scale

    def call_at(self, t: float, fn: Callable[[], object]) -> None:
        heapq.heappush(self._timers, (t, next(self._seq), fn))

    def launch(self, js: JobState, placement: Placement) -> None:
        self.runner.launch(self.keys[js.idx], js.version, parts_of(placement),
                           self.durations[js.idx], js.seg_overhead)

    def halt(self, js: JobState) -> None:
        self.runner.stop(self.keys[js.idx])

    def true_duration(self, js: JobState) -> float:
        return self.durations[js.idx]  # a replay knows it; handed only to oracles

    @property
    def segments(self) -> list[dict]:
        return self.runner.segments

    def cancel(self, key: str) -> bool:
        """Cancels job ``key``, waiting, held or running (its tasks are asked to stop):
        it leaves without succeeding, and the core drops the jobs that depend on it.
        False if it had ended already."""
        js = self.core.jobs[self.index[key]]
        if js.status == DONE:
            return False
        self.core.remove(js)
        return True

    # -- the loop -------------------------------------------------------------------------
    def run(self, done: Callable[[], bool], timeout_s: float | None = None) -> None:
        """Runs timers and collects what the tasks report until ``done()``; a
        ``TimeoutError`` after ``timeout_s`` wall seconds, if given (a hang guard)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not done():
            if deadline is not None and time.monotonic() > deadline:
                left = sum(js.status != "done" for js in self.core.jobs)
                raise TimeoutError(f"the replay on Ray did not end within {timeout_s:g} s "
                                   f"({left} job(s) not done)")
            now = self.now()
            while self._timers and self._timers[0][0] <= now:
                _t, _s, fn = heapq.heappop(self._timers)
                t0 = time.perf_counter()
                fn()
                self.pass_s += time.perf_counter() - t0
                now = self.now()
            wait = POLL_S
            if self._timers:
                wait = min(wait, max(0.0, (self._timers[0][0] - now) * self.scale))
            elif not self.runner.busy():  # nothing runs and nothing is due: forever
                waiting = sum(js.status == "waiting" for js in self.core.jobs)
                held = len(self.core.held)
                raise SchedulingError(
                    f"{self.core.policy.label} left the cluster idle with {waiting} "
                    f"job(s) waiting{f' and {held} held for their parents' if held else ''}"
                    f" and nothing due: the replay cannot end")
            events = self.runner.poll(wait)
            for ev in events:
                t0 = time.perf_counter()
                self._event(ev)
                self.pass_s += time.perf_counter() - t0
            if events and self.progress is not None:
                self.progress(self.core.done)

    def _event(self, ev) -> None:
        core = self.core
        if isinstance(ev, Finished):
            js = core.jobs[self.index[ev.key]]
            if js.status == RUNNING and js.version == ev.token:
                core.finish(js, self.durations[js.idx])
        elif isinstance(ev, NodeLost):
            for key in ev.keys:
                self.lost.append({"job": key, "node": ev.node, "lost_s": ev.lost_s[key]})
            core.node_down(ev.node, keep=self._keep)
        elif isinstance(ev, Failed):
            raise ClusterError(f"job {ev.key} failed on Ray: {ev.message}")

    def _keep(self, js: JobState, work: float) -> float:
        """Of a lost segment's ``work``, what its last checkpoint kept."""
        saved = checkpoints.progress(self.runner.folder, self.keys[js.idx])
        return min(work, max(0.0, saved - js.progress))
