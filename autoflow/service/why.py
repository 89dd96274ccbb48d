"""Why is a job where it is, and what would happen if: ``GET /v1/jobs/{id}/why`` and
``POST /v1/simulate``.

``why`` answers ``{"job_id", "state", "reasons", "queue_position", "eta_s"}``. Each
reason is ``{"code", "message", ...}`` with the numbers behind it (Kueue's pending
reasons and Volcano's "need 8, free 3" are the anchors). The vocabulary:

==========================  =====================================================================
``insufficient_capacity``   no live node of an allowed type has what it needs free now: the
                            resource short (``gpus``, ``gpu_share``, ``cpu_milli``,
                            ``memory_mib``), ``need``, ``free`` on the best live node (``node``)
                            and ``free_total`` on all of them
``gpu_type_unavailable``    its GPU-type constraint: no live node has an allowed type (those
                            that have are cordoned, draining or failed: ``nodes``)
``waiting_for_gang``        a multi-GPU gang: enough GPUs free in all, but not on one node (a
                            one-node gang) or not on whole idle nodes (a gang wider than any
                            node)
``node_cordoned``           capacity it needs is on cordoned, draining or failed nodes
                            (``nodes``): it would start now, or could ever run, only there
``queued_behind``           ``ahead`` jobs rank before it in the policy's order, with
                            ``gpu_hours_ahead`` of predicted work (GPUs x predicted remaining
                            time); ``first`` names the first few
``preempted``               it ran, was preempted ``preemptions`` times (or lost with its node
                            ``failures`` times) and waits to resume with ``progress_s`` done
``pending_pass``            it fits now and heads the queue: the next scheduling pass starts it
``waiting_for_dependencies``  it is held until the jobs it depends on have succeeded:
                            ``waiting_for`` (their ids), ``parents`` (each parent's id and
                            state); it is not in the queue yet
``no_eta``                  the what-if replay did not start it: nothing left to happen with
                            the live nodes as they are, or the replay's event bound was reached
``running``                 it runs: ``placement``, ``since`` (cluster seconds) and
                            ``predicted_finish_s``
``succeeded`` / ``failed`` / ``cancelled``  it has ended (``finish_time``, and the reason given)
==========================  =====================================================================

``queue_position`` is the job's 1-based place in the waiting queue in the policy's order
(null unless pending; null for a held job too: it is not queued yet). ``eta_s`` is how many cluster seconds from now the what-if replay
(``autoflow.service.whatif``) starts it: 0 for a running job, null for an ended one or
when the replay does not start it (then a ``no_eta`` reason says why).

``simulate`` adds hypothetical jobs (``JobIn`` bodies, checked as submissions are) to a
copy of the current state now and answers when each would start and finish
(``sbatch --test-only``, Kueue's proposed ``/simulate``); nothing is stored or changed.
A hypothetical job may depend on real jobs and on hypothetical ones listed before it.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from pydantic import Field

from ..core.jobstate import HELD, RUNNING, WAITING, JobState
from ..feasibility import fits_now, needs_multi_node
from ..job import INFERENCE, WHOLE_GPU
from .auth import require
from .engine import Invalid, NotFound, job_from_row
from .schemas import JobIn, Strict
from .whatif import fork, predicted_duration, predicted_remaining

if TYPE_CHECKING:
    from ..state import ClusterState
    from .engine import Engine

MAX_SIMULATE_JOBS = 1000
FIRST_AHEAD = 5  # jobs ahead named in ``queued_behind``
PARENTS_NAMED = 10  # parents named in the message of ``waiting_for_dependencies``
DOWN = ("cordoned", "draining", "failed")


class SimulateIn(Strict):
    jobs: list[JobIn] = Field(min_length=1, max_length=MAX_SIMULATE_JOBS,
                              description=f"hypothetical jobs, submitted now (at most "
                                          f"{MAX_SIMULATE_JOBS})")


def _reason(code: str, message: str, **detail) -> dict:
    return {"code": code, "message": message, **detail}


def _untracked(x: int) -> int | None:
    return None if x >= (1 << 60) else int(x)  # ClusterState's "not tracked" is huge


def _gpus(n: int) -> str:
    return f"{n} GPU{'' if n == 1 else 's'}"


# -- reasons ---------------------------------------------------------------------------------
def _queue_position(engine: Engine, js: JobState) -> int:
    waiting = engine.core.waiting
    return bisect_left(waiting._items, waiting.key_of(js)) + 1


def _queued_behind(engine: Engine, js: JobState, position: int, now: float) -> dict | None:
    if position <= 1:
        return None
    ahead = engine.core.waiting.first(position - 1)
    hours = sum(a.job.gpu_demand * predicted_remaining(a, now) for a in ahead) / 3600.0
    fits = fits_now(engine.core.state, js.req)
    msg = (f"queued behind {len(ahead)} job(s) with {hours:,.1f} GPU-hours of predicted work "
           f"ahead in {engine.policy.label}'s order")
    if fits:
        msg += "; it fits now, but the policy starts the jobs ahead first"
    return _reason("queued_behind", msg, ahead=len(ahead), gpu_hours_ahead=round(hours, 3),
                   first=[a.job.job_id for a in ahead[:FIRST_AHEAD]], fits_now=fits)


def _down_nodes(engine: Engine, mask=None) -> list[dict]:
    return [{"node": name, "state": engine.node_rows[name]["state"]}
            for i, name in enumerate(engine.node_names)
            if engine.node_rows[name]["state"] in DOWN and (mask is None or mask[i])]


def _type_unavailable(engine: Engine, st: ClusterState, js: JobState) -> dict | None:
    job = js.job
    if not job.num_gpus or not job.gpu_types:
        return None
    allowed = st.type_masks[js.req.types_key]
    if (allowed & st.up).any():
        return None
    nodes = _down_nodes(engine, allowed)
    where = ", ".join(f"{n['node']} {n['state']}" for n in nodes) or "none registered"
    return _reason("gpu_type_unavailable",
                   f"needs GPU type {' or '.join(job.gpu_types)}; no live node has it "
                   f"(nodes of that type: {where})", gpu_types=list(job.gpu_types), nodes=nodes)


def _cordoned(engine: Engine, st: ClusterState, js: JobState) -> dict | None:
    """Capacity it needs is on nodes that are not up: it would start now if they were
    up, or it could never run on the live nodes alone."""
    down = [i for i, name in enumerate(engine.node_names)
            if engine.node_rows[name]["state"] in DOWN or not st.up[i]]
    if not down:
        return None
    lifted = st.copy()
    for i in down:
        lifted.set_up(i, True)
    live_idle = engine.empty.copy()
    for i in down:
        live_idle.set_up(i, False)
    now_there = fits_now(lifted, js.req)
    never_live = not fits_now(live_idle, js.req)
    if not (now_there or never_live):
        return None
    allowed = st.type_masks[js.req.types_key]
    nodes = _down_nodes(engine, allowed)
    if not nodes:
        return None
    names = ", ".join(f"{n['node']} ({n['state']})" for n in nodes)
    msg = (f"it would start now on {names} if taken off cordon" if now_there
           else f"no live node could ever run it; the capacity it needs is on {names}")
    return _reason("node_cordoned", msg, nodes=nodes, would_start_now=now_there)


def _capacity(engine: Engine, st: ClusterState, js: JobState) -> dict | None:
    """``insufficient_capacity`` or ``waiting_for_gang`` with the deficit, for a job that
    does not fit now on the live nodes of its allowed types."""
    job, req = js.job, js.req
    live = st.up & st.type_masks[req.types_key] if job.num_gpus else st.up.copy()
    if not live.any():
        return None  # no live node of its types: gpu_type_unavailable says so
    names = engine.node_names
    idx = [int(i) for i in live.nonzero()[0]]
    whole = st.whole_free
    free_total = int(whole[live].sum())
    if job.num_gpus and needs_multi_node(st, req):
        idle = [i for i in idx if whole[i] == st.node_gpus[i] and st.node_gpus[i] > 0]
        on_idle = int(sum(int(st.node_gpus[i]) for i in idle))
        detail = {"resource": "gpus", "need": job.num_gpus, "free": on_idle,
                  "free_total": free_total, "node": None}
        if free_total >= job.num_gpus:
            return _reason("waiting_for_gang",
                           f"a gang of {_gpus(job.num_gpus)} across whole idle nodes: "
                           f"{free_total} free in all, {on_idle} on idle nodes", **detail)
        return _reason("insufficient_capacity",
                       f"need {job.num_gpus}, free {free_total} (GPUs on the live nodes of an "
                       f"allowed type; a gang across whole idle nodes: {on_idle} on idle "
                       f"nodes)", **detail)
    if job.num_gpus:
        if req.fractional:
            share = st.gpu_free.max(axis=1)
            best = max(idx, key=lambda i: (int(share[i]), -i))
            if share[best] < req.milli:
                return _reason("insufficient_capacity",
                               f"need a {req.milli / WHOLE_GPU:g} GPU share, the best live "
                               f"node {names[best]} has {max(0, int(share[best])) / WHOLE_GPU:g}"
                               f" free on one GPU", resource="gpu_share", need=req.milli,
                               free=max(0, int(share[best])), node=names[best],
                               free_total=int(st.free_milli[live].sum()))
            gpu_ok = [i for i in idx if share[i] >= req.milli]
        else:
            best = max(idx, key=lambda i: (int(whole[i]), -i))
            if whole[best] < job.num_gpus:
                detail = {"resource": "gpus", "need": job.num_gpus, "free": int(whole[best]),
                          "node": names[best], "free_total": free_total}
                if job.num_gpus > 1 and free_total >= job.num_gpus:
                    return _reason("waiting_for_gang",
                                   f"a gang of {_gpus(job.num_gpus)} on one node: "
                                   f"{free_total} free in all, at most {int(whole[best])} on "
                                   f"one node ({names[best]})", **detail)
                return _reason("insufficient_capacity",
                               f"need {job.num_gpus}, free {int(whole[best])}: the best live "
                               f"node {names[best]} has {int(whole[best])} idle GPU(s) "
                               f"({free_total} in all)", **detail)
            gpu_ok = [i for i in idx if whole[i] >= job.num_gpus]
    else:
        gpu_ok = idx
    # the GPUs are there: CPU or memory is short on every node that has them
    for resource, need, free in (("cpu_milli", req.cpu, st.cpu_free),
                                 ("memory_mib", req.mem, st.mem_free)):
        if not need:
            continue
        best = max(gpu_ok, key=lambda i: (int(free[i]), -i))
        if free[best] < need:
            return _reason("insufficient_capacity",
                           f"need {resource} {need:,}, free {int(free[best]):,}: the most "
                           f"on a live node{' with the GPUs free' if job.num_gpus else ''} "
                           f"({names[best]})", resource=resource, need=need,
                           free=_untracked(int(free[best])), node=names[best],
                           free_total=None)
    return _reason("insufficient_capacity",
                   f"needs {_gpus(job.num_gpus)}, cpu_milli {req.cpu:,} and memory_mib "
                   f"{req.mem:,} together on one node; no live node has all of it free",
                   resource="combined", need=None, free=None, node=None, free_total=free_total)


def pending_reasons(engine: Engine, js: JobState, now: float) -> tuple[list[dict], int]:
    """The reasons a waiting job waits, and its queue position (under the lock)."""
    st = engine.core.state
    reasons = []
    if js.preemptions or js.failures:
        parts = []
        if js.preemptions:
            parts.append(f"preempted {js.preemptions} time(s)")
        if js.failures:
            parts.append(f"lost with its node {js.failures} time(s)")
        reasons.append(_reason("preempted", f"it ran and was {' and '.join(parts)}; it waits "
                               f"to resume with {js.progress:,.0f} s of work done",
                               preemptions=js.preemptions, failures=js.failures,
                               progress_s=round(js.progress, 3)))
    position = _queue_position(engine, js)
    fits = fits_now(st, js.req)
    if not fits:
        for found in (_type_unavailable(engine, st, js), _capacity(engine, st, js),
                      _cordoned(engine, st, js)):
            if found:
                reasons.append(found)
    behind = _queued_behind(engine, js, position, now)
    if behind:
        reasons.append(behind)
    elif fits:
        reasons.append(_reason("pending_pass", "it fits now and heads the queue: the next "
                                               "scheduling pass starts it"))
    return reasons, position


def parent_states(engine: Engine, js: JobState) -> list[dict]:
    """Each parent of the job with its state (under the lock). The engine knows every
    parent a held job waits for; one it does not know has ended (before the core was
    rebuilt) or is being submitted: the store says which."""
    out = []
    for p in js.job.depends_on:
        parent = engine.by_id.get(p)
        if parent is not None:
            state = engine._state_of(parent)
        elif p in engine.core.succeeded:
            state = "succeeded"
        elif p in engine.core.dropped:
            state = "ended"
        else:
            state = "pending"
        out.append({"job_id": p, "state": state})
    return out


def waits_for(engine: Engine, js: JobState) -> tuple[list[dict], list[str]]:
    """The parents with their states, and the ids of those not succeeded yet."""
    parents = parent_states(engine, js)
    return parents, [p["job_id"] for p in parents if p["job_id"] not in engine.core.succeeded]


def held_message(parents: list[dict], waiting: list[str]) -> str:
    state = {p["job_id"]: p["state"] for p in parents}
    named = ", ".join(f"{p} ({state[p]})" for p in waiting[:PARENTS_NAMED])
    more = f" and {len(waiting) - PARENTS_NAMED} more" if len(waiting) > PARENTS_NAMED else ""
    done = len(parents) - len(waiting)
    return (f"held until the jobs it depends on succeed: waits for {named}{more}"
            + (f" ({done} of {len(parents)} succeeded)" if done else ""))


def _held_reason(engine: Engine, js: JobState) -> dict:
    parents, waiting = waits_for(engine, js)
    return _reason("waiting_for_dependencies", held_message(parents, waiting),
                   waiting_for=waiting, parents=parents)


def _running_reason(engine: Engine, js: JobState, now: float) -> dict:
    nodes = [{"node": engine.node_names[n], "gpus": len(g) * m / WHOLE_GPU if m else 0}
             for n, g, m, _c, _mem in js.placement]
    where = ", ".join(f"{x['node']} ({x['gpus']:g} GPU(s))" for x in nodes) or "no GPU node"
    left = predicted_remaining(js, now)
    return _reason("running", f"running on {where} since t={js.seg_start:,.0f} s; predicted "
                              f"to finish in {left:,.0f} s",
                   placement={"nodes": nodes}, since=js.seg_start,
                   predicted_finish_s=round(now + left, 3))


def _ended(engine: Engine, job_id: str) -> dict:
    row = engine.store.job(job_id)
    if row is None:
        raise NotFound(f"job {job_id!r} not found")
    state = row["state"]
    msg = {"succeeded": "it completed", "failed": "it failed",
           "cancelled": "it was cancelled"}.get(state, f"it is {state}")
    if row.get("reason") and state != "succeeded":
        msg += f": {row['reason']}"
    return {"job_id": job_id, "state": state,
            "reasons": [_reason(state, msg, finish_time=row["finish_time"])],
            "queue_position": None, "eta_s": None, "now": engine.clock.now(),
            "policy": engine.policy.label}


def why(engine: Engine, job_id: str, eta: bool = True) -> dict:
    """The answer of ``GET /v1/jobs/{id}/why`` (the lock is held to read the live state
    and to copy it, not while the what-if replay runs). Without ``eta`` no replay runs
    (``eta_s`` is null): the reasons alone, cheap enough for every job of a queue."""
    with engine.lock:
        js = engine.by_id.get(job_id)
        status = js.status if js is not None else None
        now = engine.clock.now()
        if status == RUNNING:
            return {"job_id": job_id, "state": "running",
                    "reasons": [_running_reason(engine, js, now)], "queue_position": None,
                    "eta_s": 0.0, "now": now, "policy": engine.policy.label}
        if status == WAITING:
            reasons, position = pending_reasons(engine, js, now)
            idx = js.idx
        elif status == HELD:  # waits for its parents: not queued yet
            reasons, position = [_held_reason(engine, js)], None
            idx = js.idx
    if status not in (WAITING, HELD):
        return _ended(engine, job_id)
    if not eta:
        return {"job_id": job_id, "state": "pending", "reasons": reasons,
                "queue_position": position, "eta_s": None, "now": now,
                "policy": engine.policy.label}
    replay = fork(engine)
    started = replay.run(lambda: idx in replay.backend.starts)
    eta = None
    if started:
        eta = round(replay.backend.starts[idx].time - replay.now, 3)
    else:
        reasons.append(_reason(
            "no_eta",
            f"the what-if replay reached its bound of {replay.max_events:,} events without "
            f"starting it" if replay.bounded else
            "the what-if replay ran every job to completion without starting it: with the "
            "live nodes as they are, it does not start",
            events=replay.backend.events))
    return {"job_id": job_id, "state": "pending", "reasons": reasons,
            "queue_position": position, "eta_s": eta, "now": replay.now,
            "policy": replay.policy}


# -- simulate ----------------------------------------------------------------------------------
def simulate(engine: Engine, jobs: list[JobIn]) -> dict:
    rows = []
    seen: set[str] = set()
    real: dict[str, int] = {}  # parents that are not hypothetical -> the first job naming it
    for i, body in enumerate(jobs):
        spec = body.model_dump()
        job_id = spec.pop("job_id") or f"sim-{i}"
        if job_id in seen:  # each answer must name one job
            raise HTTPException(422, [{"loc": ["body", "jobs", i, "job_id"],
                                       "msg": f"job_id {job_id!r} appears twice",
                                       "type": "value_error"}])
        for p in body.depends_on:
            if p not in seen:
                real.setdefault(p, i)
        seen.add(job_id)
        if body.kind == INFERENCE and body.slo_s is None:
            spec["slo_s"] = None
        row = {"job_id": job_id, "submit_time": 0.0, "spec": spec}
        try:
            engine.check_job(job_from_row(row))
        except Invalid as e:
            raise HTTPException(422, [{"loc": ["body", "jobs", i, e.field or "num_gpus"],
                                       "msg": str(e), "type": "infeasible"}]) from e
        except ValueError as e:
            raise HTTPException(422, [{"loc": ["body", "jobs", i], "msg": str(e),
                                       "type": "value_error"}]) from e
        rows.append(row)
    ended = engine.store.job_states(real) if real else {}
    for p, i in real.items():
        if p not in ended:
            raise HTTPException(422, [{"loc": ["body", "jobs", i, "depends_on"],
                                       "msg": f"no job {p!r}: a hypothetical job depends on "
                                              f"real jobs or on hypothetical ones listed "
                                              f"before it", "type": "value_error"}])
    replay = fork(engine)
    twin = replay.core
    for p, state in ended.items():  # parents the copy does not know: how they ended
        if p not in twin.by_id:
            if state == "succeeded":
                twin.succeeded.add(p)
            elif state in ("failed", "cancelled"):
                twin.dropped.add(p)
    for row in rows:
        row["submit_time"] = replay.now
    added = replay.add(job_from_row(row) for row in rows)
    b = replay.backend
    replay.run(lambda: all(js.idx in b.finishes for js in added))
    out = []
    for js in added:
        start = b.starts.get(js.idx)
        finish = b.finishes.get(js.idx)
        out.append({"job_id": js.job.job_id,
                    "start_s": round(start.time, 3) if start else None,
                    "finish_s": round(finish, 3) if finish is not None else None,
                    "wait_s": round(start.time - replay.now, 3) if start else None,
                    "placement": replay.placement_view(start.placement) if start else None,
                    "predicted_duration_s": round(predicted_duration(js), 3),
                    "preemptions": b.preemptions.get(js.idx, 0)})
    return {"jobs": out, "policy": replay.policy, "now": replay.now,
            "complete": all(x["finish_s"] is not None for x in out),
            "events": b.events}


# -- routes --------------------------------------------------------------------------------------
def mount(app: FastAPI) -> None:
    reader, submitter = Depends(require("reader")), Depends(require("submitter"))

    @app.get("/v1/jobs/{job_id}/why", tags=["jobs"], dependencies=[reader])
    def job_why(job_id: str, request: Request,
                eta: bool = Query(True, description="run the what-if replay for eta_s "
                                                    "(false: the reasons alone)")) -> dict:
        """Why the job is where it is: its reasons (a small vocabulary, with the numbers),
        its place in the queue and when the what-if replay starts it (``eta_s``)."""
        return why(request.app.state.service.engine, job_id, eta)

    @app.post("/v1/simulate", tags=["jobs"], dependencies=[submitter])
    def simulate_route(body: SimulateIn, request: Request) -> dict:
        """Hypothetical jobs added now to a copy of the current state: their predicted
        start and finish (cluster seconds), wait and placement. No side effect."""
        return simulate(request.app.state.service.engine, body.jobs)
