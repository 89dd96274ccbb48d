"""The placement service: a FastAPI app over the engine (``create_app``).

Routes (the names are interfaces): health, readiness and metrics; clusters and nodes;
jobs (submit, list, get, cancel, why); workflows (a template's run: create, get,
cancel); the decision feed executors long-poll and the events they report; what-if
simulation; the serving policy. ``autoflow serve`` runs it
under uvicorn; tests run the same app on a real server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from .. import workflow_file
from ..errors import AutoflowError, ConfigError
from ..job import INFERENCE
from . import k8s
from .auth import require
from .engine import Engine, Invalid, NotFound, job_from_row
from .limit_body import LimitBody
from .schemas import (
    ClusterIn,
    EventIn,
    EventsIn,
    JobAccepted,
    JobIn,
    PolicyIn,
    WorkflowCreated,
    WorkflowIn,
)
from .store import ACTIVE, STATES, Conflict, Store

MAX_BODY_BYTES = 1 << 20  # 1 MiB: a cluster of a few thousand nodes, or one job
MAX_WAIT_S = 60.0
TOKEN_CACHE_S = 5.0
NODE_ACTIONS = ("heartbeat", "cordon", "uncordon", "drain", "failure")


@dataclass
class ServeConfig:
    db: str = "sqlite:///autoflow-data/autoflow.db"
    policy: str = "las"
    executor: str = "none"  # none | sim | ray
    ray_address: str | None = None  # ray: an existing cluster (None: an embedded one)
    checkpoint_dir: str = "autoflow-data/checkpoints"  # ray: where jobs checkpoint
    checkpoint_interval_s: float = 300.0  # ray: cluster seconds between a job's checkpoints
    time_scale: float = 1.0
    restart_overhead_s: float = 0.0
    default_slo_s: float = 60.0
    max_body_bytes: int = MAX_BODY_BYTES
    k8s_api: str | None = None  # the Kubernetes API server the extender binds pods through
    k8s_token_file: str | None = None  # its bearer token (a service-account token file)
    k8s_ca_file: str | None = None  # the CA that signed its certificate
    k8s_pod_sync_s: float = 5.0  # how often the pods bound through autoflow are checked
    self_optimize: bool = False  # serve the model registry's champion, following promotions
    self_optimize_interval_s: float = 5.0  # seconds between reads of the registry
    self_optimize_window: int = 500  # jobs per window of the loop (0: follow the registry only)


class Notifier:
    """Wakes long-polls (on the event loop) when the engine commits new decisions."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()
        self.engine.listeners.append(self._from_engine)

    def _from_engine(self, seq: int) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        ev, self.event = self.event, asyncio.Event()
        ev.set()

    async def wait_past(self, cursor: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.engine.committed_seq <= cursor:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self.event.wait(), left)
            except TimeoutError:
                return


class Service:
    """What the routes share: the store, the engine, the executor and the token cache."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.store = Store(config.db)
        self.engine = Engine(self.store, config.policy, config.time_scale,
                             config.restart_overhead_s, config.default_slo_s)
        self.notifier = Notifier(self.engine)
        self.executor = None
        self.workers: list = []  # started and stopped with the service (the pod sync)
        self.watcher = None  # --self-optimize: follows the registry's champion
        self.loop = None  # --self-optimize with a window: judges windows of outcomes
        if config.executor == "sim":
            from .sim_executor import SimExecutor

            self.executor = SimExecutor(self.engine)
        elif config.executor == "ray":
            from .ray_executor import RayExecutor

            self.executor = RayExecutor(self.engine, config.ray_address,
                                        config.checkpoint_dir, config.checkpoint_interval_s)
        if config.self_optimize:
            from ..loop.watch import ChampionWatcher

            self.watcher = ChampionWatcher(self, config.self_optimize_interval_s)
            self.workers.append(self.watcher)
            if config.self_optimize_window:
                from ..loop.online import OutcomeLoop
                from ..loop.registry import Registry

                self.loop = OutcomeLoop(self, Registry(config.db, self.watcher.registry.files_dir),
                                        config.self_optimize_window,
                                        config.self_optimize_interval_s,
                                        on_promotion=self.watcher.check_once)
                self.workers.append(self.loop)
        self._tokens: dict[str, tuple[dict, float]] = {}
        self.started = time.time()

    def cached(self, token: str) -> dict | None:
        """The token's holder if it was verified in the last TOKEN_CACHE_S seconds."""
        hit = self._tokens.get(token)
        return hit[0] if hit and hit[1] > time.monotonic() else None

    def who(self, token: str) -> dict | None:
        hit = self.cached(token)
        if hit is not None:
            return hit
        now = time.monotonic()
        who = self.store.token(token)
        if who is not None:
            if len(self._tokens) > 10_000:
                self._tokens.clear()
            self._tokens[token] = (who, now + TOKEN_CACHE_S)
        return who

    def start(self) -> None:
        self.engine.start()
        if self.executor is not None:
            self.executor.start()
        for w in self.workers:
            w.start()

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        if self.executor is not None:
            self.executor.stop()
        self.engine.stop()
        self.store.close()


