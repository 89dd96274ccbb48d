"""The placement service's API through the real app (FastAPI's TestClient runs the
lifespan: the engine, its timer thread, the SQLite store in WAL mode).

Submissions return before the scheduling pass that follows them; a test that needs the
pass's decision long-polls ``GET /v1/decisions?wait=`` for it, as an executor does."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from autoflow.service.app import ServeConfig, create_app
from autoflow.service.store import token_hash

NODES = [{"name": "n0", "gpu_type": "a100", "gpus": 4, "cpu_milli": 64000,
          "memory_mib": 512000},
         {"name": "n1", "gpu_type": "a100", "gpus": 4, "cpu_milli": 64000,
          "memory_mib": 512000}]

# Pages that hold no data: the dashboard's shell and the API's own description. Every
# other route needs a token (health and readiness excepted: probes carry none).
NO_AUTH = {"/healthz", "/readyz"}
NO_DATA_PAGES = {"/", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc",
                 "/static"}  # the dashboard's script and style: no data


class Api:
    """A TestClient with a token per scope and helpers that assert the status."""

    def __init__(self, client: TestClient, tokens: dict[str, str]):
        self.c = client
        self.tokens = tokens

    def h(self, scope: str = "admin") -> dict:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def call(self, method: str, path: str, status: int = 200, scope: str = "admin", **kw):
        r = self.c.request(method, path, headers=self.h(scope), **kw)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json()

    def submit(self, **job) -> str:
        job.setdefault("duration_estimate_s", 3600)
        return self.call("POST", "/v1/jobs", 201, json=job)["job_id"]

    def job(self, job_id: str) -> dict:
        return self.call("GET", f"/v1/jobs/{job_id}")

    def decisions(self, after: int = 0, wait: float = 0.0, limit: int = 500) -> dict:
        return self.call("GET", "/v1/decisions",
                         params={"after": after, "wait": wait, "limit": limit})

    def next_decisions(self, after: int, n: int = 1, timeout: float = 30.0) -> list[dict]:
        """At least ``n`` decisions past ``after`` (long-polling for them)."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            page = self.decisions(after, wait=5)
            got += page["decisions"]
            after = page["cursor"]
        assert len(got) >= n, f"expected {n} decision(s) past the cursor, got {got}"
        return got

    def event(self, job_id: str, event: str, status: int = 200, **kw) -> dict:
        return self.call("POST", f"/v1/jobs/{job_id}/events", status, scope="executor",
                         json={"event": event, **kw})


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/a.db"


@pytest.fixture
def api(db_url):
    app = create_app(ServeConfig(db=db_url, policy="fifo"))
    with TestClient(app) as client:
        store = app.state.service.store
        tokens = {s: store.create_token(f"t-{s}", s)
                  for s in ("admin", "executor", "submitter", "reader")}
        a = Api(client, tokens)
        a.call("POST", "/v1/clusters", 201, json={"name": "lab", "nodes": NODES})
        yield a


# -- the life of a job ---------------------------------------------------------------------
def test_submit_start_finish(api):
    job = api.submit(num_gpus=2, user="ana")
    assert api.job(job)["submit_time"] is not None
    d = api.next_decisions(0)[0]
    assert (d["action"], d["job_id"]) == ("start", job)
    assert sum(n["gpus"] for n in d["placement"]["nodes"]) == 2
    assert d["explanation"]["policy"] and d["policy"]
    view = api.job(job)
    assert view["state"] == "running" and view["starts"] == 1
    assert view["placement"]["nodes"][0]["node"] == d["placement"]["nodes"][0]["node"]
    assert api.event(job, "started")["state"] == "running"
    assert api.event(job, "finished")["state"] == "succeeded"
    view = api.job(job)
    assert view["state"] == "succeeded" and view["placement"] is None
    assert view["finish_time"] is not None
    events = api.call("GET", f"/v1/jobs/{job}/events")["events"]
    assert [e["event"] for e in events] == ["started", "finished"]
    # an ended job takes no more outcomes
    api.event(job, "finished", 409)
    api.event(job, "started", 409)


