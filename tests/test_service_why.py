"""``GET /v1/jobs/{id}/why``, ``POST /v1/simulate`` and the learned policy's explanation.

Each test builds a small cluster through the API and a situation by hand. The app runs
without its lifespan (no timer thread) on a clock that stands still until the test moves
it: the scheduling passes and policy wake-ups the engine asked for run when the test calls
``run_due``, so that every situation (and every ETA) is exact.
"""

from __future__ import annotations

import heapq

import pytest
from fastapi.testclient import TestClient

from autoflow.cluster import ClusterSpec, Node
from autoflow.core.jobstate import RUNNING, WAITING
from autoflow.job import Job
from autoflow.policies import make_policy
from autoflow.service.app import ServeConfig, create_app
from autoflow.service.whatif import fork
from autoflow.service.why import MAX_SIMULATE_JOBS
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.workload import Workload


class StillClock:
    """Cluster time that moves only when the test sets ``t``."""

    def __init__(self, t: float = 0.0):
        self.t = float(t)
        self.origin, self.scale = 0.0, 1.0

    def now(self) -> float:
        return self.t

    def wall_delay(self, t: float) -> float:
        return t - self.t


def run_due(engine) -> None:
    """Runs the engine's timers that are due (passes, wake-ups), as its timer thread
    would, and commits."""
    with engine.lock:
        heap = engine.timers._heap
        while heap and heap[0][0] <= engine.clock.now():
            heapq.heappop(heap)[2]()
        fut = engine._flush()
    engine._durable(fut)  # the store's writer commits it (group commit)


