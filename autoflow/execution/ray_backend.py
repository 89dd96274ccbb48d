"""The Ray backend: the scheduler core's decisions carried out as real Ray tasks.

Each start launches, for every node of the placement the policy chose, one task pinned
to that node (``NodeAffinitySchedulingStrategy(soft=False)``) holding exactly that
node's share of GPUs (``num_gpus``: the GPU count, or the fraction of one GPU for a
shared one). A replayed trace job runs for its remaining duration (plus the restart
overhead after a preemption), scaled by ``time_scale`` (0.001: a trace second is a
millisecond). Preemption cancels the job's tasks (the core keeps its progress, as at a
checkpoint). Completions come back through ``ray.wait`` and are reported to the core
(``SchedulerCore.finish``) when every task of the job has ended.

Time is the wall clock, scaled: ``now()`` is trace seconds since the run began. Each
task reports the node it ran on and when it began, so the launch delay (decision to
process start) is measured per segment.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable

from ..core.jobstate import RUNNING, JobState
from ..core.scheduler import SchedulingError
from ..state import Placement

POLL_S = 0.05  # real seconds between looks at the running tasks, at most


def _segment(seconds: float) -> dict:
    """One run segment of a replayed job: holds its GPUs for ``seconds``."""
    import ray

    began = time.time()
    time.sleep(seconds)
    return {"node": ray.get_runtime_context().get_node_id(), "began": began,
            "ended": time.time()}


class RayBackend:
    def __init__(self, node_ids: list[str], durations: list[float], time_scale: float):
        import ray

        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.ray = ray
        self.task = ray.remote(num_cpus=0, max_retries=0)(_segment)
        self.node_ids = node_ids
        self.durations = durations
        self.scale = float(time_scale)
        self.core = None
        self.t0 = time.monotonic()
        self._timers: list[tuple[float, int, Callable]] = []
        self._seq = itertools.count()
        self._refs: dict = {}  # ObjectRef -> (job index, version, node index, wall at launch)
        self._pending: dict[int, tuple[int, set]] = {}  # job -> (version, refs not done)
        self.segments: list[dict] = []  # every finished task: job, node, times

    # -- the Backend protocol -------------------------------------------------------------
    def now(self) -> float:
        return (time.monotonic() - self.t0) / self.scale

    def call_at(self, t: float, fn: Callable[[], object]) -> None:
        heapq.heappush(self._timers, (t, next(self._seq), fn))

    def launch(self, js: JobState, placement: Placement) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        left = js.seg_overhead + max(0.0, self.durations[js.idx] - js.progress)
        refs = set()
        for node, gpus, milli, _cpu, _mem in placement:
            share = len(gpus) if milli >= 1000 else milli / 1000.0
            ref = self.task.options(
                num_gpus=share,
                scheduling_strategy=NodeAffinitySchedulingStrategy(self.node_ids[node],
                                                                   soft=False),
            ).remote(left * self.scale)
            self._refs[ref] = (js.idx, js.version, node, time.time())
            refs.add(ref)
        self._pending[js.idx] = (js.version, refs)

    def halt(self, js: JobState) -> None:
        _version, refs = self._pending.pop(js.idx, (None, set()))
        for ref in refs:
            self._refs.pop(ref, None)
            self.ray.cancel(ref, force=True)

    def true_duration(self, js: JobState) -> float:
        return self.durations[js.idx]  # a replay knows it; handed only to oracles

    # -- the loop -------------------------------------------------------------------------
    def run(self, done: Callable[[], bool]) -> None:
        """Runs timers and collects completions until ``done()``."""
        ray = self.ray
        while not done():
            now = self.now()
            while self._timers and self._timers[0][0] <= now:
                _t, _s, fn = heapq.heappop(self._timers)
                fn()
                now = self.now()
            wait = POLL_S
            if self._timers:
                wait = min(wait, max(0.0, (self._timers[0][0] - now) * self.scale))
            refs = list(self._refs)
            if not refs:
                if not self._timers:  # nothing runs and nothing is due: it would wait forever
                    waiting = sum(js.status == "waiting" for js in self.core.jobs)
                    raise SchedulingError(
                        f"{self.core.policy.label} left the cluster idle with {waiting} "
                        f"job(s) waiting and nothing due: the replay cannot end")
                time.sleep(wait)
                continue
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=wait)
            for ref in ready:
                self._collect(ref)

    def _collect(self, ref) -> None:
        idx, version, node, launched = self._refs.pop(ref)
        info = self.ray.get(ref)
        self.segments.append({"job": idx, "node": node, "ray_node": info["node"],
                              "launched": launched, "began": info["began"],
                              "ended": info["ended"]})
        v, refs = self._pending.get(idx, (None, set()))
        if v != version:
            return
        refs.discard(ref)
        if refs:
            return  # a gang: the other nodes' parts still run
        del self._pending[idx]
        js = self.core.jobs[idx]
        if js.status == RUNNING and js.version == version:
            self.core.finish(js, self.durations[idx])