def test_failed_job_keeps_its_reason_and_frees_capacity(api):
    big = api.submit(num_gpus=8)
    d = api.next_decisions(0)[0]
    assert d["job_id"] == big
    waiting = api.submit(num_gpus=4)
    time.sleep(0.2)
    assert api.job(waiting)["state"] == "pending"
    assert api.event(big, "failed", message="CUDA error: out of memory")["state"] == "failed"
    view = api.job(big)
    assert view["state"] == "failed" and "out of memory" in view["reason"]
    nxt = api.next_decisions(d["seq"], 2)  # the failed job is halted, the other starts
    assert [(x["action"], x["job_id"]) for x in nxt] == [("preempt", big), ("start", waiting)]
    assert nxt[0]["explanation"]["reason"] == "failed"
    assert api.job(waiting)["state"] == "running"


def test_preempted_unasked_job_waits_again_and_restarts(api):
    job = api.submit(num_gpus=4)
    d = api.next_decisions(0)[0]
    api.event(job, "started")
    assert api.event(job, "preempted")["state"] in ("pending", "running")
    # it queues again and, with the cluster free, a new start follows
    nxt = api.next_decisions(d["seq"])
    assert ("start", job) in [(x["action"], x["job_id"]) for x in nxt]
    view = api.job(job)
    assert view["state"] == "running" and view["starts"] == 2
    assert view["attained_gpu_s"] >= 0


def test_batched_events_apply_in_order_commit_together_and_answer_each(api):
    """POST /v1/events: several outcomes in one request; a refused one changes nothing
    and the others still apply; every accepted one is kept."""
    a, b = api.submit(num_gpus=4), api.submit(num_gpus=4)
    waiting = api.submit(num_gpus=8)
    starts = {d["job_id"] for d in api.next_decisions(0, 2)}
    assert starts == {a, b}
    r = api.call("POST", "/v1/events", scope="executor", json={"events": [
        {"job_id": a, "event": "started"},
        {"job_id": a, "event": "finished"},
        {"job_id": waiting, "event": "finished"},  # pending: refused, 409
        {"job_id": "nope", "event": "finished"},  # unknown: 404
        {"job_id": b, "event": "failed", "message": "segfault"},
    ]})["results"]
    assert r[0] == {"job_id": a, "state": "running"}
    assert r[1] == {"job_id": a, "state": "succeeded"}
    assert r[2]["status"] == 409 and "pending" in r[2]["detail"]
    assert r[3]["status"] == 404
    assert r[4] == {"job_id": b, "state": "failed"}
    assert api.job(b)["reason"] == "segfault"
    assert [e["event"] for e in api.call("GET", f"/v1/jobs/{a}/events")["events"]] == \
        ["started", "finished"]
    assert api.call("GET", f"/v1/jobs/{waiting}/events")["events"] == []
    # both freed their GPUs: the 8-GPU job starts
    assert any(d["job_id"] == waiting and d["action"] == "start"
               for d in api.next_decisions(2, 2))
    # the body is checked whole: a bad item is a 422 naming it, and nothing applies
    bad = api.call("POST", "/v1/events", 422, scope="executor", json={"events": [
        {"job_id": waiting, "event": "finished"}, {"job_id": waiting, "event": "exploded"}]})
    assert bad["detail"][0]["loc"][:4] == ["body", "events", 1, "event"]
    assert api.job(waiting)["state"] == "running"
    api.call("POST", "/v1/events", 422, scope="executor", json={"events": []})
    api.call("POST", "/v1/events", 403, scope="submitter",
             json={"events": [{"job_id": waiting, "event": "finished"}]})


def test_started_for_a_pending_job_is_a_conflict(api):
    api.submit(num_gpus=8)
    api.next_decisions(0)
    pending = api.submit(num_gpus=8)
    time.sleep(0.2)
    assert api.job(pending)["state"] == "pending"
    api.event(pending, "started", 409)
    api.event(pending, "finished", 409)
    api.call("DELETE", f"/v1/jobs/{pending}")
    # a refused outcome is not kept (only the cancel is)
    assert [e["event"] for e in api.call("GET", f"/v1/jobs/{pending}/events")["events"]] == \
        ["cancelled"]