def job_view(row: dict, engine: Engine) -> dict:
    spec = row["spec"]
    placement = None
    if row["placement"]:
        placement = {"nodes": [{"node": n, "gpus": len(g) * m / 1000 if m else 0,
                                "gpu_indices": g, "gpu_milli": m}
                               for n, g, m, _c, _mem in row["placement"]]}
    return {"job_id": row["job_id"], "state": row["state"], "placement": placement,
            **{k: spec.get(k) for k in ("num_gpus", "gpu_milli", "gpu_types", "kind", "qos",
                                         "cpu_milli", "memory_mib", "user", "slo_s",
                                         "duration_estimate_s", "entrypoint", "runtime_env")},
            "workflow_id": spec.get("workflow_id"), "depends_on": spec.get("depends_on") or [],
            "submit_time": row["submit_time"], "first_start": row["first_start"],
            "start_time": row["start_time"], "finish_time": row["finish_time"],
            "attained_gpu_s": row["attained"], "run_seconds": row["run_seconds"],
            "starts": row["starts"], "preemptions": row["preemptions"],
            "failures": row["failures"], "reason": row["reason"]}


# -- workflows ---------------------------------------------------------------------------
def _overall(states: list[str], started: bool) -> str:
    """The state of a workflow (or of one stage) from its jobs' states: ``pending`` until
    one of them has started, ``running`` while any is still pending or running; once none
    is: ``succeeded`` if all succeeded, else ``failed`` if one failed, else
    ``cancelled``."""
    if any(x in ACTIVE for x in states):
        return "running" if started or any(x not in ACTIVE or x == "running"
                                           for x in states) else "pending"
    if all(x == "succeeded" for x in states):
        return "succeeded"
    return "failed" if "failed" in states else "cancelled"


def workflow_view(workflow_id: str, rows: list[dict]) -> dict:
    """``GET /v1/workflows/{id}``: the workflow's state and times, its stages (in
    submission order) with each job's state, parents and times."""
    stages: dict[str, list[dict]] = {}
    for r in rows:
        spec = r["spec"]
        stages.setdefault(spec.get("stage") or r["job_id"], []).append(
            {"job_id": r["job_id"], "state": r["state"],
             "depends_on": spec.get("depends_on") or [], "submit_time": r["submit_time"],
             "first_start": r["first_start"], "start_time": r["start_time"],
             "finish_time": r["finish_time"], "reason": r["reason"]})
    states = [r["state"] for r in rows]
    starts = [r["first_start"] for r in rows if r["first_start"] is not None]
    state = _overall(states, bool(starts))
    done = state in ("succeeded", "failed", "cancelled")
    finishes = [r["finish_time"] for r in rows if r["finish_time"] is not None]
    counts = {x: states.count(x) for x in STATES if x in states}
    return {"workflow_id": workflow_id, "template": rows[0]["spec"].get("template"),
            "state": state, "jobs": counts,
            "submit_time": min(r["submit_time"] for r in rows),
            "start_time": min(starts) if starts else None,
            "finish_time": max(finishes) if done and finishes else None,
            "stages": [{"name": name, "state": _overall(
                [j["state"] for j in jobs], any(j["first_start"] is not None for j in jobs)),
                        "jobs": jobs} for name, jobs in stages.items()]}


