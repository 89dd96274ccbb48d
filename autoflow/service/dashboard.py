"""The dashboard: ``GET /`` serves one static page (``static/index.html``, vanilla JS and
CSS, no build step) and ``/static/…`` its script and style. They hold no data, so they
need no token: the page asks for one (kept in the browser's sessionStorage) and reads the
API with it, every few seconds:

- ``GET /v1/dashboard`` (``reader``): one read of what the page shows: the serving policy
  and model, the summary, the nodes with their GPU occupancy, the head of the queue in
  policy order (each job with its workflow id), then the jobs held for the jobs they
  depend on (``position`` null, ``held`` true, the reason naming the parents they wait
  for), and the latest decisions with their explanation's message;
- ``GET /v1/jobs/{id}/why`` for each job at the head of the queue: its pending reason
  (where that route is missing or fails, the page shows the one-line reason the
  dashboard read carries: the capacity test the pass makes).

Its ``workflows`` are the page's Workflows panel: every workflow with a job pending
(waiting or held) or running, newest first, then the ones that ended last (most recently
finished first), ``WORKFLOW_LIMIT`` in all; each as ``GET /v1/workflows/{id}`` sees it
(``app.workflow_view``), its stages in submission order with their state and number of
jobs, where a stage not started whose pending jobs are all held for their parents is
``held`` (``pending``: in the queue).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ..job import WHOLE_GPU
from .app import workflow_view
from .auth import require
from .explain import why_not_now
from .store import TERMINAL
from .why import held_message, waits_for

STATIC = Path(__file__).parent / "static"
WORKFLOW_LIMIT = 20  # GET /v1/dashboard's "workflows": the active ones, then the ended ones
RECENT_SCAN = 5000  # the ended ones are looked for among the latest jobs in a workflow


def _decision(d) -> dict:
    nodes = [{"node": n["node"], "gpus": n["gpus"]} for n in (d.placement or {}).get("nodes", ())]
    expl = d.explanation or {}
    return {"seq": d.seq, "action": d.action, "job_id": d.job_id, "policy": d.policy,
            "time": d.time, "nodes": nodes, "message": expl.get("message", ""),
            "reason": expl.get("reason")}


def dashboard_view(service, queue_limit: int = 50, decision_limit: int = 30) -> dict:
    engine, store = service.engine, service.store
    history = store.policy_history(1)
    with engine.lock:
        now = engine.clock.now()
        summary = engine.summary()
        nodes = engine.nodes()
        waiting = engine.core.waiting
        head = waiting.first(min(queue_limit, len(waiting)))
        queue = [{"position": i + 1, "job_id": js.job.job_id, "num_gpus": js.job.num_gpus,
                  "gpu_milli": js.job.gpu_milli, "gpu_types": list(js.job.gpu_types),
                  "kind": js.job.kind, "user": js.job.user,
                  "workflow_id": js.job.workflow_id or None, "held": False,
                  "waited_s": round(now - js.submit, 3), "starts": js.starts,
                  "preemptions": js.preemptions, "predicted_s": round(js.predicted, 3),
                  "reason": why_not_now(engine, js)}
                 for i, js in enumerate(head)]
        for js in list(engine.core.held.values())[:max(0, queue_limit - len(queue))]:
            parents, waiting = waits_for(engine, js)
            queue.append({"position": None, "job_id": js.job.job_id,
                          "num_gpus": js.job.num_gpus, "gpu_milli": js.job.gpu_milli,
                          "gpu_types": list(js.job.gpu_types), "kind": js.job.kind,
                          "user": js.job.user, "workflow_id": js.job.workflow_id or None,
                          "held": True, "waiting_for": waiting,
                          "waited_s": round(now - js.submit, 3), "starts": js.starts,
                          "preemptions": js.preemptions, "predicted_s": None,
                          "reason": held_message(parents, waiting)})
        live: dict[str, tuple[float, int]] = {}  # workflow -> its newest live job
        held: set[str] = set()  # the ids of the workflows' jobs held for their parents
        core = engine.core
        for group in (core.waiting, core.held.values(), core.running.values()):
            for js in group:
                if wid := js.job.workflow_id:
                    live[wid] = max(live.get(wid, (js.submit, js.idx)), (js.submit, js.idx))
        held.update(js.job.job_id for js in core.held.values() if js.job.workflow_id)
        recent = [_decision(d) for d in reversed(engine.recent[-decision_limit:])]
        fragmentation = engine.core.state.fragmentation()
        label = engine.policy.label
        policy = engine.policy_spec
    model = None
    if history and history[0]["policy"] == policy:
        model = history[0].get("model_sha256")
    for n in nodes:
        n["gpus_used"] = round(n["gpus"] - n["gpus_free"], 3)
    return {"time": now, "policy": {"policy": policy, "label": label, "model_sha256": model},
            "self_optimize": self_optimize_view(service),
            "summary": {**summary, "fragmentation": fragmentation,
                        "gpus_allocated": round(summary["gpus_allocated"], 3)},
            "nodes": nodes, "queue": queue, "decisions": recent,
            "workflows": workflows_view(store, live, held, WORKFLOW_LIMIT),
            "whole_gpu_milli": WHOLE_GPU}


def workflows_view(store, live: dict[str, tuple[float, int]], held: set[str],
                   limit: int) -> list[dict]:
    """The dashboard's workflows: those with a live job (``live``: workflow id -> the
    submit time and index of its newest live job, from the engine), newest first, then
    the ones that ended last, at most ``limit`` in all, each read from the store
    (``workflow_jobs``, by its indexed column) and summarized from ``workflow_view``;
    ``held``: the ids of the jobs held for their parents."""
    if limit <= 0:
        return []
    ids = sorted(live, key=live.__getitem__, reverse=True)[:limit]
    if len(ids) < limit:
        ended = {w: f for w, f in store.recent_workflows(RECENT_SCAN).items()
                 if w not in live and f is not None}
        ids += sorted(ended, key=ended.__getitem__, reverse=True)[:limit - len(ids)]
    views = []
    for wid in ids:
        rows = store.workflow_jobs(wid)
        if rows:
            views.append(_workflow(workflow_view(wid, rows), held))
    active = [v for v in views if v["state"] not in TERMINAL]  # (one may have ended since)
    done = [v for v in views if v["state"] in TERMINAL]
    active.sort(key=lambda v: v["submit_time"], reverse=True)
    done.sort(key=lambda v: v["finish_time"] or 0.0, reverse=True)
    return active + done


def _workflow(view: dict, held: set[str]) -> dict:
    stages = []
    for s in view["stages"]:
        state = s["state"]
        pending = [j["job_id"] for j in s["jobs"] if j["state"] == "pending"]
        if state == "pending" and pending and all(j in held for j in pending):
            state = "held"
        stages.append({"name": s["name"], "state": state, "jobs": len(s["jobs"])})
    return {"workflow_id": view["workflow_id"], "template": view["template"],
            "state": view["state"], "stages": stages, "submit_time": view["submit_time"],
            "start_time": view["start_time"], "finish_time": view["finish_time"]}


def self_optimize_view(service) -> dict | None:
    """``autoflow serve --self-optimize``: the served champion and why (the registry's
    event), and the loop's windows (``loop.online``); None without the flag."""
    if service.watcher is None:
        return None
    return {"champion": service.watcher.view(),
            "loop": service.loop.view(5) if service.loop is not None else None}


def mount(app: FastAPI) -> None:
    """Adds ``GET /``, ``/static/…`` and ``GET /v1/dashboard`` to the app."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/v1/dashboard", tags=["dashboard"], dependencies=[Depends(require("reader"))])
    def dashboard(request: Request, queue: int = Query(50, ge=0, le=500),
                  decisions: int = Query(30, ge=0, le=200)) -> dict:
        """What the dashboard shows, in one read: policy and model, summary, nodes with
        their GPU occupancy, the head of the queue in policy order, recent decisions,
        the active and latest ended workflows with their stages."""
        return dashboard_view(request.app.state.service, queue, decisions)