# -- cancel ---------------------------------------------------------------------------------
def test_cancel_pending_job(api):
    api.submit(num_gpus=8)
    seq = api.next_decisions(0)[-1]["seq"]
    pending = api.submit(num_gpus=8)
    assert api.call("DELETE", f"/v1/jobs/{pending}", scope="submitter")["state"] == "cancelled"
    view = api.job(pending)
    assert view["state"] == "cancelled" and view["reason"] == "cancelled"
    # no decision for a job that never ran
    assert api.decisions(seq, wait=0.3)["decisions"] == []
    # cancelling twice changes nothing
    assert api.call("DELETE", f"/v1/jobs/{pending}")["state"] == "cancelled"


def test_cancel_running_job_issues_a_cancelled_preempt(api):
    job = api.submit(num_gpus=2)
    d = api.next_decisions(0)[0]
    api.event(job, "started")
    assert api.call("DELETE", f"/v1/jobs/{job}")["state"] == "cancelled"
    pre = api.next_decisions(d["seq"])[0]
    assert (pre["action"], pre["job_id"]) == ("preempt", job)
    assert pre["explanation"]["reason"] == "cancelled"
    assert api.job(job)["state"] == "cancelled"
    # the executor confirms it stopped: recorded; the job stays cancelled
    assert api.event(job, "preempted")["state"] == "cancelled"
    api.event(job, "finished", 409)
    assert [e["event"] for e in api.call("GET", f"/v1/jobs/{job}/events")["events"]] == \
        ["started", "cancelled", "preempted"]
    assert api.call("DELETE", f"/v1/jobs/{job}")["state"] == "cancelled"


# -- nodes ---------------------------------------------------------------------------------
def _node(api, name):
    return {n["name"]: n for n in api.call("GET", "/v1/nodes")["nodes"]}[name]


def test_cordon_keeps_jobs_off_a_node_until_uncordoned(api):
    assert api.call("POST", "/v1/nodes/n0/cordon")["state"] == "cordoned"
    a = api.submit(num_gpus=4)
    d = api.next_decisions(0)[0]
    assert d["job_id"] == a and d["placement"]["nodes"][0]["node"] == "n1"
    b = api.submit(num_gpus=4)
    time.sleep(0.3)
    assert api.job(b)["state"] == "pending"
    assert api.call("POST", "/v1/nodes/n0/uncordon")["state"] == "up"
    nxt = api.next_decisions(d["seq"])
    assert (nxt[0]["job_id"], nxt[0]["placement"]["nodes"][0]["node"]) == (b, "n0")


def test_drain_preempts_training_jobs_on_the_node(api):
    a = api.submit(num_gpus=4)
    b = api.submit(num_gpus=4)
    ds = api.next_decisions(0, 2)
    on = {x["job_id"]: x["placement"]["nodes"][0]["node"] for x in ds}
    victim = next(j for j, n in on.items() if n == "n0")
    survivor = ({a, b} - {victim}).pop()
    node = api.call("POST", "/v1/nodes/n0/drain")
    assert node["state"] == "draining"
    pre = api.next_decisions(ds[-1]["seq"])[0]
    assert (pre["action"], pre["job_id"]) == ("preempt", victim)
    assert pre["explanation"]["reason"] == "node_drained"
    assert api.job(survivor)["state"] == "running"
    assert api.job(victim)["state"] == "pending"
    assert _node(api, "n0")["jobs"] == []


def test_node_failure_and_heartbeat(api):
    a = api.submit(num_gpus=4)
    d = api.next_decisions(0)[0]
    node = d["placement"]["nodes"][0]["node"]
    assert api.call("POST", f"/v1/nodes/{node}/failure", scope="executor")["state"] == "failed"
    assert _node(api, node)["state"] == "failed"
    # the job lost its node: it is placed again on the other one
    nxt = api.next_decisions(d["seq"])
    assert nxt[-1]["job_id"] == a and nxt[-1]["placement"]["nodes"][0]["node"] != node
    api.call("POST", f"/v1/nodes/{node}/uncordon", 409)  # a failed node needs a heartbeat
    hb = api.call("POST", f"/v1/nodes/{node}/heartbeat", scope="executor")
    assert hb["state"] == "up" and hb["last_heartbeat"] is not None