class Svc:
    def __init__(self, tmp_path, policy: str, nodes: list[dict], t0: float = 0.0):
        self.app = create_app(ServeConfig(db=f"sqlite:///{tmp_path}/a.db", policy=policy))
        self.service = self.app.state.service
        self.engine = self.service.engine
        self.clock = self.engine.clock = StillClock(t0)
        self.tokens = {s: self.service.store.create_token(s, s)
                       for s in ("admin", "submitter", "reader")}
        self.http = TestClient(self.app)
        r = self.post("/v1/clusters", {"name": "lab", "nodes": nodes})
        assert r.status_code == 201, r.text

    def _h(self, scope: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def post(self, path: str, body: dict | None = None, scope: str = "admin"):
        return self.http.post(path, json=body, headers=self._h(scope))

    def get(self, path: str, scope: str = "reader"):
        return self.http.get(path, headers=self._h(scope))

    def submit(self, job_id: str, **spec) -> None:
        r = self.post("/v1/jobs", {"job_id": job_id, **spec}, "submitter")
        assert r.status_code == 201, r.text

    def why(self, job_id: str) -> dict:
        r = self.get(f"/v1/jobs/{job_id}/why")
        assert r.status_code == 200, r.text
        return r.json()

    def at(self, t: float) -> None:
        self.clock.t = float(t)
        run_due(self.engine)

    def close(self) -> None:
        self.service.store.close()


@pytest.fixture
def make(tmp_path):
    made = []

    def build(policy: str, nodes: list[dict], t0: float = 0.0) -> Svc:
        d = tmp_path / str(len(made))
        d.mkdir()
        s = Svc(d, policy, nodes, t0)
        made.append(s)
        return s

    yield build
    for s in made:
        s.close()


def nodes(*spec: tuple[str, str, int]) -> list[dict]:
    return [{"name": n, "gpu_type": t, "gpus": g} for n, t, g in spec]


def codes(r: dict) -> list[str]:
    return [x["code"] for x in r["reasons"]]


def reason(r: dict, code: str) -> dict:
    found = [x for x in r["reasons"] if x["code"] == code]
    assert found, f"no {code} in {r['reasons']}"
    return found[0]


def snapshot(s: Svc):
    """Everything the service holds: the store's jobs, decisions and events, and the
    engine's core (statuses, service received, queue, running set, free capacity,
    timers)."""
    eng, store = s.engine, s.service.store
    with eng.lock:
        jobs = store.jobs(limit=10**6)
        core = eng.core
        return (
            eng.seq, eng.generation, len(eng.timers._heap), len(core.jobs), core.done,
            [{k: v for k, v in r.items() if k != "updated_at"} for r in jobs],
            [{k: v for k, v in d.items() if k != "created_at"}
             for d in store.decisions_after(0, 10**6)],
            {r["job_id"]: [(e["event"], e["time"]) for e in store.events(r["job_id"])]
             for r in jobs},
            sorted((jid, js.status, js.attained, js.progress, js.preemptions, js.version,
                    js.seg_start, str(js.placement), js.predicted, js.priority)
                   for jid, js in eng.by_id.items()),
            [js.job.job_id for js in core.waiting], sorted(core.running),
            core.state.gpu_free.tolist(), core.state.version, core.state.up.tolist(),
            core._pass_pending, core.enqueued,
        )


# -- reasons -----------------------------------------------------------------------------------
def test_eta_agrees_with_a_direct_simulation_fifo(make):
    """One 8-GPU node; a job declared 600 s runs; the next 8-GPU job starts when it ends:
    the what-if ETA is what the simulator gives, less the time already gone."""
    s = make("fifo", nodes(("n0", "a100", 8)), t0=1000.0)
    s.submit("r", num_gpus=8, duration_estimate_s=600)
    s.submit("w", num_gpus=8, duration_estimate_s=100)
    s.submit("x", num_gpus=2, duration_estimate_s=50)
    s.at(1000.0)
    assert s.engine.by_id["r"].status == RUNNING
    s.at(1250.0)  # 250 s into r's run

    sim = Simulator(Workload([Job("r", 0.0, 600.0, 8), Job("w", 0.0, 100.0, 8),
                              Job("x", 0.0, 50.0, 2)]),
                    ClusterSpec("one", [Node("n0", "a100", 8)]), make_policy("fifo"),
                    SimConfig(restart_overhead_s=0.0))
    starts = {js.job.job_id: js.first_start for js in sim.run().jobs}
    assert starts == {"r": 0.0, "w": 600.0, "x": 700.0}

    w = s.why("w")
    assert w["state"] == "pending" and w["queue_position"] == 1
    assert w["eta_s"] == pytest.approx(starts["w"] - 250.0)
    cap = reason(w, "insufficient_capacity")
    assert (cap["resource"], cap["need"], cap["free"], cap["node"]) == ("gpus", 8, 0, "n0")
    assert "need 8, free 0" in cap["message"]
    assert "queued_behind" not in codes(w)

    quick = s.get("/v1/jobs/w/why?eta=false").json()  # the reasons alone, no replay
    assert quick["eta_s"] is None and quick["reasons"] == w["reasons"]

    x = s.why("x")
    assert x["queue_position"] == 2
    assert x["eta_s"] == pytest.approx(starts["x"] - 250.0)
    behind = reason(x, "queued_behind")
    assert behind["ahead"] == 1 and behind["first"] == ["w"]
    assert behind["gpu_hours_ahead"] == pytest.approx(8 * 100 / 3600, abs=1e-3)

    r = s.why("r")
    assert r["state"] == "running" and r["eta_s"] == 0.0 and r["queue_position"] is None
    run = reason(r, "running")
    assert run["placement"]["nodes"] == [{"node": "n0", "gpus": 8.0}]
    assert run["predicted_finish_s"] == pytest.approx(1600.0)


def test_pending_pass_and_ended_jobs_and_unknown_id(make):
    s = make("fifo", nodes(("n0", "a100", 8)))
    s.submit("a", num_gpus=2, duration_estimate_s=60)
    a = s.why("a")  # submitted, its pass not yet run
    assert codes(a) == ["pending_pass"] and a["eta_s"] == 0.0 and a["queue_position"] == 1
    s.at(0.0)
    s.engine.report("a", "started")
    s.clock.t = 60.0
    s.engine.report("a", "finished")
    done = s.why("a")
    assert done["state"] == "succeeded" and codes(done) == ["succeeded"]
    assert done["eta_s"] is None and done["queue_position"] is None
    s.submit("b", num_gpus=8)
    assert s.http.delete("/v1/jobs/b", headers=s._h("submitter")).status_code == 200
    assert codes(s.why("b")) == ["cancelled"]
    r = s.get("/v1/jobs/nope/why")
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    assert s.http.get("/v1/jobs/a/why").status_code == 401


def test_waiting_for_gang_on_one_node(make):
    """Two GPUs free in all, one on each node: a 2-GPU job waits for a gang."""
    s = make("fifo", nodes(("n0", "a100", 4), ("n1", "a100", 4)))
    s.submit("a", num_gpus=3, duration_estimate_s=100)
    s.submit("b", num_gpus=3, duration_estimate_s=300)
    s.submit("g", num_gpus=2, duration_estimate_s=10)
    s.at(0.0)
    g = s.why("g")
    gang = reason(g, "waiting_for_gang")
    assert (gang["need"], gang["free"], gang["free_total"]) == (2, 1, 2)
    assert "insufficient_capacity" not in codes(g)
    assert g["eta_s"] == pytest.approx(100.0)  # when a ends, n0 is free again


def test_waiting_for_gang_across_whole_nodes(make):
    """A gang wider than any node runs on whole idle nodes: 10 GPUs free in all, but only
    two idle 4-GPU nodes."""
    s = make("fifo", nodes(*[(f"n{i}", "a100", 4) for i in range(4)]))
    s.submit("a", num_gpus=3, duration_estimate_s=100)
    s.submit("b", num_gpus=3, duration_estimate_s=200)
    s.submit("g", num_gpus=10, duration_estimate_s=10)
    s.submit("h", num_gpus=12, duration_estimate_s=10)
    s.at(0.0)
    gang = reason(s.why("g"), "waiting_for_gang")
    assert (gang["need"], gang["free"], gang["free_total"]) == (10, 8, 10)
    h = s.why("h")
    cap = reason(h, "insufficient_capacity")
    assert (cap["need"], cap["free_total"]) == (12, 10)
    assert "waiting_for_gang" not in codes(h)
    assert s.why("g")["eta_s"] == pytest.approx(100.0)


def test_cpu_and_memory_deficits(make):
    s = make("fifo", [{"name": "n0", "gpu_type": "a100", "gpus": 8, "cpu_milli": 16000,
                       "memory_mib": 65536}])
    s.submit("a", num_gpus=2, cpu_milli=12000, duration_estimate_s=100)
    s.submit("c", num_gpus=2, cpu_milli=8000, duration_estimate_s=100)
    s.at(0.0)
    cap = reason(s.why("c"), "insufficient_capacity")
    assert (cap["resource"], cap["need"], cap["free"], cap["node"]) == \
        ("cpu_milli", 8000, 4000, "n0")


def test_gpu_type_unavailable_and_node_cordoned(make):
    s = make("fifo", nodes(("n0", "a100", 4), ("n1", "h100", 4), ("n2", "a100", 8)))
    for n in ("n1", "n2"):
        assert s.post(f"/v1/nodes/{n}/cordon").status_code == 200
    s.submit("ok", num_gpus=2, gpu_types=["a100"], duration_estimate_s=10)
    s.submit("h", num_gpus=1, gpu_types=["h100"], duration_estimate_s=10)
    s.submit("big", num_gpus=8, gpu_types=["a100"], duration_estimate_s=10)
    s.at(0.0)
    h = s.why("h")
    typ = reason(h, "gpu_type_unavailable")
    assert typ["gpu_types"] == ["h100"] and typ["nodes"] == [{"node": "n1",
                                                              "state": "cordoned"}]
    cord = reason(h, "node_cordoned")
    assert cord["would_start_now"] is True and [n["node"] for n in cord["nodes"]] == ["n1"]
    assert h["eta_s"] is None and "no_eta" in codes(h)  # nothing will uncordon it

    big = s.why("big")  # only the cordoned 8-GPU node could ever run it
    cord = reason(big, "node_cordoned")
    assert [n["node"] for n in cord["nodes"]] == ["n2"]
    cap = reason(big, "insufficient_capacity")
    assert (cap["need"], cap["free"], cap["node"]) == (8, 2, "n0")
    assert big["eta_s"] is None

    assert s.engine.by_id["ok"].status == RUNNING
    assert s.post("/v1/nodes/n1/uncordon").status_code == 200
    assert codes(s.why("h")) == ["pending_pass"]


def test_preempted_under_las(make):
    """LAS demotes a job past one GPU-hour; a new job preempts it; the preempted job says
    so, and resumes when the new job is predicted to end."""
    s = make("las", nodes(("n0", "a100", 1)))
    s.submit("a", num_gpus=1, duration_estimate_s=20000)
    s.at(0.0)
    s.clock.t = 10.0
    s.submit("b", num_gpus=1, duration_estimate_s=500)
    s.at(10.0)
    assert s.engine.by_id["b"].status == WAITING  # a is still in the first queue
    s.at(4000.0)  # a crossed 3600 GPU-s: demoted, b preempts it
    a, b = s.engine.by_id["a"], s.engine.by_id["b"]
    assert (a.status, a.preemptions, b.status) == (WAITING, 1, RUNNING)
    w = s.why("a")
    pre = reason(w, "preempted")
    assert pre["preemptions"] == 1 and pre["progress_s"] == pytest.approx(4000.0)
    assert "insufficient_capacity" in codes(w)
    assert w["eta_s"] == pytest.approx(500.0)
    decisions = [(d["action"], d["job_id"]) for d in s.service.store.decisions_after(0, 100)]
    assert decisions == [("start", "a"), ("preempt", "a"), ("start", "b")]


@pytest.mark.parametrize("policy", ["las", "gittins"])
def test_replay_rearms_las_demotions(make, policy):
    """In the replay a running job is demoted (and preempted) when LAS would demote it
    (gittins before any job has completed ranks by LAS's queues): the wake-up armed on
    the live timers is armed again on the replay's clock (``Policy.rearm``)."""
    s = make(policy, nodes(("n0", "a100", 1)))
    s.submit("long", num_gpus=1, duration_estimate_s=100000)
    s.at(0.0)
    s.clock.t = 100.0
    s.submit("short", num_gpus=1, duration_estimate_s=50)
    s.at(100.0)
    w = s.why("short")  # long reaches 3600 GPU-s at t=3600, then short preempts it
    assert w["eta_s"] == pytest.approx(3500.0)


def test_why_and_simulate_change_nothing(make):
    s = make("las", nodes(("n0", "a100", 4), ("n1", "a100", 4)))
    for i, g in enumerate((4, 2, 4, 8, 1)):
        s.submit(f"j{i}", num_gpus=g, duration_estimate_s=1000 * (i + 1))
    s.at(0.0)
    s.clock.t = 500.0
    before = snapshot(s)
    for i in range(5):
        s.why(f"j{i}")
    r = s.post("/v1/simulate", {"jobs": [{"num_gpus": 2, "duration_estimate_s": 100}] * 3},
               "submitter")
    assert r.status_code == 200, r.text
    replay = fork(s.engine)
    replay.add([Job("extra", 500.0, None, 8)])
    replay.run(lambda: False)  # to the end: every job finishes in the copy
    assert replay.exhausted and replay.core.all_done()
    assert snapshot(s) == before


def test_simulate_predicts_starts_and_finishes(make):
    s = make("fifo", nodes(("n0", "a100", 8)), t0=100.0)
    s.submit("r", num_gpus=8, duration_estimate_s=600)
    s.at(100.0)
    s.clock.t = 200.0  # r has 500 s left
    r = s.post("/v1/simulate", {"jobs": [
        {"job_id": "p", "num_gpus": 4, "duration_estimate_s": 50},
        {"num_gpus": 4, "duration_estimate_s": 100},
        {"num_gpus": 8, "duration_estimate_s": 10},
    ]}, "submitter")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["now"] == 200.0 and out["policy"].startswith("fifo")
    got = [(j["job_id"], j["start_s"], j["finish_s"], j["wait_s"]) for j in out["jobs"]]
    assert got == [("p", 700.0, 750.0, 500.0), ("sim-1", 700.0, 800.0, 500.0),
                   ("sim-2", 800.0, 810.0, 600.0)]
    assert [n["node"] for n in out["jobs"][0]["placement"]["nodes"]] == ["n0"]
    assert out["jobs"][0]["placement"]["nodes"][0]["gpus"] == 4.0
    assert s.get("/v1/jobs/p").status_code == 404  # nothing was submitted


def test_simulate_rejects_bad_jobs_naming_the_field(make):
    s = make("fifo", nodes(("n0", "a100", 8)))
    ok = {"num_gpus": 1}
    r = s.post("/v1/simulate", {"jobs": [ok, {"num_gpus": 1, "gpu_types": ["tpu"]}]},
               "submitter")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "jobs", 1, "gpu_types"]
    r = s.post("/v1/simulate", {"jobs": [{"job_id": "a", "num_gpus": 1}, ok,
                                         {"job_id": "a", "num_gpus": 2}]}, "submitter")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == \
        ["body", "jobs", 2, "job_id"]
    r = s.post("/v1/simulate", {"jobs": [ok, ok, {"num_gpus": 64}]}, "submitter")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "jobs", 2, "num_gpus"]
    r = s.post("/v1/simulate", {"jobs": [{"num_gpus": -1}]}, "submitter")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:4] == \
        ["body", "jobs", 0, "num_gpus"]
    r = s.post("/v1/simulate", {"jobs": [ok] * (MAX_SIMULATE_JOBS + 1)}, "submitter")
    assert r.status_code == 422
    assert s.post("/v1/simulate", {"jobs": []}, "submitter").status_code == 422
    assert s.post("/v1/simulate", {"jobs": [ok]}, "reader").status_code == 403
    assert s.post("/v1/simulate", {"jobs": [ok] * MAX_SIMULATE_JOBS},
                  "submitter").json()["complete"] is True


