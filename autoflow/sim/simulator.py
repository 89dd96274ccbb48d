"""The cluster simulator: discrete events on SimPy, one core for bench, env and service.

Events are arrivals, completions, scheduling passes, policy wake-ups, preemptions and
(optionally) node failures and repairs. Time jumps from event to event; all events at
one instant are handled before the single scheduling pass of that instant.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import simpy

from ..cluster import ClusterSpec
from ..errors import AutoflowError, ClusterError, ConfigError
from ..feasibility import Shape, fits_now, shape_of
from ..job import BOUNDED_SLOWDOWN_MIN_S, INFERENCE
from ..policies.base import Policy
from ..policies.estimator import DurationEstimator
from ..policies.queue import SortedQueue
from ..state import ClusterState, Placement
from ..workload import Workload
from .context import SchedContext
from .failures import FailureModel
from .jobstate import DONE, RUNNING, WAITING, JobState


class SimulationError(AutoflowError):
    """The simulation could not complete (a policy bug, not bad input)."""


@dataclass
class SimConfig:
    restart_overhead_s: float = 30.0  # lost at every restart after a preemption or failure
    checkpoint_interval_s: float = 1800.0  # training work since the last checkpoint is lost on failure
    failure_rate_per_node_day: float = 0.0  # node failures (0 = none)
    repair_time_s: float = 3600.0  # how long a failed node stays down
    default_slo_s: float = 60.0  # start-delay SLO of inference jobs that carry none
    seed: int = 0
    check_invariants: bool = False  # verify allocation invariants at every pass (slow)
    fragmentation_samples: int = 500  # time-averaged fragmentation: samples per run


@dataclass
class SimResult:
    jobs: list[JobState]
    cluster: ClusterSpec
    policy: str
    oracle: bool
    wall_s: float
    allocated_gpu_seconds: float
    capacity_gpus: float
    fragmentation: float
    failures: int
    guard: dict = field(default_factory=dict)


class Simulator:
    def __init__(self, workload: Workload, cluster: ClusterSpec, policy: Policy,
                 config: SimConfig | None = None):
        self.config = config or SimConfig()
        self.policy = policy
        self.cluster = cluster
        self.state = ClusterState(cluster)
        empty = self.state.copy()
        self.jobs = [JobState(i, j, self.state.compile(j)) for i, j in enumerate(workload.jobs)]
        for js in self.jobs:
            if js.job.duration is None:
                raise ConfigError(f"job {js.job.job_id} has an unknown duration: the simulator "
                                  "needs one (convert with a format that gives run times)")
        unfit = [js for js in self.jobs if not fits_now(empty, js.req)]
        if unfit:
            j = unfit[0].job
            raise ClusterError(
                f"{len(unfit)} job(s) can never run on cluster {cluster.name} "
                f"({cluster.total_gpus} GPUs, types {', '.join(self.state.types)}); e.g. "
                f"{j.job_id}: {j.num_gpus} GPU(s) x {j.gpu_milli}/1000, types "
                f"{'|'.join(j.gpu_types) or 'any'}, cpu {j.cpu_milli}m, mem {j.memory_mib} MiB")
        self.estimator = DurationEstimator(workload)
        for js in self.jobs:
            if js.job.kind == INFERENCE and js.job.slo_s is None:
                js.job.slo_s = self.config.default_slo_s
        self.env = simpy.Environment()
        self._shapes: dict = {}
        self.waiting = SortedQueue(policy.queue_key, shape=self.shape)
        self.running: dict[int, JobState] = {}
        self.ctx = SchedContext(self)
        self.live_milli = self.state.total_milli
        self.cpu_only_waiting = 0
        self._pass_pending = False
        self._pass_time, self._passes_now = -1.0, 0
        self._done = 0
        self._starts = 0  # starts so far (gives JobState.start_seq)
        self._next_arrival = 0
        self._alloc_integral = 0.0
        # for rewards: jobs arrived and not finished, integrated over time (= total JCT at
        # the end), the same weighted by 1/duration (= total bounded slowdown), SLO misses
        self.in_system = 0
        self._in_system_weight = 0.0
        self.in_system_integral = 0.0
        self.slowdown_integral = 0.0
        self.slo_misses = 0
        self._last_t = 0.0
        self._frag_sum = 0.0
        self._frag_n = 0
        self._frag_next = 0.0
        span = workload.span + float(np.median(workload.durations())) if len(workload) else 1.0
        self._frag_step = span / max(1, self.config.fragmentation_samples)
        self.failures = FailureModel(self, self.config)
        policy.placer.prepare([js.req for js in self.jobs], self.state)

    # -- events ----------------------------------------------------------------
    def _at(self, t: float, fn, *args) -> None:
        ev = self.env.timeout(max(0.0, t - self.env.now))
        ev.callbacks.append(lambda _ev: fn(*args))

    def _schedule_arrivals(self) -> None:
        if self._next_arrival < len(self.jobs):
            self._at(self.jobs[self._next_arrival].submit, self._arrive)

    def _arrive(self) -> None:
        now = self.env.now
        jobs = self.jobs
        self._account()
        while self._next_arrival < len(jobs) and jobs[self._next_arrival].submit <= now:
            js = jobs[self._next_arrival]
            self._next_arrival += 1
            self.in_system += 1
            self._in_system_weight += self._slowdown_weight(js)
            js.predicted = self.estimator.predict(js.job)
            self._enqueue(js)
        self._schedule_arrivals()
        self.request_pass()

    def _enqueue(self, js: JobState) -> None:
        js.status = WAITING
        js.queue_since = self.env.now
        if js.req.num_gpus == 0:
            self.cpu_only_waiting += 1
        self.waiting.add(js)

    def request_pass(self) -> None:
        if not self._pass_pending:
            self._pass_pending = True
            self.env.timeout(0).callbacks.append(self._pass)

    def wakeup(self, at: float, fn=None, *args) -> None:
        def fire() -> None:
            if fn is None or fn(*args) is not False:
                self.request_pass()
        self._at(at, fire)

    def _pass(self, _ev=None) -> None:
        self._pass_pending = False
        now = self.env.now
        if now == self._pass_time:
            self._passes_now += 1
            if self._passes_now > 100 + 10 * len(self.jobs):
                raise SimulationError(f"{self.policy.label} livelocked at t={now:g}: "
                                      f"{self._passes_now} scheduling passes at one instant")
        else:
            self._pass_time, self._passes_now = now, 0
        if now >= self._frag_next:
            self._frag_sum += self.state.fragmentation()
            self._frag_n += 1
            self._frag_next = now + self._frag_step
        if len(self.waiting):
            self.ctx.begin_pass(now)
            self.policy.schedule(self.ctx)
        if self.config.check_invariants:
            self.check_invariants()

    def shape(self, js: JobState) -> Shape:
        """The job's queue shape, computed once per distinct requirement."""
        shape = self._shapes.get(js.req)
        if shape is None:
            shape = self._shapes[js.req] = shape_of(self.state, js.req)
        return shape

    def _account(self) -> None:
        now = self.env.now
        dt = now - self._last_t
        self._alloc_integral += self.state.used_milli * dt
        self.in_system_integral += self.in_system * dt
        self.slowdown_integral += self._in_system_weight * dt
        self._last_t = now

    def _slowdown_weight(self, js: JobState) -> float:
        return 1.0 / max(js.duration, BOUNDED_SLOWDOWN_MIN_S)

    # -- transitions -------------------------------------------------------------
    def start(self, js: JobState, placement: Placement) -> None:
        assert js.status == WAITING, f"{js} started twice in one run segment"
        now = self.env.now
        self._account()
        self.state.allocate(placement)
        self.waiting.remove(js)
        if js.req.num_gpus == 0:
            self.cpu_only_waiting -= 1
        js.status = RUNNING
        js.placement = placement
        js.version += 1
        js.seg_start = now
        js.seg_overhead = self.config.restart_overhead_s if js.starts else 0.0
        js.starts += 1
        self._starts += 1
        js.start_seq = self._starts
        if js.first_start is None:
            js.first_start = now
            if js.job.kind == INFERENCE and now - js.submit > (js.job.slo_s or 0.0):
                self.slo_misses += 1
        self.running[js.idx] = js
        end = now + js.seg_overhead + max(0.0, js.duration - js.progress)
        self._at(end, self._complete, js, js.version)
        self.policy.on_start(self.ctx, js)

    def _stop_segment(self, js: JobState, keep_progress) -> None:
        now = self.env.now
        self._account()
        elapsed = now - js.seg_start
        js.progress += keep_progress(max(0.0, elapsed - js.seg_overhead))
        js.attained += js.job.gpu_demand * elapsed
        js.gpu_seconds += js.job.gpu_demand * elapsed
        js.run_seconds += elapsed
        js.last_run = elapsed
        self.state.release(js.placement)
        js.placement = None
        js.version += 1
        del self.running[js.idx]
        self.policy.on_stop(self.ctx, js)

    def _complete(self, js: JobState, version: int) -> None:
        if js.version != version or js.status != RUNNING:
            return  # a completion from a segment that was preempted
        self._stop_segment(js, lambda done: done)
        js.progress = js.duration
        js.status = DONE
        js.finish = self.env.now
        self._done += 1
        self.in_system -= 1
        self._in_system_weight -= self._slowdown_weight(js)
        self.estimator.observe(js.job)
        self.policy.on_finish(self.ctx, js)
        self.request_pass()

    def preempt(self, js: JobState) -> None:
        assert js.status == RUNNING and js.preemptible, f"cannot preempt {js}"
        self._stop_segment(js, lambda done: done)  # checkpointed when preempted
        js.preemptions += 1
        self._enqueue(js)

    def evict(self, js: JobState) -> None:
        """A node under the job failed: back to the queue from its last checkpoint."""
        interval = self.config.checkpoint_interval_s
        if js.preemptible and interval > 0:
            self._stop_segment(js, lambda done: math.floor(done / interval) * interval)
        else:
            self._stop_segment(js, lambda done: done)
        js.failures += 1
        self._enqueue(js)

    # -- run -----------------------------------------------------------------------
    def all_done(self) -> bool:
        return self._done == len(self.jobs)

    def begin(self) -> None:
        """Sets up the first events; then ``run`` or ``step`` drives the simulation."""
        self.policy.prepare(self.ctx)
        self._schedule_arrivals()
        self.failures.start()

    def step(self) -> bool:
        """Handles the next event (for drivers such as the Gymnasium environment);
        False when no event is left."""
        if self.env.peek() == math.inf:
            return False
        self.env.step()
        return True

    def account(self) -> None:
        """Brings the time integrals up to the current instant."""
        self._account()

    def run(self) -> SimResult:
        t0 = time.perf_counter()
        self.begin()
        self.env.run()
        return self.result(time.perf_counter() - t0)

    def result(self, wall: float) -> SimResult:
        """The outcome of a finished run."""
        if not self.all_done():
            stuck = [js for js in self.jobs if js.status != DONE]
            raise ClusterError(f"{len(stuck)} job(s) never finished under {self.policy.label} "
                               f"(first: {stuck[0].job.job_id}, {stuck[0].status})")
        self._account()
        return SimResult(self.jobs, self.cluster, self.policy.label, self.policy.oracle, wall,
                         self._alloc_integral / 1000.0, self.state.total_milli / 1000.0,
                         self._frag_sum / max(1, self._frag_n), self.failures.count,
                         getattr(self.policy, "guard_stats", {}))

    # -- invariants ------------------------------------------------------------------
    def check_invariants(self) -> None:
        s = self.state
        used = np.zeros_like(s.gpu_free)
        for js in self.running.values():
            assert js.status == RUNNING and js.placement
            for node, gpus, milli, _cpu, _mem in js.placement:
                for g in gpus:
                    used[node, g] += milli
        real = s.gpu_free >= 0
        assert (used[real] + s.gpu_free[real] == 1000).all(), "GPU shares do not add up"
        assert (s.gpu_free[real] >= 0).all(), "GPU over-allocated"
        assert s.used_milli == int(used.sum()), "allocation total drifted"
        s.check_totals()
        for js in self.waiting:
            assert js.status == WAITING and js.idx not in self.running
