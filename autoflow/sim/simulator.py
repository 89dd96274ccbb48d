"""The cluster simulator: the scheduler core on a simulated backend (SimPy).

``SimulatedBackend`` carries the core's decisions out in simulated time: a SimPy clock,
completion timers from the jobs' true durations, node failures and repairs
(``failures``), and the metric and reward integrals (``meter``). ``Simulator`` builds a
:class:`~autoflow.core.scheduler.SchedulerCore` on it for one workload and runs it; bench
and the Gymnasium environment use it. Events are arrivals, completions, scheduling
passes, policy wake-ups, preemptions, failures and repairs; time jumps from event to
event, and all events at one instant are handled before the single scheduling pass of
that instant.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import simpy

from ..cluster import ClusterSpec
from ..core.estimator import DurationEstimator
from ..core.jobstate import DONE, RUNNING, JobState
from ..core.scheduler import SchedulerCore
from ..errors import ClusterError, ConfigError
from ..feasibility import check_all_fit
from ..policies.base import Policy
from ..state import Placement
from ..workflow import check as check_dependencies
from ..workflow import has_dependencies
from ..workload import Workload
from .failures import FailureModel
from .meter import SimMeter


@dataclass
class SimConfig:
    restart_overhead_s: float = 30.0  # lost at every restart after a preemption or failure
    checkpoint_interval_s: float = 1800.0  # training work since the last checkpoint is lost on failure
    failure_rate_per_node_day: float = 0.0  # node failures (0 = none)
    repair_time_s: float = 3600.0  # how long a failed node stays down
    default_slo_s: float = 60.0  # start-delay SLO of inference jobs that carry none
    duration_prior_s: float | None = None  # predicted duration until a job completes (None: 1 h)
    seed: int = 0
    check_invariants: bool = False  # verify allocation invariants at every pass (slow)
    fragmentation_samples: int = 500  # time-averaged fragmentation: samples per run

    def check(self) -> None:
        """Raises ConfigError unless every setting is in its documented range (the
        ranges of the matching ``bench`` flags, ``autoflow.limits.FLAG_RANGES``)."""
        from ..limits import check_flag

        for flag, value in (("--restart-overhead", self.restart_overhead_s),
                            ("--checkpoint-interval", self.checkpoint_interval_s),
                            ("--failure-rate", self.failure_rate_per_node_day),
                            ("--repair-time", self.repair_time_s),
                            ("--default-slo", self.default_slo_s),
                            ("--duration-prior", self.duration_prior_s)):
            check_flag(flag, value)


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


class SimulatedBackend:
    """Simulated time and execution: a job runs for its true duration (what is left of
    it after checkpoints, plus the restart overhead) unless it is halted first."""

    def __init__(self, env: simpy.Environment, durations: list[float]):
        self.env = env
        self.durations = durations  # by job index
        self.core: SchedulerCore | None = None

    def now(self) -> float:
        return self.env.now

    def call_at(self, t: float, fn) -> None:
        ev = self.env.timeout(max(0.0, t - self.env.now))
        ev.callbacks.append(lambda _ev: fn())

    def launch(self, js: JobState, placement: Placement) -> None:
        end = self.env.now + js.seg_overhead + max(0.0, self.durations[js.idx] - js.progress)
        version = js.version
        self.call_at(end, lambda: self._complete(js, version))

    def halt(self, js: JobState) -> None:
        pass  # its completion timer is ignored: the job's version moved on

    def true_duration(self, js: JobState) -> float:
        return self.durations[js.idx]

    def _complete(self, js: JobState, version: int) -> None:
        if js.version != version or js.status != RUNNING:
            return  # a completion from a segment that was preempted
        self.core.finish(js, self.durations[js.idx])


class Simulator:
    """One workload on one cluster under one policy, in simulated time."""

    def __init__(self, workload: Workload, cluster: ClusterSpec, policy: Policy,
                 config: SimConfig | None = None, estimator: DurationEstimator | None = None):
        self.config = cfg = config or SimConfig()
        cfg.check()
        self.policy = policy
        self.cluster = cluster
        durations = []
        for j in workload.jobs:
            if j.duration is None:
                raise ConfigError(f"job {j.job_id} has an unknown duration: the simulator "
                                  "needs one (convert with a format that gives run times)")
            durations.append(float(j.duration))
        if has_dependencies(workload.jobs):
            check_dependencies(workload.jobs, workload.source or "workload")
        self.env = simpy.Environment()
        self.backend = SimulatedBackend(self.env, durations)
        if estimator is None:
            estimator = DurationEstimator(cfg.duration_prior_s)
        self.core = core = SchedulerCore(
            cluster, policy, self.backend, estimator,
            restart_overhead_s=cfg.restart_overhead_s, default_slo_s=cfg.default_slo_s,
            check_invariants=cfg.check_invariants)
        self.backend.core = core
        self.state = core.state
        empty = self.state.copy()
        self.jobs = [core.register(j) for j in workload.jobs]
        if policy.oracle:  # only an oracle's run is handed the truth
            for js, d in zip(self.jobs, durations):
                js.reveal(d)
        check_all_fit(empty, self.jobs, cluster)
        span = workload.span + float(np.median(durations)) if durations else 1.0
        self.meter = core.meter = SimMeter(self.state, durations,
                                           span / max(1, cfg.fragmentation_samples))
        self._next_arrival = 0
        self.failures = FailureModel(self, cfg)

    # -- what drivers read ---------------------------------------------------------------
    @property
    def ctx(self):
        return self.core.ctx

    @property
    def waiting(self):
        return self.core.waiting

    @property
    def running(self) -> dict[int, JobState]:
        return self.core.running

    @property
    def now(self) -> float:
        return self.env.now

    def all_done(self) -> bool:
        return self.core.all_done()

    # -- arrivals ------------------------------------------------------------------------
    def _schedule_arrivals(self) -> None:
        if self._next_arrival < len(self.jobs):
            self.backend.call_at(self.jobs[self._next_arrival].submit, self._arrive)

    def _arrive(self) -> None:
        now = self.env.now
        jobs = self.jobs
        first = self._next_arrival
        while self._next_arrival < len(jobs) and jobs[self._next_arrival].submit <= now:
            self._next_arrival += 1
        self.core.submit(jobs[first:self._next_arrival])
        self._schedule_arrivals()

    # -- run -----------------------------------------------------------------------------
    def begin(self) -> None:
        """Sets up the first events; then ``run`` or ``step`` drives the simulation."""
        self.core.prepare()
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
        self.meter.advance(self.env.now)

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
        self.account()
        m = self.meter
        return SimResult(self.jobs, self.cluster, self.policy.label, self.policy.oracle, wall,
                         m.alloc_integral / 1000.0, self.state.total_milli / 1000.0,
                         m.fragmentation, self.failures.count,
                         getattr(self.policy, "guard_stats", {}))

    def check_invariants(self) -> None:
        self.core.check_invariants()
