"""SchedulerCore: the scheduler's state and bookkeeping, whatever carries its decisions out.

The core owns the cluster state, the waiting queue (in the policy's order), the running
set, the duration estimator, wake-up timers and the start / preempt / evict / finish
bookkeeping (allocation, attained service, progress, restart overhead, inference SLOs).
It runs the policy's scheduling pass through a :class:`~autoflow.core.context.SchedContext`
whenever something changed, at most once per instant after every event of that instant.

Time and execution belong to a :class:`~autoflow.core.backend.Backend`: the simulator,
the service's live backend or the Ray executor. The backend reports back with
``finish``, ``evict``, ``node_down`` and ``node_up``; new jobs come in with ``register``
and ``submit``. A job that depends on others (``Job.depends_on``, ``autoflow.workflow``)
is *held* when submitted until every one of them has succeeded, then joins the queue;
one that leaves without succeeding (``remove``) cancels the jobs that depend on it. ``plan()`` (``autoflow.core.plan``) answers "what would the policy do
now?" without doing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np

from ..cluster import ClusterSpec
from ..errors import AutoflowError, require
from ..feasibility import Shape, shape_of
from ..job import INFERENCE, Job
from ..state import ClusterState, Placement
from .backend import Backend, Meter, NullMeter
from .context import SchedContext
from .estimator import DurationEstimator
from .jobstate import DONE, HELD, RUNNING, WAITING, JobState
from .queue import SortedQueue

JOINED_KEPT = 4096  # latest jobs to join the waiting queue that are kept in a list

Keep = Callable[[JobState, float], float]  # (job, useful work of the segment) -> work kept


class SchedulingError(AutoflowError):
    """The scheduler reached an impossible state (a policy or backend bug, not bad input)."""


class SchedulerCore:
    def __init__(self, cluster: ClusterSpec, policy, backend: Backend,
                 estimator: DurationEstimator | None = None, meter: Meter | None = None,
                 restart_overhead_s: float = 0.0, default_slo_s: float = 60.0,
                 check_invariants: bool = False):
        self.cluster = cluster
        self.policy = policy
        self.backend = backend
        self.meter: Meter = meter or NullMeter()
        self.estimator = estimator or DurationEstimator()
        self.restart_overhead_s = float(restart_overhead_s)
        self.default_slo_s = float(default_slo_s)
        self.check = check_invariants
        self.state = ClusterState(cluster)
        self.jobs: list[JobState] = []
        self._shapes: dict = {}
        self.waiting = SortedQueue(policy.queue_key, shape=self.shape)
        self.running: dict[int, JobState] = {}
        self.ctx = SchedContext(self)
        self.live_milli = self.state.total_milli
        self.cpu_only_waiting = 0
        # the jobs that joined the waiting queue, in order: how many so far, and the
        # latest of them (``SchedContext.joined_since``)
        self.enqueued = 0
        self.joined: list[JobState] = []
        self.done = 0
        self._starts = 0  # starts so far (gives JobState.start_seq)
        self._pass_pending = False
        self._pass_time, self._passes_now = -1.0, 0
        self._prepared = False
        # dependencies (autoflow.workflow): job id -> the registered jobs that depend on
        # it; the held jobs and how many of their parents have not succeeded yet; the ids
        # of jobs that succeeded (a caller that rebuilds a core adds the earlier ones) and
        # of jobs that left without succeeding
        self.by_id: dict[str, JobState] = {}
        self.workflows: dict[str, list[JobState]] = {}  # workflow id -> its registered jobs
        self._kids: dict[str, list[JobState]] = {}
        self.held: dict[int, JobState] = {}
        self._unmet: dict[int, int] = {}
        self.succeeded: set[str] = set()
        self.dropped: set[str] = set()
        self.on_drop: Callable[[JobState, str], None] | None = None  # a dependant cancelled

    # -- jobs coming in -----------------------------------------------------------------
    def register(self, job: Job) -> JobState:
        """Makes the job known (not yet submitted). The core keeps the job without its
        true duration; inference jobs without an SLO get the default one (on the core's
        copy: the caller's job is never changed)."""
        slo = job.slo_s
        if job.kind == INFERENCE and slo is None:
            slo = self.default_slo_s
        js = JobState(len(self.jobs), replace(job, duration=None, slo_s=slo),
                      self.state.compile(job))
        self.jobs.append(js)
        self.by_id[job.job_id] = js
        if job.workflow_id:
            self.workflows.setdefault(job.workflow_id, []).append(js)
        for p in job.depends_on:
            self._kids.setdefault(p, []).append(js)
        return js

    def prepare(self) -> None:
        """Lets the placer and the policy look at the registered jobs before the first
        event (FGD learns the workload's shapes)."""
        self.policy.placer.prepare([js.req for js in self.jobs], self.state)
        self.policy.prepare(self.ctx)
        self._prepared = True

    def submit(self, batch: Iterable[JobState]) -> None:
        """The jobs arrive now: predicted, queued, and a scheduling pass follows. A job
        with a parent that has not succeeded yet is held (``HELD``) until it has; one
        with a parent that left without succeeding is cancelled at once."""
        self.meter.advance(self.backend.now())
        for js in batch:
            self.meter.arrived(js)
            deps = js.job.depends_on
            if deps:
                lost = next((p for p in deps if p in self.dropped), None)
                if lost is not None:
                    js.status = HELD
                    self._drop(js, f"depends on {lost}, which did not succeed")
                    continue
                unmet = sum(1 for p in deps if p not in self.succeeded)
                if unmet:
                    js.status = HELD
                    js.queue_since = self.backend.now()
                    self.held[js.idx] = js
                    self._unmet[js.idx] = unmet
                    continue
            js.predicted = self.estimator.predict(js.job)
            self._enqueue(js)
        self.request_pass()

    def _release(self, parent: JobState) -> None:
        """``parent`` succeeded: the held jobs it was the last unmet parent of join the
        queue now."""
        for js in self._kids.get(parent.job.job_id, ()):
            if js.idx in self.held:
                self._unmet[js.idx] -= 1
                if self._unmet[js.idx] == 0:
                    del self.held[js.idx], self._unmet[js.idx]
                    js.predicted = self.estimator.predict(js.job)
                    self._enqueue(js)

    def _drop(self, js: JobState, why: str) -> None:
        """A held job whose parent will never succeed: it ends (``DONE``, never started),
        and so do the jobs that depend on it."""
        self.held.pop(js.idx, None)
        self._unmet.pop(js.idx, None)
        js.status = DONE
        js.finish = self.backend.now()
        self.done += 1
        self.dropped.add(js.job.job_id)
        if self.on_drop is not None:
            self.on_drop(js, why)
        self._drop_dependants(js)

    def _drop_dependants(self, js: JobState) -> None:
        for kid in self._kids.get(js.job.job_id, ()):
            if kid.status == HELD:
                self._drop(kid, f"depends on {js.job.job_id}, which did not succeed")

    def _enqueue(self, js: JobState) -> None:
        js.status = WAITING
        js.queue_since = self.backend.now()
        self.enqueued += 1
        if len(self.joined) >= JOINED_KEPT:
            self.joined.clear()
        self.joined.append(js)
        if js.req.num_gpus == 0:
            self.cpu_only_waiting += 1
        self.waiting.add(js)

    def shape(self, js: JobState) -> Shape:
        """The job's queue shape, computed once per distinct requirement."""
        shape = self._shapes.get(js.req)
        if shape is None:
            shape = self._shapes[js.req] = shape_of(self.state, js.req)
        return shape

    # -- passes and timers ------------------------------------------------------------
    def request_pass(self) -> None:
        """A scheduling pass at this instant, after every event already due now."""
        if not self._pass_pending:
            self._pass_pending = True
            self.backend.call_at(self.backend.now(), self._pass)

    def wakeup(self, at: float, fn: Callable | None = None, *args) -> None:
        """A pass at time ``at``; with ``fn``, ``fn(*args)`` is called first and the pass
        is skipped if it returns False."""
        def fire() -> None:
            if fn is None or fn(*args) is not False:
                self.request_pass()
        self.backend.call_at(at, fire)

    def _pass(self) -> None:
        self._pass_pending = False
        now = self.backend.now()
        if now == self._pass_time:
            self._passes_now += 1
            if self._passes_now > 100 + 10 * len(self.jobs):
                raise SchedulingError(f"{self.policy.label} livelocked at t={now:g}: "
                                      f"{self._passes_now} scheduling passes at one instant")
        else:
            self._pass_time, self._passes_now = now, 0
        self.meter.pass_begins(now)
        if len(self.waiting):
            self.ctx.begin_pass(now)
            self.policy.schedule(self.ctx)
        if self.check:
            self.check_invariants()

    # -- transitions ---------------------------------------------------------------------
    def start(self, js: JobState, placement: Placement) -> None:
        if js.status != WAITING:
            raise SchedulingError(f"{js} started twice in one run segment")
        now = self.backend.now()
        self.meter.advance(now)
        self.state.allocate(placement)
        self.waiting.remove(js)
        if js.req.num_gpus == 0:
            self.cpu_only_waiting -= 1
        js.status = RUNNING
        js.placement = placement
        js.version += 1
        js.seg_start = now
        js.seg_overhead = self.restart_overhead_s if js.starts else 0.0
        js.starts += 1
        self._starts += 1
        js.start_seq = self._starts
        if js.first_start is None:
            js.first_start = now
            missed = js.job.kind == INFERENCE and now - js.submit > (js.job.slo_s or 0.0)
            self.meter.first_start(js, missed)
        self.running[js.idx] = js
        self.backend.launch(js, placement)
        self.policy.on_start(self.ctx, js)

    def _stop_segment(self, js: JobState, keep: Callable[[float], float]) -> None:
        now = self.backend.now()
        self.meter.advance(now)
        elapsed = now - js.seg_start
        js.progress += keep(max(0.0, elapsed - js.seg_overhead))
        js.attained += js.job.gpu_demand * elapsed
        js.gpu_seconds += js.job.gpu_demand * elapsed
        js.run_seconds += elapsed
        js.last_run = elapsed
        self.state.release(js.placement)
        js.placement = None
        js.version += 1
        del self.running[js.idx]
        self.policy.on_stop(self.ctx, js)

    def finish(self, js: JobState, duration: float) -> None:
        """The backend reports that the running job completed; ``duration``: its run
        time, excluding restart overheads (the simulator's true duration)."""
        if js.status != RUNNING:
            raise SchedulingError(f"{js} reported complete while not running")
        self._stop_segment(js, _all)
        js.job = replace(js.job, duration=duration)
        js.progress = duration
        js.status = DONE
        js.finish = self.backend.now()
        self.done += 1
        self.meter.finished(js)
        self.estimator.observe(js.job)
        self.policy.on_finish(self.ctx, js)
        self.succeeded.add(js.job.job_id)
        if self._kids:
            self._release(js)
        self.request_pass()

    def preempt(self, js: JobState) -> None:
        """Stops a running training job; it keeps its progress (checkpointed on
        preemption) and waits again."""
        if js.status != RUNNING or not js.preemptible:
            raise SchedulingError(f"cannot preempt {js}")
        self.backend.halt(js)
        self._stop_segment(js, _all)
        js.preemptions += 1
        self._enqueue(js)

    def evict(self, js: JobState, keep: Keep | None = None) -> None:
        """The job was lost with its node: back to the queue with the progress
        ``keep(js, work)`` returns for the segment's useful work (its last checkpoint;
        all of it by default)."""
        self._stop_segment(js, (lambda done: keep(js, done)) if keep else _all)
        js.failures += 1
        self._enqueue(js)

    def node_down(self, node: int, keep: Keep | None = None) -> list[JobState]:
        """The node failed: its jobs are evicted (``keep`` as for ``evict``), its capacity
        leaves the cluster until ``node_up``. Returns the evicted jobs."""
        victims = [js for js in self.running.values()
                   if any(p[0] == node for p in js.placement)]
        for js in victims:
            self.evict(js, keep)
        if self.state.up[node]:  # (a cordoned node is down already)
            self.state.set_up(node, False)
            self.live_milli -= int(self.state.node_gpus[node]) * 1000
        self.request_pass()
        return victims

    def node_up(self, node: int) -> None:
        if not self.state.up[node]:
            self.state.set_up(node, True)
            self.live_milli += int(self.state.node_gpus[node]) * 1000
        self.request_pass()

    def adopt(self, js: JobState, placement: Placement, seg_start: float) -> None:
        """The job is already running on ``placement`` since ``seg_start``: a decision
        issued before this core was built (the service restarted, or switched policy).
        Its placement is reserved and the policy told; nothing is launched."""
        if js.status != WAITING or js in self.waiting:
            raise SchedulingError(f"{js} adopted while queued or running")
        self.state.allocate(placement)
        js.status = RUNNING
        js.placement = placement
        js.version += 1
        js.seg_start = seg_start
        js.seg_overhead = 0.0
        self._starts += 1
        js.start_seq = self._starts
        self.running[js.idx] = js
        self.policy.on_start(self.ctx, js)

    def remove(self, js: JobState) -> None:
        """The job leaves without completing (cancelled, or failed as its executor
        reported): out of the queue, or stopped (halted on the backend) with its
        allocation released. The estimator learns nothing from it."""
        if js.status == WAITING:
            self.waiting.remove(js)
            if js.req.num_gpus == 0:
                self.cpu_only_waiting -= 1
        elif js.status == RUNNING:
            self.backend.halt(js)
            self._stop_segment(js, _all)
        elif js.status == HELD:
            self.held.pop(js.idx, None)
            self._unmet.pop(js.idx, None)
        else:
            raise SchedulingError(f"{js} removed after it ended")
        js.status = DONE
        js.finish = self.backend.now()
        self.done += 1
        self.dropped.add(js.job.job_id)
        self._drop_dependants(js)
        self.request_pass()

    def cordon(self, node: int, cordoned: bool) -> None:
        """The node takes no new jobs (``cordoned``) or takes them again; the jobs on it
        keep running (``node_down`` evicts them)."""
        if bool(self.state.up[node]) == cordoned:
            self.state.set_up(node, not cordoned)
            self.live_milli += (-1 if cordoned else 1) * int(self.state.node_gpus[node]) * 1000
        self.request_pass()

    def all_done(self) -> bool:
        return self.done == len(self.jobs)

    # -- invariants (explicit checks: they hold under ``python -O`` too) ---------------------
    def check_invariants(self) -> None:
        for js in self.held.values():
            require(js.status == HELD and self._unmet[js.idx] > 0
                    and any(p not in self.succeeded for p in js.job.depends_on),
                    f"{js} held with its parents done")
        for js in self.running.values():
            require(all(p in self.succeeded for p in js.job.depends_on),
                    f"{js} runs before a job it depends on succeeded")
        s = self.state
        used = np.zeros_like(s.gpu_free)
        for js in self.running.values():
            require(js.status == RUNNING and js.placement, f"{js} in the running set")
            for node, gpus, milli, _cpu, _mem in js.placement:
                for g in gpus:
                    used[node, g] += milli
        real = s.gpu_free >= 0
        require((used[real] + s.gpu_free[real] == 1000).all(), "GPU shares do not add up")
        require((s.gpu_free[real] >= 0).all(), "GPU over-allocated")
        require(s.used_milli == int(used.sum()), "allocation total drifted")
        s.check_totals()
        for js in self.waiting:
            require(js.status == WAITING and js.idx not in self.running,
                     f"{js} in the waiting queue")


def _all(done: float) -> float:
    return done