def test_node_actions_need_the_right_scope_and_a_known_node(api):
    api.call("POST", "/v1/nodes/n0/cordon", 403, scope="executor")
    api.call("POST", "/v1/nodes/n0/heartbeat", 403, scope="submitter")
    api.call("POST", "/v1/nodes/nope/cordon", 404)
    api.call("POST", "/v1/nodes/nope/heartbeat", 404)


# -- the decision feed ----------------------------------------------------------------------
def test_decision_feed_pages_with_a_cursor_and_reads_the_same_twice(api):
    jobs = [api.submit(num_gpus=1) for _ in range(7)]  # 7 of the 8 GPUs
    api.next_decisions(0, 7)
    pages, cursor = [], 0
    while True:
        page = api.decisions(cursor, limit=3)
        if not page["decisions"]:
            assert page["cursor"] == cursor
            break
        pages.append(page["decisions"])
        cursor = page["cursor"]
    assert [len(p) for p in pages] == [3, 3, 1]
    flat = [d for p in pages for d in p]
    assert [d["seq"] for d in flat] == list(range(1, 8))
    assert sorted(d["job_id"] for d in flat) == sorted(jobs)
    # reading again returns the same decisions and never a second start
    assert api.decisions(0)["decisions"] == flat
    starts = [d["job_id"] for d in api.decisions(0)["decisions"] if d["action"] == "start"]
    assert len(starts) == len(set(starts)) == 7
    # a running job is not started again by later passes
    more = api.submit(num_gpus=1)
    nxt = api.next_decisions(cursor)
    assert [(d["action"], d["job_id"]) for d in nxt] == [("start", more)]


def test_long_poll_returns_when_a_decision_is_committed(api):
    got: dict = {}

    def poll():
        t0 = time.monotonic()
        got["page"] = api.decisions(0, wait=30)
        got["waited"] = time.monotonic() - t0

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "the long-poll returned with nothing to return"
    job = api.submit(num_gpus=1)
    t.join(30)
    assert not t.is_alive()
    assert [d["job_id"] for d in got["page"]["decisions"]] == [job]
    # it returned on the commit, far before its 30 s wait ran out
    assert got["waited"] < 25


def test_long_poll_with_nothing_new_returns_the_cursor(api):
    page = api.decisions(0, wait=0.2)
    assert page == {"decisions": [], "cursor": 0}
    page = api.decisions(10**6, wait=0)
    assert page == {"decisions": [], "cursor": 10**6}


# -- policy --------------------------------------------------------------------------------
def test_policy_switch_is_recorded_and_issued_decisions_stand(api):
    first = api.submit(num_gpus=4)
    d = api.next_decisions(0)[0]
    assert api.call("GET", "/v1/policy", scope="reader")["policy"] == "fifo"
    api.call("PUT", "/v1/policy", 403, scope="executor", json={"policy": "las"})
    out = api.call("PUT", "/v1/policy", json={"policy": "las"})
    assert (out["policy"], out["previous"]) == ("las", "fifo")
    got = api.call("GET", "/v1/policy")
    assert got["policy"] == "las"
    latest = got["history"][0]
    assert (latest["policy"], latest["previous"], latest["token_name"]) == \
           ("las", "fifo", "t-admin")
    # the start issued under fifo stands: same placement, no new decision for it
    assert api.decisions(0)["decisions"][0] == d
    assert api.job(first)["state"] == "running"
    second = api.submit(num_gpus=4)
    nxt = api.next_decisions(d["seq"])
    assert [(x["action"], x["job_id"]) for x in nxt] == [("start", second)]
    assert nxt[0]["policy"] != d["policy"]
    api.call("PUT", "/v1/policy", 422, json={"policy": "no-such-policy"})
    assert api.call("GET", "/v1/policy")["policy"] == "las"


# -- auth ----------------------------------------------------------------------------------
def _concrete(path: str) -> str:
    return path.replace("{job_id}", "job-x").replace("{name}", "n0")


def _routes(app):
    for r in app.routes:
        if not isinstance(r, APIRoute) and getattr(r, "path", None) not in NO_DATA_PAGES:
            # a route FastAPI did not build (a mounted app, a plain Starlette route) would
            # escape the token check: nothing of the kind may hold data
            assert r.path in NO_DATA_PAGES, f"unexpected non-API route {r.path}"
        if isinstance(r, APIRoute):
            for m in sorted(r.methods - {"HEAD", "OPTIONS"}):
                yield m, r


