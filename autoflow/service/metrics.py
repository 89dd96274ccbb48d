"""``GET /metrics``: the service in Prometheus' text format, with kube-scheduler's naming.

Each app has a registry of its own (never the process-wide one), so that two apps in one
process (tests) count apart. The route needs a ``reader`` token, like every route but
health. No label carries a job id, a user or a token name: label values come from small
fixed sets (results, actions, states, queues, route templates) or from the policy.

Scheduling (counted on the engine's timer thread, one pass at a time):

- ``autoflow_schedule_attempts_total{result}``: a scheduling pass with jobs waiting is one
  attempt per waiting job. ``scheduled``: the jobs it started; ``unschedulable``: the jobs
  that waited when it began and still wait when it ends (the victims it preempted are not
  counted: they were not attempted); ``error``: every job that waited when a pass raised.
  Passes over an empty queue attempt nothing.
- ``autoflow_scheduling_attempt_duration_seconds``: the wall time of each pass with jobs
  waiting (histogram).
- ``autoflow_preemption_attempts_total`` and ``autoflow_preemption_victims``: passes that
  preempted, and a histogram of how many jobs each preempted.
- ``autoflow_decisions_total{policy,action}``: decisions committed (``start`` /
  ``preempt``) by the policy label that took them.

State (read when scraped, under the engine's lock):

- ``autoflow_pending_jobs{queue}``: waiting jobs; ``queue="active"``: never started,
  ``queue="preempted"``: waiting again after running (preempted or lost with a node).
  Held jobs are not among them (they are not in the queue yet).
- ``autoflow_held_jobs``: jobs held until the jobs they depend on have succeeded
  (workflows; ``pending`` in the API, not yet in the queue).
- ``autoflow_gpus_total``, ``autoflow_gpus_allocated`` (GPUs, fractional shares
  included), ``autoflow_gpu_fragmentation_ratio`` (share of free GPU capacity that sits on
  partly used GPUs), ``autoflow_nodes{state}``.
- ``autoflow_jobs{state}``: jobs in the store by state.
- ``autoflow_policy_info{policy,label}`` (1 for the serving policy) and
  ``autoflow_policy_switches_total`` (switches recorded in the store).
- ``autoflow_scheduler_errors_total``: errors on the timer thread (the service kept
  serving).

HTTP: ``autoflow_http_request_duration_seconds{method,route,status}``, where ``route`` is
the matched route's template (``/v1/jobs/{job_id}``), never the raw path; requests that
match no route count under ``route="unmatched"``.
"""

from __future__ import annotations

import time

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..job import WHOLE_GPU
from .auth import require
from .store import STATES

PASS_BUCKETS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
VICTIM_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0)
NODE_STATES = ("up", "cordoned", "draining", "failed")