def workflow_rows(template: workflow_file.Template, run: str, now: float) -> list[dict]:
    """The stored rows of one run of ``template``: ``RUN-STAGE[-r]`` in stage order, each
    checked as ``POST /v1/jobs`` checks a job (``JobIn``); a problem raises Invalid
    naming the stage and the field."""
    ids = {st.name: st.job_ids(run) for st in template.stages}
    rows = []
    for i, st in enumerate(template.stages):
        where = f"template stages[{i}] ({st.name})"
        deps = [j for d in st.depends_on for j in ids[d]]
        for jid in ids[st.name]:
            if len(jid) > 200:
                raise Invalid(f"{where}: its job id {jid[:40]}… is longer than 200 characters:"
                              f" use a shorter run id", "run")
            raw = {**st.fields, **(st.run or {}), "job_id": jid, "workflow_id": run,
                   "depends_on": deps}
            if st.duration_hint_s is not None:
                raw["duration_estimate_s"] = st.duration_hint_s
            try:
                body = JobIn.model_validate(raw)
            except ValidationError as e:
                err = e.errors()[0]
                field = ".".join(str(x) for x in err["loc"])
                raise Invalid(f"{where}{f' field {field!r}' if field else ''}: "
                              f"{err['msg'].removeprefix('Value error, ')}", "template",
                              kind="value_error") from e
            spec = body.model_dump()
            spec.pop("job_id")
            if not deps:
                del spec["depends_on"]
            if body.kind == INFERENCE and body.slo_s is None:
                spec["slo_s"] = None
            spec.update(group=f"{template.name}/{st.name}", stage=st.name,
                        template=template.name)
            rows.append({"job_id": jid, "state": "pending", "submit_time": now, "spec": spec,
                         "user": body.user, "num_gpus": body.num_gpus, "kind": body.kind})
    return rows


def check_rows(engine: Engine, rows: list[dict]) -> None:
    """Each stage's job (its first replica) checked against the registered nodes
    (``Engine.check_job``): Invalid naming the stage and the constraint."""
    seen: set[str] = set()
    for row in rows:
        stage = row["spec"]["stage"]
        if stage in seen:
            continue
        seen.add(stage)
        try:
            engine.check_job(job_from_row(row))
        except Invalid as e:
            raise Invalid(f"template stage {stage!r} field {e.field!r}: {e}", "template") from e
        except ValueError as e:
            raise Invalid(f"template stage {stage!r}: {e}", "template") from e


def decision_view(d: dict) -> dict:
    return {"seq": d["seq"], "action": d["action"], "job_id": d["job_id"],
            "placement": d["placement"], "explanation": d["explanation"],
            "policy": d["policy"], "time": d["time"]}


async def locked(engine: Engine, fn, *args):
    """``fn(*args)``, which takes the engine's lock, on the event loop when the lock is
    free at once (no thread hop: the fast path of a submission), else in the threadpool
    (a pass holds it: the event loop must not wait)."""
    if engine.lock.acquire(blocking=False):
        try:
            return fn(*args)
        finally:
            engine.lock.release()
    return await run_in_threadpool(fn, *args)


def _error(status: int, msg: str, field: str | None = None, kind: str = "value_error"):
    loc = ["body", field] if field else ["body"]
    return JSONResponse({"detail": [{"loc": loc, "msg": msg, "type": kind}]}, status_code=status)