# -- the learned policy's explanation -----------------------------------------------------------
def test_adaptive_rl_decisions_say_which_heuristic_is_in_charge(make):
    """``rl`` (the adaptive scheduler): each start says which heuristic was in charge and
    the selector's probabilities at its last choice."""
    from autoflow.agents.adaptive import CANDIDATES

    s = make("rl", nodes(("n0", "a100", 4), ("n1", "a100", 4)))
    for i, g in enumerate((2, 1, 4, 2, 1, 8)):
        s.submit(f"j{i}", num_gpus=g, duration_estimate_s=600 * (i + 1))
    s.at(0.0)
    starts = [d for d in s.service.store.decisions_after(0, 100) if d["action"] == "start"]
    assert starts
    for d in starts:
        m = d["explanation"]["model"]
        probs = m["last_choice"]["probabilities"]  # over the model's candidates
        assert m["name"] == "rl" and m["in_charge"] in probs
        assert set(probs) <= set(CANDIDATES) and len(probs) >= 5
        assert abs(sum(probs.values()) - 1.0) < 1e-3
        assert m["last_choice"]["chosen"] == max(probs, key=probs.get)


def test_slot_rl_decisions_carry_the_models_probabilities(make):
    from autoflow.agents.rl_policy import SLOT_MODEL

    s = make(f"rl:{SLOT_MODEL}", nodes(("n0", "a100", 4), ("n1", "a100", 4)))
    for i, g in enumerate((2, 1, 4, 2, 1, 8)):
        s.submit(f"j{i}", num_gpus=g, duration_estimate_s=600 * (i + 1))
    s.at(0.0)
    starts = [d for d in s.service.store.decisions_after(0, 100) if d["action"] == "start"]
    assert starts
    for d in starts:
        m = d["explanation"]["model"]
        assert m["name"] == f"rl:{SLOT_MODEL}"
        probs = [t["probability"] for t in m["top"]]
        assert 1 <= len(probs) <= 5 and all(0 <= p <= 1 for p in probs)
        assert sum(probs) <= 1.0
        assert probs == sorted(probs, reverse=True)
        assert (m["chosen"]["action"], m["chosen"]["job_id"]) == ("start", d["job_id"])
        assert isinstance(m["agrees_with_las"], bool)
        assert m["agrees_with_las"] == (m["las_choice"] == {"action": "start",
                                                            "job_id": d["job_id"]})
        assert m["model_choice"]["action"] in ("start", "preempt", "wait")
        if not m["guard"]:  # the network's own choice: its most probable action
            assert m["top"][0]["job_id"] == d["job_id"]
    # the what-if replay runs the learned policy too
    pending = [jid for jid, js in s.engine.by_id.items() if js.status == WAITING]
    assert pending
    for jid in pending:
        w = s.why(jid)
        assert w["eta_s"] is not None and w["eta_s"] > 0


