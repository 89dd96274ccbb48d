"""The live scheduler behind the service: the scheduler core on the service's clock.

``Engine`` owns one :class:`~autoflow.core.scheduler.SchedulerCore` built from the
store (registered nodes, jobs pending or running) with the serving policy, on a live
backend: ``launch`` and ``halt`` become *decisions* (``start`` / ``preempt``) that
executors read from ``GET /v1/decisions``; their reports (``report``) drive the core's
``finish`` / ``evict`` / ``remove``. Every change is committed to the store, in one
transaction per operation, before anyone can see it; waiting long-polls are then woken.

One lock serialises the core: API calls and the timer thread (scheduling passes, policy
wake-ups) take it. A pass requested by a submission runs on the timer thread right after
the submission returns, so that submitting stays cheap and passes coalesce under load.

When the nodes or the policy change, and at start, the core is rebuilt from the store
(``_rebuild``): running jobs keep their placements (``SchedulerCore.adopt``), pending ones
queue again with the service they received; decisions already issued stand.

Workflows (``autoflow.workflow``): a job with ``depends_on`` is *held* by the core until
every parent has succeeded; the store calls it ``pending`` (``GET /v1/jobs/{id}/why`` says
which parents it waits for). A held job whose parent leaves without succeeding is dropped
by the core (``on_drop``): it is stored ``cancelled`` with the reason and a ``cancelled``
event, as durably as any other change. The core knows only the jobs it loaded, so the
engine tells it (``succeeded`` / ``dropped``) how the parents it does not know ended,
from the store: at a rebuild and at each admission.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from ..cluster import ClusterSpec, Node
from ..core.estimator import DurationEstimator
from ..core.jobstate import DONE, HELD, RUNNING, WAITING, JobState
from ..core.scheduler import SchedulerCore
from ..errors import AutoflowError, ConfigError
from ..feasibility import fits_now
from ..job import WHOLE_GPU, Job
from ..policies import make_policy
from ..state import ClusterState
from .clock import Clock, Timers
from .explain import explain_start
from .store import Store

log = logging.getLogger("autoflow.service")

EVENTS = ("started", "finished", "failed", "preempted")


class NotFound(AutoflowError):
    pass


class Invalid(AutoflowError):
    """A request that is well formed but cannot be honoured (a 422 or a 409)."""

    def __init__(self, message: str, field: str | None = None, status: int = 422,
                 kind: str = "infeasible"):
        super().__init__(message)
        self.field = field
        self.status = status
        self.kind = kind  # the 422's "type"


class EstimateFirst(DurationEstimator):
    """The history estimator, except where the job declared ``duration_estimate_s``."""

    def predict(self, job: Job) -> float:
        est = job.extra.get("duration_estimate_s")
        return float(est) if est else super().predict(job)


def job_from_row(row: dict) -> Job:
    """The job of a stored row (its ``spec``: the submitted fields; a workflow's stage
    also has ``group``, ``NAME/STAGE``, for the duration estimator)."""
    s = row["spec"]
    extra = {}
    if s.get("duration_estimate_s") is not None:
        extra["duration_estimate_s"] = float(s["duration_estimate_s"])
    return Job(row["job_id"], float(row["submit_time"]), None, int(s.get("num_gpus", 1)),
               int(s.get("gpu_milli", WHOLE_GPU)), tuple(s.get("gpu_types") or ()),
               s.get("kind", "training"), s.get("qos", ""), int(s.get("cpu_milli", 0)),
               int(s.get("memory_mib", 0)), s.get("user", ""), s.get("group") or "",
               s.get("slo_s"), extra=extra, workflow_id=s.get("workflow_id") or "",
               depends_on=tuple(s.get("depends_on") or ()))


@dataclass
class Decision:
    seq: int
    action: str
    job_id: str
    placement: dict | None
    explanation: dict
    policy: str
    time: float

    def row(self) -> dict:
        return {"seq": self.seq, "action": self.action, "job_id": self.job_id,
                "placement": self.placement, "explanation": self.explanation,
                "policy": self.policy, "time": self.time, "created_at": time.time()}


class _LiveBackend:
    """The core's backend in the service: the service clock, the engine's timers, and
    decisions instead of execution. Timers of a core that was rebuilt are dropped."""

    def __init__(self, engine: Engine, generation: int):
        self.engine = engine
        self.generation = generation

    def now(self) -> float:
        return self.engine.clock.now()

    def call_at(self, t: float, fn: Callable[[], object]) -> None:
        eng, gen = self.engine, self.generation
        eng.timers.add(t, lambda: fn() if eng.generation == gen else None)

    def launch(self, js: JobState, placement) -> None:
        self.engine._launched(js, placement)

    def halt(self, js: JobState) -> None:
        self.engine._halted(js)

    def true_duration(self, js: JobState) -> None:
        return None


class _DropHook:
    """The core's ``on_drop`` in the service: the engine records the drop. A copy of the
    core (``core.plan.detached_copy``: what-if replays) gets none: it must not reach the
    live engine (nor deep-copy it)."""

    __slots__ = ("engine",)

    def __init__(self, engine: Engine):
        self.engine = engine

    def __call__(self, js: JobState, why: str) -> None:
        self.engine._on_drop(js, why)

    def __deepcopy__(self, memo) -> None:
        return None


class _ObservedCore(SchedulerCore):
    """The core with each scheduling pass reported to the engine's ``pass_observers``
    (metrics): ``f(wall_s, waiting_before, started, preempted, waiting_after, ok)``.
    With no observer a pass costs what it did."""

    def __init__(self, *args, observers: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.observers = observers
        self.preempted = 0

    def preempt(self, js: JobState) -> None:
        super().preempt(js)
        self.preempted += 1

    def _pass(self) -> None:
        if not self.observers:
            return super()._pass()
        waiting, starts, preempted = len(self.waiting), self._starts, self.preempted
        t0 = time.perf_counter()
        ok = False
        try:
            super()._pass()
            ok = True
        finally:
            wall = time.perf_counter() - t0
            for f in self.observers:
                f(wall, waiting, self._starts - starts, self.preempted - preempted,
                  len(self.waiting), ok)


class Engine:
    def __init__(self, store: Store, policy: str = "las", time_scale: float = 1.0,
                 restart_overhead_s: float = 0.0, default_slo_s: float = 60.0):
        self.store = store
        self.lock = threading.RLock()
        self.clock = Clock(store.origin, time_scale)
        self.timers = Timers(self.clock, self.lock, after=self._flush, on_error=self._bug)
        self.restart_overhead_s = restart_overhead_s
        self.default_slo_s = default_slo_s
        self.generation = 0
        self.seq = store.last_decision()  # the newest decision taken
        self.committed_seq = self.seq  # the newest decision readable from the store
        self.listeners: list[Callable[[int], None]] = []  # told the newest seq after commits
        self.on_decision: list[Callable[[Decision], None]] = []  # metrics
        self.pass_observers: list[Callable] = []  # metrics: see _ObservedCore
        self.errors = 0
        self._decisions: list[Decision] = []
        self._dirty: dict[str, JobState] = {}
        self._events: list[dict] = []
        self._ended: dict[str, str] = {}  # job id -> succeeded / failed / cancelled
        self._reasons: dict[str, str] = {}  # job id -> why it failed or was cancelled
        self._ended_before: dict[str, str] = {}  # a parent the core does not know -> its end
        self._halt_reason: dict[str, dict] = {}  # job id -> the next preempt's explanation
        self.recent: list[Decision] = []  # the latest decisions, for the dashboard
        history = store.policy_history(1)
        self.policy_spec = history[0]["policy"] if history else policy
        if not history:
            make_policy(policy)  # an unknown or broken policy fails here, before serving
            store.record_policy(policy, None, None, None, self.clock.now())
        with self.lock:
            self._rebuild()

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> None:
        self.timers.start()

    def stop(self) -> None:
        self.timers.stop()
        with self.lock:
            self._flush()
        self.store.writer.drain()

    def _bug(self, e: BaseException) -> None:
        self.errors += 1
        log.exception("scheduler error (the service keeps serving)", exc_info=e)

    def _rebuild(self) -> None:
        """A new core from the store: nodes in registration order, jobs pending or
        running with what they received; the serving policy."""
        self._flush()
        self.store.writer.drain()  # what is read next includes every change made
        self.generation += 1
        node_rows = self.store.nodes()
        self.node_rows = {r["name"]: r for r in node_rows}
        self.node_names = [r["name"] for r in node_rows]
        self.node_index = {n: i for i, n in enumerate(self.node_names)}
        spec = ClusterSpec("service", [Node(r["name"], r["gpu_type"], r["gpus"],
                                            r["cpu_milli"], r["memory_mib"]) for r in node_rows])
        self.spec = spec
        self.policy = make_policy(self.policy_spec)
        estimator = EstimateFirst()
        for done in self.store.completed_durations():
            job = job_from_row({"job_id": "done", "submit_time": 0.0, "spec": done["spec"]})
            job.duration = float(done["duration"])
            estimator.observe(job)
        self.estimator = estimator
        self.core = core = _ObservedCore(spec, self.policy, _LiveBackend(self, self.generation),
                                         estimator, restart_overhead_s=self.restart_overhead_s,
                                         default_slo_s=self.default_slo_s,
                                         observers=self.pass_observers)
        core.on_drop = _DropHook(self)
        self.empty = ClusterState(spec)  # every registered node, idle: "could it ever run?"
        self.by_id: dict[str, JobState] = {}
        rows = self.store.jobs(states=("pending", "running"), limit=10**9)
        running, pending = [], []
        for row in rows:
            js = core.register(job_from_row(row))
            js.attained = row["attained"]
            js.progress = row["progress"]
            js.run_seconds = row["run_seconds"]
            js.gpu_seconds = row["attained"]
            js.starts = row["starts"]
            js.preemptions = row["preemptions"]
            js.failures = row["failures"]
            js.first_start = row["first_start"]
            self.by_id[row["job_id"]] = js
            (running if row["state"] == "running" else pending).append((js, row))
        self._tell_parents(core.jobs)
        core.prepare()
        for js, row in running:
            placement = self._placement_from_row(row["placement"])
            if placement is None:  # its node is gone: it waits again
                pending.append((js, row))
                self._dirty[js.job.job_id] = js
                continue
            js.predicted = self.estimator.predict(js.job)
            core.adopt(js, placement, row["start_time"] or self.clock.now())
        for name, r in self.node_rows.items():
            if r["state"] in ("cordoned", "draining", "failed"):
                core.cordon(self.node_index[name], True)
        core.submit([js for js, _row in pending])
        self._flush()

    def _tell_parents(self, jobs) -> None:
        """Tells the core how the parents of ``jobs`` that it does not know ended (it
        knows only the jobs it loaded or was given since): succeeded ones release their
        dependants, failed or cancelled ones drop them. A parent the store does not
        hold (not possible through the API) counts as one that did not succeed."""
        core = self.core
        unknown = {p for js in jobs for p in js.job.depends_on
                   if p not in self.by_id and p not in core.succeeded
                   and p not in core.dropped}
        if not unknown:
            return
        states = self.store.job_states(unknown)
        for p in unknown:
            state = states.get(p)
            if state == "succeeded":
                core.succeeded.add(p)
            elif state in ("pending", "running"):
                pass  # stored, not yet admitted (a concurrent submission): it will be
            else:
                core.dropped.add(p)
                self._ended_before[p] = state or "missing"

    def _on_drop(self, js: JobState, why: str) -> None:
        """The core dropped a held job (a parent left without succeeding): stored
        cancelled with the reason (which parent, and how it ended), and an event."""
        job_id = js.job.job_id
        deps = js.job.depends_on
        parent = next((p for p in deps if why.startswith(f"depends on {p},")),
                      next((p for p in deps if p in self.core.dropped), None))
        if parent is not None:
            known = self.by_id.get(parent)
            ended = (self._ended.get(parent) if known is not None
                     else self._ended_before.get(parent))
            how = {"failed": "failed", "cancelled": "was cancelled",
                   "missing": "does not exist"}.get(ended or "", "did not succeed")
            why = f"depends on {parent}, which {how}"
        self._ended[job_id] = "cancelled"
        self._set_reason(job_id, why)
        self._dirty[job_id] = js
        self._event(job_id, "cancelled", None, {"message": why})

    def _placement_from_row(self, stored) -> list | None:
        if not stored:
            return None
        out = []
        for name, gpus, milli, cpu, mem in stored:
            if name not in self.node_index:
                return None
            out.append((self.node_index[name], tuple(gpus), int(milli), int(cpu), int(mem)))
        return out

    # -- decisions --------------------------------------------------------------------
    def _decide(self, action: str, js: JobState, placement: dict | None,
                explanation: dict) -> Decision:
        self.seq += 1
        d = Decision(self.seq, action, js.job.job_id, placement, explanation,
                     self.policy.label, self.clock.now())
        self._decisions.append(d)
        self._dirty[js.job.job_id] = js
        return d

    def _launched(self, js: JobState, placement) -> None:
        nodes = [{"node": self.node_names[n], "gpus": len(g) * m / WHOLE_GPU if m else 0,
                  "gpu_indices": list(g), "gpu_milli": m, "cpu_milli": c, "memory_mib": mem}
                 for n, g, m, c, mem in placement]
        self._decide("start", js, {"nodes": nodes}, explain_start(self, js, placement))

    def _halted(self, js: JobState) -> None:
        why = self._halt_reason.pop(js.job.job_id, None)
        self._decide("preempt", js, None, why or {
            "policy": self.policy.label, "reason": "preempted",
            "message": f"{self.policy.label} preempted it for a job that ranks ahead"})

    def _state_of(self, js: JobState) -> str:
        if js.status in (WAITING, HELD):  # held: waits for the jobs it depends on
            return "pending"
        if js.status == RUNNING:
            return "running"
        return self._ended.get(js.job.job_id, "succeeded")

    def _row_of(self, js: JobState) -> dict:
        running = js.status == RUNNING
        return {"state": self._state_of(js),
                "placement": [[self.node_names[n], list(g), m, c, mem]
                              for n, g, m, c, mem in js.placement] if running else None,
                "start_time": js.seg_start if running else None,
                "first_start": js.first_start, "finish_time": js.finish,
                "attained": js.attained, "progress": js.progress,
                "run_seconds": js.run_seconds, "starts": js.starts,
                "preemptions": js.preemptions, "failures": js.failures,
                "reason": self._reasons.get(js.job.job_id)}

    def _flush(self) -> Future | None:
        """Hands what changed to the store's writer (one transaction, committed with
        whatever else is being written: group commit); when it is durable, whoever waits
        for new decisions is woken. Returns the commit's future: an API call waits for it
        (``_durable``) after releasing the lock, before it answers; passes do not wait."""
        if not (self._decisions or self._dirty or self._events):
            return None
        decisions, dirty, events = self._decisions, self._dirty, self._events
        self._decisions, self._dirty, self._events = [], {}, []
        fut = self.store.commit_async([d.row() for d in decisions],
                                      [(jid, self._row_of(js)) for jid, js in dirty.items()],
                                      events)
        if decisions:
            self.recent = (self.recent + decisions)[-200:]
            for f in self.on_decision:
                for d in decisions:
                    f(d)
            last = decisions[-1].seq
            fut.add_done_callback(lambda f: self._committed(f, last))
        else:
            fut.add_done_callback(lambda f: self._committed(f, None))
        return fut

    def _committed(self, fut: Future, seq: int | None) -> None:
        """On the writer's thread, once a flush is durable (or failed)."""
        if fut.exception() is not None:
            self._bug(fut.exception())
            return
        if seq is not None:
            self.committed_seq = max(self.committed_seq, seq)
            for listener in list(self.listeners):
                listener(self.committed_seq)

    @staticmethod
    def _durable(fut: Future | None) -> None:
        """Waits until a flush is committed (raises its error): call it without the lock."""
        if fut is not None:
            fut.result()

    # -- jobs ----------------------------------------------------------------------------
    def check_job(self, job: Job) -> None:
        """Raises Invalid naming the constraint if no registered node could ever run it."""
        with self.lock:
            if not self.node_names:
                raise Invalid("no cluster is registered: POST /v1/clusters first", "nodes")
            state = self.empty
            req = state.compile(job)
            if fits_now(state, req):
                return
            nodes = self.spec.nodes
            allowed = [n for n in nodes if not job.gpu_types or n.gpu_type in job.gpu_types]
            if not allowed:  # (a job without GPUs is held to its types too)
                raise Invalid(f"no registered node has GPU type "
                              f"{' or '.join(job.gpu_types)} (types: "
                              f"{', '.join(self.spec.gpu_types)})", "gpu_types")
            gpus = [n.gpus for n in allowed]
            if job.num_gpus and job.num_gpus > sum(gpus):
                raise Invalid(f"needs {job.num_gpus} GPUs, the registered nodes"
                              f"{' of the allowed types' if job.gpu_types else ''} have "
                              f"{sum(gpus)} in all", "num_gpus")
            for fld, need, cap in (("cpu_milli", job.cpu_milli, [n.cpu_milli for n in allowed]),
                                   ("memory_mib", job.memory_mib,
                                    [n.memory_mib for n in allowed])):
                if need and all(c and c < need for c in cap):
                    raise Invalid(f"needs {need:,}, the largest registered node "
                                  f"has {max(cap, default=0):,}", fld)
            raise Invalid(f"needs {job.num_gpus} GPU(s)"
                          f"{'' if job.gpu_milli == WHOLE_GPU else f' at share {job.gpu_milli}'}"
                          f" with cpu_milli {job.cpu_milli} and memory_mib {job.memory_mib} on "
                          f"one node, and no registered node has all of it", "num_gpus")

    def admit(self, row: dict) -> tuple[Future | None, str]:
        """A job the store holds (committed): registered and queued (or held until its
        parents have succeeded; cancelled at once if one of them did not); a pass
        follows. Returns the commit of what admitting it changed (a job cancelled at
        once: the caller waits for it, without the lock, before it answers) and the
        job's state."""
        fut, states = self.admit_many([row])
        return fut, states[row["job_id"]]

    def admit_many(self, rows: list[dict]) -> tuple[Future | None, dict[str, str]]:
        """Jobs the store holds, admitted together (a workflow's run: every job is
        registered before any is submitted, so that the parents in the batch are
        known); as ``admit``, with each job's state."""
        with self.lock:
            batch = []
            for row in rows:
                if row["job_id"] in self.by_id:
                    continue  # a rebuild already loaded it
                js = self.core.register(job_from_row(row))
                self.by_id[row["job_id"]] = js
                batch.append(js)
            if batch:
                self._tell_parents(batch)
                self.core.submit(batch)
            states = {r["job_id"]: self._state_of(self.by_id[r["job_id"]]) for r in rows}
            return self._flush(), states

    def job(self, job_id: str) -> JobState | None:
        return self.by_id.get(job_id)

    def bind_external(self, row: dict, placement, detail: dict) -> JobState:
        """A job placed outside the scheduling passes (a Kubernetes pod that kube-scheduler
        bound through the extender, ``autoflow.service.k8s``): stored already running on
        ``placement`` (node indices), in one transaction, and adopted by the core. No start
        decision is issued: it runs already. The caller checked, under ``lock``, that the
        placement fits now (``autoflow.feasibility``)."""
        with self.lock:
            now = self.clock.now()
            stored = [[self.node_names[n], list(g), m, c, mem] for n, g, m, c, mem in placement]
            row = {**row, "state": "running", "submit_time": now, "placement": stored,
                   "start_time": now, "first_start": now, "starts": 1}
            self.store.insert_job(row)
            js = self.core.register(job_from_row(row))
            js.predicted = self.estimator.predict(js.job)
            js.first_start = now
            js.starts = 1
            self.by_id[row["job_id"]] = js
            self.core.adopt(js, placement, now)
            self._event(row["job_id"], "bound", now, detail)
            fut = self._flush()
        self._durable(fut)  # the bound event is committed before the bind answers
        return js

    def cancel(self, job_id: str, reason: str = "cancelled") -> str:
        """Cancels a pending (waiting or held) or running job; the held jobs that depend
        on it are cancelled too (``on_drop``). An ended job is left as it is."""
        with self.lock:
            js = self.by_id.get(job_id)
            if js is None or js.status == DONE:
                if js is not None:
                    return self._state_of(js)
                row = self.store.job(job_id)
                if row is None:
                    raise NotFound(f"job {job_id!r} not found")
                return row["state"]  # ended already: cancelling changes nothing
            self._cancel(js, reason)
            fut = self._flush()
        self._durable(fut)
        return "cancelled"

    def _cancel(self, js: JobState, reason: str) -> None:
        job_id = js.job.job_id
        self._ended[job_id] = "cancelled"
        self._set_reason(job_id, reason)
        self._set_halt_reason(job_id, {"policy": self.policy.label, "reason": "cancelled",
                                       "message": f"the job was cancelled ({reason})"
                                       if reason != "cancelled" else
                                       "the job was cancelled"})
        self.core.remove(js)
        self._halt_reason.pop(job_id, None)  # (a running job's preempt took it)
        self._dirty[job_id] = js
        self._event(job_id, "cancelled", None, {"message": reason} if reason != "cancelled"
                    else {})

    def cancel_many(self, job_ids: list[str], reason: str, running: bool = False
                    ) -> dict[str, str]:
        """Cancels the pending jobs of ``job_ids`` (and the running ones if ``running``),
        the last first (so that each gets ``reason``, not its parent's cancellation), in
        one commit, durable on return. Answers every job's state after it."""
        with self.lock:
            for job_id in reversed(job_ids):
                js = self.by_id.get(job_id)
                if js is None or js.status == DONE or (js.status == RUNNING and not running):
                    continue
                self._cancel(js, reason)
            fut = self._flush()
            out = {jid: self._state_of(self.by_id[jid]) for jid in job_ids
                   if jid in self.by_id}
        self._durable(fut)
        return out

    def _set_halt_reason(self, job_id: str, why: dict) -> None:
        self._halt_reason[job_id] = why

    def _event(self, job_id: str, event: str, at: float | None, detail: dict) -> None:
        self._events.append({"job_id": job_id, "event": event,
                             "time": self.clock.now() if at is None else float(at),
                             "received_at": time.time(), "detail": detail})

    def report(self, job_id: str, event: str, at: float | None = None,
               detail: dict | None = None) -> dict:
        """An executor's outcome for a job: ``started`` (it runs where it was placed),
        ``finished`` (it completed), ``failed`` (it ended in error: failed, not retried),
        ``preempted`` (it stopped: confirms a preempt decision, or, unasked, the job was
        lost, e.g. with its node, and waits again with its checkpointed work). Durable
        before it returns."""
        with self.lock:
            out = self._apply(job_id, event, at, detail)
            fut = self._flush()
        self._durable(fut)
        return out

    def report_many(self, events: list[dict]) -> list[dict]:
        """Several outcomes at once (``POST /v1/events``): applied in order under one
        lock, committed in one transaction, durable before it returns. Each gets its own
        answer: ``{"job_id", "state"}``, or ``{"job_id", "status", "detail"}`` when it is
        refused (404, 409, 422) — a refused one changes nothing and the others still
        apply."""
        results = []
        with self.lock:
            for e in events:
                try:
                    results.append(self._apply(e["job_id"], e["event"], e.get("time"),
                                               e.get("detail")))
                except NotFound as err:
                    results.append({"job_id": e["job_id"], "status": 404, "detail": str(err)})
                except Invalid as err:
                    results.append({"job_id": e["job_id"], "status": err.status,
                                    "detail": str(err)})
            fut = self._flush()
        self._durable(fut)
        return results

    def _apply(self, job_id: str, event: str, at: float | None, detail: dict | None) -> dict:
        """One executor event applied to the core (under the lock; the caller flushes)."""
        if event not in EVENTS:
            raise Invalid(f"must be one of {', '.join(EVENTS)}, got {event!r}", "event")
        js = self.by_id.get(job_id)
        if js is None:
            if self.store.job(job_id) is None:
                raise NotFound(f"job {job_id!r} not found")
            raise Invalid(f"job {job_id!r} has ended; {event!r} is not accepted", "event", 409)
        if event == "started":
            if js.status != RUNNING:
                raise Invalid(f"job {job_id!r} is {self._state_of(js)}: no start decision "
                              f"is outstanding", "event", 409)
        elif event == "finished":
            if js.status != RUNNING:
                raise Invalid(f"job {job_id!r} is {self._state_of(js)}, not running",
                              "event", 409)
            now = self.clock.now()
            self.core.finish(js, js.running_progress(now))
            self._ended[job_id] = "succeeded"
        elif event == "failed":
            if js.status == DONE:
                raise Invalid(f"job {job_id!r} has ended", "event", 409)
            self._ended[job_id] = "failed"
            self._set_reason(job_id, (detail or {}).get("message", "the executor reported "
                                                                     "a failure"))
            self._set_halt_reason(job_id, {"policy": self.policy.label, "reason": "failed",
                                           "message": "the executor reported a failure"})
            self.core.remove(js)
        elif event == "preempted" and js.status == RUNNING:
            self.core.evict(js)  # unasked: lost (its node?); it waits again
            self.core.request_pass()  # (evict alone schedules no pass)
        self._event(job_id, event, at, detail or {})  # accepted: kept
        self._dirty[job_id] = js
        return {"job_id": job_id, "state": self._state_of(js)}

    def _set_reason(self, job_id: str, reason: str) -> None:
        self._reasons[job_id] = reason

    # -- nodes ---------------------------------------------------------------------------
    def add_cluster(self, name: str, nodes: list[dict]) -> None:
        with self.lock:
            self.store.add_cluster(name, nodes)
            self._rebuild()
        self.store.writer.drain()

    def node_action(self, name: str, action: str) -> dict:
        with self.lock:
            if name not in self.node_index:
                raise NotFound(f"node {name!r} not found")
            i = self.node_index[name]
            row = self.node_rows[name]
            state = row["state"]
            if action == "heartbeat":
                fields = {"last_heartbeat": time.time()}
                if state == "failed":  # it is back
                    self.core.node_up(i)
                    fields["state"] = "up"
            elif action == "cordon":
                self.core.cordon(i, True)
                fields = {"state": "cordoned" if state != "failed" else "failed"}
            elif action == "uncordon":
                if state == "failed":
                    raise Invalid(f"node {name!r} has failed: a heartbeat brings it back",
                                  "action", 409)
                self.core.cordon(i, False)
                fields = {"state": "up"}
            elif action == "drain":  # no new jobs; its training jobs are preempted
                self.core.cordon(i, True)
                for js in [j for j in self.core.running.values()
                           if any(p[0] == i for p in j.placement) and j.preemptible]:
                    self._set_halt_reason(js.job.job_id, {
                        "policy": self.policy.label, "reason": "node_drained",
                        "message": f"node {name} is draining"})
                    self.core.preempt(js)
                fields = {"state": "draining" if state != "failed" else "failed"}
            elif action == "failure":
                for js in self.core.node_down(i):
                    self._dirty[js.job.job_id] = js
                fields = {"state": "failed"}
            else:
                raise NotFound(f"unknown node action {action!r}")
            self.store.set_node(name, **fields)
            row.update(fields)
            fut = self._flush()
            out = self.node_view(name)
        self._durable(fut)
        return out

    def node_view(self, name: str) -> dict:
        i = self.node_index[name]
        r = self.node_rows[name]
        st = self.core.state
        n = self.spec.nodes[i]
        free_milli = int(st.gpu_free[i, : n.gpus].clip(min=0).sum())
        return {"name": name, "cluster": r["cluster"], "gpu_type": n.gpu_type, "gpus": n.gpus,
                "cpu_milli": n.cpu_milli, "memory_mib": n.memory_mib, "state": r["state"],
                "gpus_free": free_milli / WHOLE_GPU, "gpus_idle": int(st.whole_free[i]),
                "last_heartbeat": r["last_heartbeat"],
                "jobs": sorted(js.job.job_id for js in self.core.running.values()
                               if any(p[0] == i for p in js.placement))}

    def nodes(self) -> list[dict]:
        with self.lock:
            return [self.node_view(n) for n in self.node_names]

    # -- policy --------------------------------------------------------------------------
    def set_policy(self, spec: str, token_name: str | None = None,
                   model_sha256: str | None = None) -> dict:
        """Switches the serving policy: decisions already issued stand; the next pass is
        the new policy's. Recorded in the store."""
        try:
            make_policy(spec)
        except (ConfigError, AutoflowError) as e:
            raise Invalid(str(e), "policy") from e
        with self.lock:
            previous = self.policy_spec
            self.policy_spec = spec
            self._rebuild()
            self.store.record_policy(spec, previous, model_sha256, token_name, self.clock.now())
            out = {"policy": spec, "previous": previous, "label": self.policy.label}
        self.store.writer.drain()
        return out

    # -- views -----------------------------------------------------------------------------
    def queue(self) -> list[JobState]:
        with self.lock:
            return list(self.core.waiting)

    def summary(self) -> dict:
        with self.lock:
            st = self.core.state
            return {"policy": self.policy_spec, "label": self.policy.label,
                    "nodes": len(self.node_names), "gpus": self.spec.total_gpus,
                    "gpus_allocated": st.used_milli / WHOLE_GPU,
                    "pending": len(self.core.waiting), "held": len(self.core.held),
                    "running": len(self.core.running),
                    "last_decision": self.seq, "time": self.clock.now()}