def create_app(config: ServeConfig | None = None, service: Service | None = None) -> FastAPI:
    config = config or ServeConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc = app.state.service
        svc.notifier.bind(asyncio.get_running_loop())
        svc.start()
        try:
            yield
        finally:
            svc.stop()

    app = FastAPI(title="autoflow", version="0.1.0", lifespan=lifespan,
                  description="Placement service: the scheduler core and its policies behind "
                              "an HTTP API. Every route but /healthz and /readyz needs a "
                              "bearer token.")
    app.state.service = service or Service(config)
    app.add_middleware(LimitBody, max_bytes=config.max_body_bytes)

    @app.exception_handler(NotFound)
    async def not_found(_req, e: NotFound):
        return JSONResponse({"detail": str(e)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(_req, e: Conflict):
        return JSONResponse({"detail": str(e)}, status_code=409)

    @app.exception_handler(Invalid)
    async def invalid(_req, e: Invalid):
        if e.status == 422:
            return _error(422, str(e), e.field, e.kind)
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    def svc(request: Request) -> Service:
        return request.app.state.service

    reader, executor = Depends(require("reader")), Depends(require("executor"))
    submitter, admin = Depends(require("submitter")), Depends(require("admin"))

    # -- health ------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz(request: Request):
        s = svc(request)
        try:
            s.store.last_decision()
        except Exception as e:  # noqa: BLE001 (any database error: not ready)
            return JSONResponse({"status": "unavailable", "reason": type(e).__name__},
                                status_code=503)
        return {"status": "ready", "nodes": len(s.engine.node_names),
                "policy": s.engine.policy_spec}

    # -- clusters and nodes ---------------------------------------------------------------
    @app.post("/v1/clusters", status_code=201, tags=["nodes"], dependencies=[admin])
    def add_cluster(body: ClusterIn, request: Request) -> dict:
        s = svc(request)
        s.engine.add_cluster(body.name, [n.model_dump() for n in body.nodes])
        return {"name": body.name, "nodes": len(body.nodes)}

    @app.get("/v1/nodes", tags=["nodes"], dependencies=[reader])
    def list_nodes(request: Request) -> dict:
        return {"nodes": svc(request).engine.nodes()}

    def node_route(action: str, scope):
        def route(name: str, request: Request) -> dict:
            return svc(request).engine.node_action(name, action)
        route.__name__ = f"node_{action}"
        app.post(f"/v1/nodes/{{name}}/{action}", tags=["nodes"], dependencies=[scope],
                 name=f"node_{action}")(route)

    for action in NODE_ACTIONS:
        node_route(action, executor if action in ("heartbeat", "failure") else admin)

    # -- jobs -------------------------------------------------------------------------------
    @app.post("/v1/jobs", status_code=201, response_model=JobAccepted, tags=["jobs"],
              dependencies=[submitter])
    async def submit(body: JobIn, request: Request):
        s = svc(request)
        spec = body.model_dump()
        job_id = spec.pop("job_id") or f"job-{uuid.uuid4().hex[:16]}"
        if body.kind == INFERENCE and body.slo_s is None:
            spec["slo_s"] = None  # the service's default SLO applies
        for key in ("workflow_id", "depends_on"):
            if not spec[key]:
                del spec[key]  # (a job outside any workflow is stored as before)
        row = {"job_id": job_id, "state": "pending", "submit_time": s.engine.clock.now(),
               "spec": spec, "user": body.user, "num_gpus": body.num_gpus, "kind": body.kind}
        try:
            job = job_from_row(row)
        except ValueError as e:
            raise Invalid(str(e)) from e
        if body.depends_on:  # every parent must exist (it may have ended: see admit)
            known = await run_in_threadpool(s.store.job_states, body.depends_on)
            missing = [p for p in body.depends_on if p not in known]
            if missing:
                raise Invalid(f"no job {missing[0]!r}"
                              f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}"
                              f": the jobs a job depends on must exist", "depends_on",
                              kind="value_error")
        await locked(s.engine, s.engine.check_job, job)
        await s.store.insert_job_awaited(row)  # durable before the 201 (group commit)
        fut, state = await locked(s.engine, s.engine.admit, row)
        if fut is not None:  # cancelled at once (a parent failed): durable before the 201
            await asyncio.wrap_future(fut)
        return JSONResponse({"job_id": job_id, "state": state}, status_code=201)

    @app.get("/v1/jobs", tags=["jobs"], dependencies=[reader])
    def list_jobs(request: Request, state: list[str] = Query(default=[]),
                  user: str | None = Query(None, max_length=200),
                  kind: str | None = Query(None, max_length=20),
                  after: int = Query(0, ge=0, le=2**62, description="cursor: 'next' of the "
                                                                     "previous page"),
                  limit: int = Query(100, ge=1, le=1000)) -> dict:
        bad = [x for x in state if x not in STATES]
        if bad:
            raise HTTPException(422, [{"loc": ["query", "state"], "type": "value_error",
                                       "msg": f"state must be one of {', '.join(STATES)}, got "
                                              f"{bad[0]!r}"}])
        s = svc(request)
        rows = s.store.jobs(state, user, kind, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"jobs": [job_view(r, s.engine) for r in rows],
                "next": rows[-1]["seq"] if more else None}

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], dependencies=[reader])
    def get_job(job_id: str, request: Request) -> dict:
        s = svc(request)
        row = s.store.job(job_id)
        if row is None:
            raise NotFound(f"job {job_id!r} not found")
        return job_view(row, s.engine)

    @app.delete("/v1/jobs/{job_id}", tags=["jobs"], dependencies=[submitter])
    def cancel(job_id: str, request: Request) -> dict:
        return {"job_id": job_id, "state": svc(request).engine.cancel(job_id)}

    @app.post("/v1/jobs/{job_id}/events", tags=["executors"], dependencies=[executor])
    def job_event(job_id: str, body: EventIn, request: Request) -> dict:
        detail = {"message": body.message} if body.message else {}
        return svc(request).engine.report(job_id, body.event, body.time, detail)

    @app.post("/v1/events", tags=["executors"], dependencies=[executor])
    def events(body: EventsIn, request: Request):
        """Several executor events at once (at most 1,000), applied in order and committed
        together: one answer each, ``{"job_id", "state"}`` or, for one refused,
        ``{"job_id", "status", "detail"}`` (the others still apply)."""
        items = [{"job_id": e.job_id, "event": e.event, "time": e.time,
                  "detail": {"message": e.message} if e.message else {}} for e in body.events]
        return JSONResponse({"results": svc(request).engine.report_many(items)})

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"], dependencies=[reader])
    def job_events(job_id: str, request: Request) -> dict:
        s = svc(request)
        if s.store.job(job_id) is None:
            raise NotFound(f"job {job_id!r} not found")
        return {"job_id": job_id, "events": [
            {k: e[k] for k in ("event", "time", "received_at", "detail")}
            for e in s.store.events(job_id)]}

    # -- workflows ---------------------------------------------------------------------------
    @app.post("/v1/workflows", status_code=201, response_model=WorkflowCreated,
              tags=["workflows"], dependencies=[submitter])
    async def create_workflow(body: WorkflowIn, request: Request):
        """One run of a workflow template: every stage's job(s) stored in one transaction
        (durable before the 201) and admitted; each is held until the stages it depends
        on have succeeded."""
        s = svc(request)
        try:
            template = workflow_file.parse(body.template, "template")
        except ConfigError as e:
            raise Invalid(str(e), "template", kind="value_error") from e
        run = body.run or f"{template.name}-{uuid.uuid4().hex[:12]}"
        rows = workflow_rows(template, run, s.engine.clock.now())
        await locked(s.engine, check_rows, s.engine, rows)
        ids = [r["job_id"] for r in rows]
        if await run_in_threadpool(s.store.workflow_jobs, run, 1):
            raise Conflict(f"workflow {run!r} exists already: give another run id")
        taken = await run_in_threadpool(s.store.job_states, ids)
        if taken:
            raise Conflict(f"workflow {run!r}: job {min(taken)!r} exists already")
        await s.store.insert_jobs_awaited(rows, f"workflow {run!r}")  # all or none, durable
        fut, _states = await locked(s.engine, s.engine.admit_many, rows)
        if fut is not None:
            await asyncio.wrap_future(fut)
        return JSONResponse({"workflow_id": run, "jobs": ids}, status_code=201)

    @app.get("/v1/workflows/{workflow_id}", tags=["workflows"], dependencies=[reader])
    def get_workflow(workflow_id: str, request: Request) -> dict:
        """The workflow's state and times, its stages with each job's state, parents and
        times."""
        rows = svc(request).store.workflow_jobs(workflow_id)
        if not rows:
            raise NotFound(f"workflow {workflow_id!r} not found")
        return workflow_view(workflow_id, rows)

    @app.delete("/v1/workflows/{workflow_id}", tags=["workflows"], dependencies=[submitter])
    def cancel_workflow(workflow_id: str, request: Request,
                        running: bool = Query(False, description="stop its running jobs "
                                                                 "too")) -> dict:
        """Cancels the workflow's pending jobs (held or waiting; with ``running=true``,
        its running jobs too): the workflow as it is then, and the jobs cancelled."""
        s = svc(request)
        rows = s.store.workflow_jobs(workflow_id)
        if not rows:
            raise NotFound(f"workflow {workflow_id!r} not found")
        before = {r["job_id"]: r["state"] for r in rows}
        after = s.engine.cancel_many(list(before), f"workflow {workflow_id} was cancelled",
                                     running)
        rows = s.store.workflow_jobs(workflow_id)
        return {**workflow_view(workflow_id, rows),
                "cancelled": [j for j, st in after.items()
                              if st == "cancelled" and before.get(j) != "cancelled"]}

    # -- decisions ---------------------------------------------------------------------------
    @app.get("/v1/decisions", tags=["executors"], dependencies=[reader])
    async def decisions(request: Request,
                        after: int = Query(0, ge=0, le=2**62, description="cursor"),
                        wait: float = Query(0.0, ge=0.0, le=MAX_WAIT_S,
                                            description="long-poll up to this many seconds"),
                        limit: int = Query(500, ge=1, le=5000)):
        s = svc(request)
        if wait and s.engine.committed_seq <= after:
            await s.notifier.wait_past(after, wait)
        rows = await run_in_threadpool(s.store.decisions_after, after, limit)
        # plain JSON, no response model: the hot path of every executor (a page of
        # decisions with their explanations is re-encoded by nothing but json.dumps)
        return JSONResponse({"decisions": [decision_view(d) for d in rows],
                             "cursor": rows[-1]["seq"] if rows else after})

    # -- policy -------------------------------------------------------------------------------
    @app.get("/v1/policy", tags=["policy"], dependencies=[reader])
    def get_policy(request: Request) -> dict:
        s = svc(request)
        return {"policy": s.engine.policy_spec, "label": s.engine.policy.label,
                "history": s.store.policy_history(20)}

    @app.get("/v1/loop", tags=["policy"], dependencies=[reader])
    def get_loop(request: Request) -> dict:
        """``--self-optimize``: the served champion and the registry event (with its reason)
        that made it champion; the loop's judged windows (drift, the champion against the
        heuristics, retrainings, promotions)."""
        from .dashboard import self_optimize_view

        view = self_optimize_view(svc(request))
        return {"enabled": view is not None, **(view or {})}

    @app.put("/v1/policy", tags=["policy"])
    def put_policy(body: PolicyIn, request: Request, who: dict = admin) -> dict:
        s = svc(request)
        sha = None
        name, _, arg = body.policy.partition("+")[0].partition(":")
        if name == "rl" and arg:
            from .. import trust

            try:
                sha = trust.sha256_file(arg)
            except OSError:
                sha = None
        try:
            return s.engine.set_policy(body.policy, who["name"], sha)
        except AutoflowError as e:
            if isinstance(e, Invalid):
                raise
            raise Invalid(str(e), "policy") from e

    from . import dashboard, metrics, why

    why.mount(app)
    metrics.mount(app)
    dashboard.mount(app)
    k8s.mount(app)  # the kube-scheduler extender (served on its own TLS listener)
    return app