def _needed_scope(route: APIRoute) -> str | None:
    from autoflow.service.auth import COVERS

    scopes = set()
    for dep in route.dependant.dependencies:
        call = dep.call
        if getattr(call, "__name__", "") == "check" and call.__closure__:
            for cell in call.__closure__:
                if cell.cell_contents in COVERS:
                    scopes.add(cell.cell_contents)
    assert len(scopes) <= 1, (route.path, scopes)
    return scopes.pop() if scopes else None


def test_every_route_but_health_needs_a_token(api):
    app = api.c.app
    checked = 0
    for method, route in _routes(app):
        path = _concrete(route.path)
        if route.path in NO_AUTH or route.path in NO_DATA_PAGES:
            continue
        for headers in ({}, {"Authorization": "Bearer af_not-a-token"},
                        {"Authorization": "Basic dXNlcjpwdw=="},
                        {"Authorization": "Bearer "}):
            r = api.c.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.headers.get("www-authenticate") == "Bearer"
        checked += 1
    assert checked >= 15  # the routes of the issue, at least


def test_every_route_names_its_scope_and_refuses_narrower_ones(api):
    from autoflow.service.auth import COVERS

    app = api.c.app
    for method, route in _routes(app):
        if route.path in NO_AUTH or route.path in NO_DATA_PAGES:
            continue
        scope = _needed_scope(route)
        assert scope is not None, f"{method} {route.path} declares no scope"
        path = _concrete(route.path)
        for holder in ("executor", "submitter", "reader"):
            r = api.c.request(method, path, headers=api.h(holder))
            if scope in COVERS[holder]:
                assert r.status_code not in (401, 403), (method, path, holder, r.text)
            else:
                assert r.status_code == 403, (method, path, holder, r.status_code)


def test_health_needs_no_token(api):
    assert api.c.get("/healthz").json() == {"status": "ok"}
    ready = api.c.get("/readyz").json()
    assert ready["status"] == "ready" and ready["nodes"] == 2


def test_revoked_token_is_refused(db_url):
    app = create_app(ServeConfig(db=db_url))
    with TestClient(app) as c:
        svc = app.state.service
        tok = svc.store.create_token("gone", "reader")
        svc.store.revoke_token("gone")
        assert c.get("/v1/nodes", headers={"Authorization": f"Bearer {tok}"}).status_code \
            == 401


def test_tokens_are_stored_hashed(api, db_url, tmp_path):
    api.call("GET", "/v1/nodes")  # the token was used (and cached) too
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("a.db*"))
    for tok in api.tokens.values():
        assert tok.encode() not in raw
        assert tok.split("_", 1)[1].encode() not in raw
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as con:
        stored = {r[0] for r in con.execute("SELECT sha256 FROM tokens")}
    assert {token_hash(t) for t in api.tokens.values()} <= stored


# -- bad input ------------------------------------------------------------------------------
def _field(detail) -> list[str]:
    return [str(d["loc"][-1]) for d in detail] + [d["msg"] for d in detail]


@pytest.mark.parametrize("body, field", [
    ({"num_gpus": -1}, "num_gpus"),
    ({"num_gpus": "two"}, "num_gpus"),
    ({"gpu_milli": 5000}, "gpu_milli"),
    ({"kind": "batch"}, "kind"),
    ({"duration_estimate_s": 0}, "duration_estimate_s"),
    ({"slo_s": -3}, "slo_s"),
    ({"job_id": "has space"}, "job_id"),
    ({"bogus": 1}, "bogus"),
    ({"num_gpus": 2, "gpu_milli": 500}, "gpu_milli"),
])
def test_bad_job_is_422_naming_the_field(api, body, field):
    detail = api.call("POST", "/v1/jobs", 422, json=body)["detail"]
    assert any(field in f for f in _field(detail)), detail