class ServiceMetrics:
    """The app's registry and the instruments the engine and the HTTP layer feed."""

    def __init__(self, service):
        self.service = service
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.attempts = Counter("autoflow_schedule_attempts", "Scheduling attempts, one per "
                                "waiting job per pass, by result", ["result"], registry=r)
        for result in ("scheduled", "unschedulable", "error"):
            self.attempts.labels(result)
        self.pass_seconds = Histogram("autoflow_scheduling_attempt_duration_seconds",
                                      "Wall time of a scheduling pass with jobs waiting",
                                      buckets=PASS_BUCKETS, registry=r)
        self.preemption_attempts = Counter("autoflow_preemption_attempts",
                                           "Scheduling passes that preempted", registry=r)
        self.victims = Histogram("autoflow_preemption_victims",
                                 "Jobs preempted by a preempting pass",
                                 buckets=VICTIM_BUCKETS, registry=r)
        self.decisions = Counter("autoflow_decisions", "Decisions committed, by policy and "
                                 "action", ["policy", "action"], registry=r)
        self.http = Histogram("autoflow_http_request_duration_seconds", "HTTP request latency "
                              "by method, route template and status",
                              ["method", "route", "status"], buckets=HTTP_BUCKETS, registry=r)
        r.register(_StateCollector(service))
        engine = service.engine
        engine.pass_observers.append(self.on_pass)
        engine.on_decision.append(self.on_decision)

    def on_pass(self, wall: float, waiting: int, started: int, preempted: int,
                waiting_after: int, ok: bool) -> None:
        if not waiting:
            return
        self.pass_seconds.observe(wall)
        if not ok:
            self.attempts.labels("error").inc(waiting)
            return
        if started:
            self.attempts.labels("scheduled").inc(started)
        left = waiting_after - preempted
        if left > 0:
            self.attempts.labels("unschedulable").inc(left)
        if preempted:
            self.preemption_attempts.inc()
            self.victims.observe(preempted)

    def on_decision(self, d) -> None:
        self.decisions.labels(d.policy, d.action).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    """Gauges read from the engine and the store when scraped."""

    def __init__(self, service):
        self.service = service

    def describe(self):
        return []

    def collect(self):
        engine, store = self.service.engine, self.service.store
        with engine.lock:
            core = engine.core
            st = core.state
            fresh = sum(1 for js in core.waiting if not js.starts)
            pending = len(core.waiting)
            held = len(core.held)
            total = engine.spec.total_gpus
            allocated = st.used_milli / WHOLE_GPU
            frag = st.fragmentation()
            node_states = [r["state"] for r in engine.node_rows.values()]
            policy, label = engine.policy_spec, engine.policy.label
            errors = engine.errors
        g = GaugeMetricFamily("autoflow_pending_jobs", "Jobs waiting, by queue (active: never "
                              "started; preempted: waiting again after running)",
                              labels=["queue"])
        g.add_metric(["active"], fresh)
        g.add_metric(["preempted"], pending - fresh)
        yield g
        yield GaugeMetricFamily("autoflow_held_jobs", "Jobs held until the jobs they depend "
                                "on have succeeded (not in the queue yet)", value=held)
        yield GaugeMetricFamily("autoflow_gpus_total", "GPUs on registered nodes",
                                value=total)
        yield GaugeMetricFamily("autoflow_gpus_allocated", "GPUs allocated to running jobs "
                                "(fractional shares included)", value=allocated)
        yield GaugeMetricFamily("autoflow_gpu_fragmentation_ratio", "Share of free GPU "
                                "capacity on partly used GPUs of live nodes", value=frag)
        g = GaugeMetricFamily("autoflow_nodes", "Registered nodes by state", labels=["state"])
        for s in NODE_STATES:
            g.add_metric([s], sum(1 for x in node_states if x == s))
        yield g
        counts = store.count_jobs()
        g = GaugeMetricFamily("autoflow_jobs", "Jobs in the store by state", labels=["state"])
        for s in STATES:
            g.add_metric([s], counts.get(s, 0))
        yield g
        g = GaugeMetricFamily("autoflow_policy_info", "The serving policy (1)",
                              labels=["policy", "label"])
        g.add_metric([policy, label], 1)
        yield g
        switches = sum(1 for h in store.policy_history(100_000) if h.get("previous"))
        yield CounterMetricFamily("autoflow_policy_switches", "Policy switches recorded",
                                  value=switches)
        yield CounterMetricFamily("autoflow_scheduler_errors", "Errors on the scheduler's "
                                  "timer thread", value=errors)
        yield from self_optimize_metrics(self.service)


def self_optimize_metrics(service):
    """``--self-optimize``: the served champion with the registry event and reason that
    made it champion, the swaps, and the loop's windows."""
    w = service.watcher
    if w is None:
        return
    v = w.view()
    g = GaugeMetricFamily("autoflow_champion_info", "The registry's champion being served (1), "
                          "with the event that made it champion and its reason",
                          labels=["sha256", "event", "reason"])
    if v["serving"]:
        g.add_metric([v["serving"], v["event"] or "", (v["reason"] or "")[:200]], 1)
    yield g
    yield CounterMetricFamily("autoflow_self_optimize_swaps", "Switches of the serving "
                              "policy to a new champion", value=v["swaps"])
    loop = service.loop
    if loop is None:
        return
    lv = loop.view(1)
    for key, name, what in (("windows", "windows", "Windows judged or recorded"),
                            ("drifts", "drift_windows", "Windows whose outcomes drifted"),
                            ("retrainings", "retrainings", "Challengers trained"),
                            ("promotions", "promotions", "Challengers promoted"),
                            ("errors", "errors", "Windows that failed to be judged")):
        yield CounterMetricFamily(f"autoflow_loop_{name}", what, value=lv[key])
    last = next((r for r in reversed(loop.windows) if r.get("performance")), None)
    if last is not None:
        yield GaugeMetricFamily("autoflow_loop_champion_vs_best_heuristic", "The champion's "
                                "average JCT over the best heuristic's, replayed on the last "
                                "judged window", value=last["performance"]["ratio"])


class _HTTPTimer:
    """ASGI middleware: each HTTP request's latency by method, route template, status."""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.http.labels(scope["method"], template,
                                     str(status[0])).observe(time.perf_counter() - t0)


def mount(app: FastAPI) -> None:
    """Adds ``GET /metrics`` and the HTTP latency middleware to the app."""
    metrics = ServiceMetrics(app.state.service)
    app.state.metrics = metrics
    app.add_middleware(_HTTPTimer, metrics=metrics)

    @app.get("/metrics", tags=["health"], dependencies=[Depends(require("reader"))],
             response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                              "description": "Prometheus text format"}})
    def prometheus_metrics(request: Request) -> Response:
        return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