def test_why_and_simulate_while_the_service_runs(tmp_path):
    """With the timer thread and the sim executor running (a fast clock), the what-if
    routes answer while the live engine moves on beside them."""
    app = create_app(ServeConfig(db=f"sqlite:///{tmp_path}/a.db", policy="las",
                                 executor="sim", time_scale=600.0))
    with TestClient(app) as http:
        token = app.state.service.store.create_token("ops", "admin")
        h = {"Authorization": f"Bearer {token}"}
        assert http.post("/v1/clusters", headers=h, json={
            "name": "lab", "nodes": nodes(("n0", "a100", 4), ("n1", "a100", 4))}
        ).status_code == 201
        ids = []
        for i in range(12):
            r = http.post("/v1/jobs", headers=h,
                          json={"num_gpus": 1 + i % 4, "duration_estimate_s": 600 + 60 * i})
            ids.append(r.json()["job_id"])
        for _ in range(3):
            for jid in ids:
                w = http.get(f"/v1/jobs/{jid}/why", headers=h)
                assert w.status_code == 200, w.text
                body = w.json()
                assert body["reasons"] and body["state"] in ("pending", "running",
                                                             "succeeded")
                if body["state"] == "pending":
                    assert body["queue_position"] >= 1
            r = http.post("/v1/simulate", headers=h,
                          json={"jobs": [{"num_gpus": 8, "duration_estimate_s": 60}]})
            assert r.status_code == 200, r.text
            job = r.json()["jobs"][0]
            assert job["finish_s"] == pytest.approx(job["start_s"] + 60.0)
        assert app.state.service.engine.errors == 0