@pytest.mark.parametrize("body, field, words", [
    ({"num_gpus": 9}, "num_gpus", "8"),
    ({"num_gpus": 1, "gpu_types": ["h100"]}, "gpu_types", "h100"),
    ({"num_gpus": 1, "cpu_milli": 100000}, "cpu_milli", "64,000"),
    ({"num_gpus": 1, "memory_mib": 10**6}, "memory_mib", "512,000"),
    # a CPU job held to a GPU type no node has (found by the fuzz test: it crashed)
    ({"num_gpus": 0, "gpu_types": ["h100"], "memory_mib": 10**6}, "gpu_types", "h100"),
])
def test_job_no_node_could_run_is_422_naming_the_constraint(api, body, field, words):
    detail = api.call("POST", "/v1/jobs", 422, json=body)["detail"]
    assert detail[0]["loc"] == ["body", field] and words in detail[0]["msg"], detail
    assert api.call("GET", "/v1/jobs")["jobs"] == []  # nothing stored


def test_bad_cluster_event_and_policy_bodies(api):
    d = api.call("POST", "/v1/clusters", 422, json={"name": "x", "nodes": []})["detail"]
    assert "nodes" in _field(d)
    d = api.call("POST", "/v1/clusters", 422,
                 json={"name": "x", "nodes": [{"name": "a", "gpu_type": "t", "gpus": -1}]})
    assert "gpus" in _field(d["detail"])
    d = api.call("POST", "/v1/clusters", 409, json={"name": "lab2", "nodes": NODES[:1]})
    job = api.submit(num_gpus=1)
    d = api.call("POST", f"/v1/jobs/{job}/events", 422, json={"event": "exploded"})["detail"]
    assert "event" in _field(d)
    d = api.call("PUT", "/v1/policy", 422, json={})["detail"]
    assert "policy" in _field(d)
    d = api.call("GET", "/v1/jobs", 422, params={"state": "sleeping"})["detail"]
    assert "state" in _field(d)
    d = api.call("GET", "/v1/decisions", 422, params={"wait": 1000})["detail"]
    assert "wait" in _field(d)
    r = api.c.post("/v1/jobs", content=b"{not json", headers={
        **api.h(), "content-type": "application/json"})
    assert r.status_code == 422


def test_duplicate_job_id_is_a_conflict(api):
    api.submit(job_id="mine", num_gpus=1)
    api.call("POST", "/v1/jobs", 409, json={"job_id": "mine", "num_gpus": 1})


def test_no_cluster_registered_is_422(tmp_path):
    app = create_app(ServeConfig(db=f"sqlite:///{tmp_path}/e.db"))
    with TestClient(app) as c:
        tok = app.state.service.store.create_token("a", "admin")
        r = c.post("/v1/jobs", json={"num_gpus": 1}, headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "nodes"]


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/jobs/nope"), ("DELETE", "/v1/jobs/nope"), ("GET", "/v1/jobs/nope/events"),
    ("POST", "/v1/jobs/nope/events"), ("POST", "/v1/nodes/nope/drain"),
    ("POST", "/v1/nodes/nope/failure"),
])
def test_unknown_ids_are_404(api, method, path):
    kw = {"json": {"event": "finished"}} if method == "POST" and "events" in path else {}
    detail = api.call(method, path, 404, **kw)["detail"]
    assert "nope" in detail


def test_oversized_bodies_are_413(db_url):
    app = create_app(ServeConfig(db=db_url, max_body_bytes=4096))
    with TestClient(app) as c:
        h = {"Authorization": f"Bearer {app.state.service.store.create_token('a', 'admin')}",
             "content-type": "application/json"}
        big = b'{"name": "x", "nodes": [' + b'{"name":"a","gpu_type":"t","gpus":1},' * 200
        r = c.post("/v1/clusters", content=big + b'{"name":"z","gpu_type":"t","gpus":1}]}',
                   headers=h)
        assert r.status_code == 413, r.text  # declared (Content-Length)

        def chunks():
            yield b'{"name": "x", "nodes": ['
            for _ in range(200):
                yield b'{"name":"a","gpu_type":"t","gpus":1},'
            yield b'{"name":"z","gpu_type":"t","gpus":1}]}'

        r = c.post("/v1/clusters", content=chunks(), headers=h)  # chunked: no length
        assert r.status_code == 413, r.text
        r = c.post("/v1/clusters", headers=h,
                   json={"name": "small", "nodes": [{"name": "s", "gpu_type": "t", "gpus": 1}]})
        assert r.status_code == 201  # under the limit: served
