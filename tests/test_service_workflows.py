"""Workflows in the placement service: jobs that depend on other jobs, and runs of a
workflow template (``POST /v1/workflows``), on a real ``autoflow serve`` on 127.0.0.1 with
the simulated executor on a fast clock (a stage's ``duration_hint_s`` is what it runs for).

The rules under test (``autoflow.workflow``, docs/service.md "Workflows"): a job is held
(``pending``) until every job it depends on has succeeded; one that leaves without
succeeding (cancelled, failed) takes its held dependants with it (``cancelled``, the
reason naming it); a parent that does not exist is refused (422); a restart resumes the
held jobs whether their parents ended before it or still run.
"""

from __future__ import annotations

import httpx
import pytest
from servicekit import Server, make_token, until

NODES = [{"name": f"n{i}", "gpu_type": "a100", "gpus": 8, "cpu_milli": 256000,
          "memory_mib": 1024000} for i in range(4)]
SCALE = "1000"  # cluster seconds per wall second
LONG = 1e8  # a stage that runs past the end of the test (unless stopped)


class Api:
    def __init__(self, url: str, tokens: dict[str, str]):
        self.tokens = tokens
        self.c = httpx.Client(base_url=url, timeout=60)

    def call(self, method: str, path: str, status: int = 200, scope: str = "admin", **kw):
        r = self.c.request(method, path, headers={"Authorization":
                                                  f"Bearer {self.tokens[scope]}"}, **kw)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json()

    def job(self, job_id: str) -> dict:
        return self.call("GET", f"/v1/jobs/{job_id}")

    def state(self, job_id: str) -> str:
        return self.job(job_id)["state"]

    def workflow(self, workflow_id: str) -> dict:
        return self.call("GET", f"/v1/workflows/{workflow_id}")

    def submit(self, status: int = 201, **job) -> dict:
        return self.call("POST", "/v1/jobs", status, "submitter", json=job)

    def run(self, template: dict, run: str | None = None, status: int = 201) -> dict:
        body = {"template": template, **({"run": run} if run else {})}
        return self.call("POST", "/v1/workflows", status, "submitter", json=body)


def metric(api: Api, name: str, **labels) -> float:
    """A sample of ``GET /metrics`` (a reader's scrape)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = api.c.get("/metrics", headers={"Authorization":
                                          f"Bearer {api.tokens['reader']}"}).text
    for family in text_string_to_metric_families(text):
        for smp in family.samples:
            if smp.name == name and smp.labels == labels:
                return smp.value
    raise AssertionError(f"no sample {name}{labels}")


def _start(db: str, log) -> Server:
    return Server(db, log, "--executor", "sim", "--time-scale", SCALE).start()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workflows")
    db = f"sqlite:///{tmp}/svc.db"
    srv = _start(db, tmp / "serve.log")
    try:
        tokens = {s: make_token(db, s, s) for s in ("admin", "submitter", "reader")}
        a = Api(srv.url, tokens)
        a.call("POST", "/v1/clusters", 201, json={"name": "lab", "nodes": NODES})
        yield a
    finally:
        srv.stop()


PIPELINE = {"name": "recsys", "stages": [
    {"name": "prepare", "num_gpus": 0, "cpu_milli": 8000, "duration_hint_s": 300},
    {"name": "train", "num_gpus": 4, "depends_on": ["prepare"], "replicas": 2,
     "duration_hint_s": "10m"},
    {"name": "evaluate", "num_gpus": 1, "depends_on": ["train"], "duration_hint_s": 120},
]}


def test_a_template_run_completes_stage_by_stage(api):
    made = api.run(PIPELINE, "nightly-1")
    assert made == {"workflow_id": "nightly-1",
                    "jobs": ["nightly-1-prepare", "nightly-1-train-0", "nightly-1-train-1",
                             "nightly-1-evaluate"]}
    # stored before the 201: every job is there at once, with its workflow and parents
    train = api.job("nightly-1-train-1")
    assert train["workflow_id"] == "nightly-1"
    assert train["depends_on"] == ["nightly-1-prepare"]
    assert train["num_gpus"] == 4 and train["duration_estimate_s"] == 600
    assert api.job("nightly-1-evaluate")["depends_on"] == ["nightly-1-train-0",
                                                          "nightly-1-train-1"]

    view = until(lambda: (v := api.workflow("nightly-1"))["state"] == "succeeded" and v,
                 "the run succeeded")
    assert view["template"] == "recsys"
    assert [s["name"] for s in view["stages"]] == ["prepare", "train", "evaluate"]
    assert all(s["state"] == "succeeded" for s in view["stages"])
    assert view["jobs"] == {"succeeded": 4}
    jobs = {j["job_id"]: j for s in view["stages"] for j in s["jobs"]}
    assert len(jobs) == 4
    for j in jobs.values():  # each stage started only once its parents had finished
        assert j["state"] == "succeeded" and j["first_start"] is not None
        for p in j["depends_on"]:
            assert j["first_start"] >= jobs[p]["finish_time"], (j, jobs[p])
    assert view["start_time"] == jobs["nightly-1-prepare"]["first_start"]
    assert view["finish_time"] == max(j["finish_time"] for j in jobs.values())
    assert view["finish_time"] == jobs["nightly-1-evaluate"]["finish_time"]

    # the run id is taken now; another run of the same template gets its own
    api.run(PIPELINE, "nightly-1", status=409)
    other = api.run(PIPELINE)["workflow_id"]
    assert other.startswith("recsys-") and other != "nightly-1"
    api.call("DELETE", f"/v1/workflows/{other}", scope="submitter", params={"running": True})


def test_a_held_stage_names_its_parents_and_a_workflow_is_cancelled(api):
    template = {"name": "slow", "stages": [
        {"name": "long", "num_gpus": 1, "duration_hint_s": LONG},
        {"name": "next", "num_gpus": 1, "depends_on": ["long"], "duration_hint_s": 60},
        {"name": "last", "num_gpus": 1, "depends_on": ["next"], "duration_hint_s": 60},
    ]}
    api.run(template, "slow-1")
    until(lambda: api.state("slow-1-long") == "running", "the first stage runs")

    why = api.call("GET", "/v1/jobs/slow-1-next/why")
    assert why["state"] == "pending" and why["queue_position"] is None
    reason = why["reasons"][0]
    assert reason["code"] == "waiting_for_dependencies"
    assert reason["waiting_for"] == ["slow-1-long"]
    assert reason["parents"] == [{"job_id": "slow-1-long", "state": "running"}]
    assert "slow-1-long (running)" in reason["message"]
    assert api.call("GET", "/v1/jobs/slow-1-last/why")["reasons"][0]["waiting_for"] == [
        "slow-1-next"]
    view = api.workflow("slow-1")
    assert view["state"] == "running" and view["finish_time"] is None
    assert [s["state"] for s in view["stages"]] == ["running", "pending", "pending"]

    # the dashboard's queue: the held jobs, with their workflow and the parents they wait for
    queue = {j["job_id"]: j for j in api.call("GET", "/v1/dashboard")["queue"]}
    held = queue["slow-1-next"]
    assert held["held"] and held["position"] is None and held["workflow_id"] == "slow-1"
    assert held["waiting_for"] == ["slow-1-long"] and "slow-1-long" in held["reason"]
    summary = api.call("GET", "/v1/dashboard")["summary"]
    assert summary["held"] >= 2
    # /metrics: the held jobs are counted apart from the waiting queue
    held, active = metric(api, "autoflow_held_jobs"), metric(api, "autoflow_pending_jobs",
                                                              queue="active")
    assert held == summary["held"] and active == summary["pending"]

    # DELETE: the pending stages are cancelled, the running one continues
    out = api.call("DELETE", "/v1/workflows/slow-1", scope="submitter")
    assert sorted(out["cancelled"]) == ["slow-1-last", "slow-1-next"]
    assert out["state"] == "running"
    states = {j["job_id"]: j["state"] for s in out["stages"] for j in s["jobs"]}
    assert states == {"slow-1-long": "running", "slow-1-next": "cancelled",
                      "slow-1-last": "cancelled"}
    assert api.job("slow-1-next")["reason"] == "workflow slow-1 was cancelled"
    assert api.call("GET", "/v1/jobs/slow-1-next/why")["reasons"][0]["code"] == "cancelled"
    assert metric(api, "autoflow_held_jobs") == held - 2
    # ... and with running=true, the running one too: the workflow has ended
    out = api.call("DELETE", "/v1/workflows/slow-1", scope="submitter",
                   params={"running": True})
    assert out["cancelled"] == ["slow-1-long"] and out["state"] == "cancelled"
    assert out["finish_time"] is not None
    assert api.call("DELETE", "/v1/workflows/slow-1", scope="submitter")["cancelled"] == []
    api.call("GET", "/v1/workflows/nope", 404)
    api.call("DELETE", "/v1/workflows/nope", 404, "submitter")
    api.call("DELETE", "/v1/workflows/slow-1", 403, "reader")


def test_a_parent_that_does_not_succeed_cancels_its_dependants(api):
    parent = api.submit(job_id="p-1", num_gpus=1, duration_estimate_s=LONG)["job_id"]
    assert api.submit(job_id="c-1", num_gpus=1, depends_on=[parent],
                      duration_estimate_s=60)["state"] == "pending"
    assert api.submit(job_id="g-1", num_gpus=1, depends_on=["c-1"],
                      duration_estimate_s=60)["state"] == "pending"
    until(lambda: api.state("p-1") == "running", "the parent runs")
    assert api.call("DELETE", "/v1/jobs/p-1", scope="submitter")["state"] == "cancelled"
    child, grandchild = api.job("c-1"), api.job("g-1")
    assert child["state"] == "cancelled"
    assert child["reason"] == "depends on p-1, which was cancelled"
    assert grandchild["state"] == "cancelled"
    assert grandchild["reason"] == "depends on c-1, which was cancelled"
    events = api.call("GET", "/v1/jobs/c-1/events")["events"]
    assert [e["event"] for e in events] == ["cancelled"]
    assert events[0]["detail"]["message"] == child["reason"]

    # a job that depends on one that ended without succeeding: accepted, cancelled at once
    late = api.submit(job_id="c-2", depends_on=["p-1"])
    assert late == {"job_id": "c-2", "state": "cancelled"}
    assert api.job("c-2")["reason"] == "depends on p-1, which was cancelled"

    # a parent the executor reports failed
    api.submit(job_id="f-1", num_gpus=1, duration_estimate_s=LONG)
    api.submit(job_id="f-1-child", depends_on=["f-1"], num_gpus=1)
    until(lambda: api.state("f-1") == "running", "the parent runs")
    # a held job cancelled by itself: its parent runs on, its own dependant goes with it
    api.submit(job_id="f-1-held", depends_on=["f-1"], num_gpus=1)
    api.submit(job_id="f-1-held-child", depends_on=["f-1-held"], num_gpus=1)
    assert api.call("DELETE", "/v1/jobs/f-1-held", scope="submitter")["state"] == "cancelled"
    assert api.job("f-1-held")["state"] == "cancelled" and api.state("f-1") == "running"
    assert api.job("f-1-held-child")["reason"] == "depends on f-1-held, which was cancelled"
    api.call("POST", "/v1/jobs/f-1/events", json={"event": "failed", "message": "OOM"})
    assert api.job("f-1-child")["reason"] == "depends on f-1, which failed"
    assert api.job("f-1-child")["state"] == "cancelled"

    # a parent that already succeeded counts as met
    api.submit(job_id="s-1", num_gpus=1, duration_estimate_s=30)
    until(lambda: api.state("s-1") == "succeeded", "the parent succeeds")
    api.submit(job_id="s-1-child", num_gpus=1, depends_on=["s-1"], duration_estimate_s=30)
    until(lambda: api.state("s-1-child") == "succeeded", "its child runs and succeeds")


def test_bad_parents_and_bad_templates_are_refused(api):
    def refused(r: dict) -> tuple[list, str]:
        return r["detail"][0]["loc"], r["detail"][0]["msg"]

    loc, msg = refused(api.submit(422, job_id="orphan", depends_on=["no-such-job"]))
    assert loc == ["body", "depends_on"] and "no-such-job" in msg
    api.call("GET", "/v1/jobs/orphan", 404)  # nothing stored
    _loc, msg = refused(api.submit(422, job_id="self", depends_on=["self"]))
    assert "depends_on" in msg
    api.submit(job_id="twice-parent", duration_estimate_s=10)
    _loc, msg = refused(api.submit(422, depends_on=["twice-parent", "twice-parent"]))
    assert "depends_on[1]" in msg and "twice" in msg
    loc, _msg = refused(api.submit(422, depends_on=[f"j{i}" for i in range(1001)]))
    assert loc[:2] == ["body", "depends_on"]

    def bad(template: dict) -> str:
        loc, msg = refused(api.run(template, status=422))
        assert loc == ["body", "template"]
        return msg

    assert bad({"name": "x", "stages": [
        {"name": "a"}, {"name": "b", "depends_on": ["zz"]}]}) == (
        "template stages[1] (b) field 'depends_on': 'zz' is not a stage listed before this one")
    assert "stages[0] (a) field 'num_gpus'" in bad({"name": "x", "stages": [
        {"name": "a", "num_gpus": "two"}]})
    assert "stages[0] (a) field 'gpu_types[0]'" in bad({"name": "x", "stages": [
        {"name": "a", "gpu_types": [7]}]})
    assert "stages[0] (a) field 'gpu_types[1]'" in bad({"name": "x", "stages": [
        {"name": "a", "gpu_types": ["a100", ""]}]})
    msg = bad({"name": "x", "stages": [{"name": "a"}, {"name": "huge", "num_gpus": 64}]})
    assert "stage 'huge' field 'num_gpus'" in msg and "64" in msg
    assert "field 'stages'" in bad({"name": "x", "stages": []})
    api.call("POST", "/v1/workflows", 403, "reader",
             json={"template": PIPELINE, "run": "not-allowed"})
    api.call("GET", "/v1/workflows/not-allowed", 404)


def test_a_restart_resumes_held_jobs(tmp_path):
    """A job held for two parents: one succeeded before the restart, one still runs.
    After a hard restart (SIGKILL) it still waits for the running one only, and runs once
    that one has finished."""
    db = f"sqlite:///{tmp_path}/svc.db"
    srv = _start(db, tmp_path / "serve.log")
    try:
        a = Api(srv.url, {"admin": make_token(db), "submitter": make_token(db, "submitter",
                                                                           "submitter")})
        a.call("POST", "/v1/clusters", 201, json={"name": "lab", "nodes": NODES[:1]})
        a.submit(job_id="quick", num_gpus=1, duration_estimate_s=30)
        a.submit(job_id="slow", num_gpus=1, duration_estimate_s=LONG)
        a.submit(job_id="both", num_gpus=1, depends_on=["quick", "slow"],
                 duration_estimate_s=30)
        a.submit(job_id="after-both", num_gpus=1, depends_on=["both"],
                 duration_estimate_s=30)
        until(lambda: a.state("quick") == "succeeded" and a.state("slow") == "running",
              "one parent succeeded, the other runs")
        assert a.state("both") == "pending"
    finally:
        srv.kill()

    srv = _start(db, tmp_path / "serve.log")
    try:
        a.c = httpx.Client(base_url=srv.url, timeout=60)
        reason = a.call("GET", "/v1/jobs/both/why")["reasons"][0]
        assert reason["code"] == "waiting_for_dependencies"
        assert reason["waiting_for"] == ["slow"]  # the one that succeeded counts as met
        assert "(1 of 2 succeeded)" in reason["message"]
        assert a.state("slow") == "running"
        # the running parent finishes (its executor reports it): the held jobs run
        a.call("POST", "/v1/jobs/slow/events", json={"event": "finished"})
        until(lambda: a.state("after-both") == "succeeded", "the held jobs ran")
        jobs = {j: a.job(j) for j in ("slow", "both", "after-both")}
        assert jobs["both"]["first_start"] >= jobs["slow"]["finish_time"]
        assert jobs["after-both"]["first_start"] >= jobs["both"]["finish_time"]
    finally:
        srv.stop()

    # and once more: a restart with a held job whose only parent ended before it
    srv = _start(db, tmp_path / "serve.log")
    try:
        a.c = httpx.Client(base_url=srv.url, timeout=60)
        assert a.submit(job_id="late", num_gpus=1, depends_on=["after-both"],
                        duration_estimate_s=30)["state"] == "pending"
        until(lambda: a.state("late") == "succeeded", "a job on a parent done before runs")
    finally:
        srv.stop()


# -- the dashboard: each workflow with its stages -------------------------------------------
def dash_workflows(api: Api) -> dict[str, dict]:
    return {w["workflow_id"]: w for w in api.call("GET", "/v1/dashboard",
                                                   scope="reader")["workflows"]}


def test_the_dashboard_shows_each_workflow_and_its_stages(api):
    template = {"name": "dash", "stages": [
        {"name": "prep", "num_gpus": 1, "duration_hint_s": LONG},
        {"name": "train", "num_gpus": 1, "depends_on": ["prep"], "duration_hint_s": 60},
        {"name": "eval", "num_gpus": 1, "depends_on": ["train"], "duration_hint_s": 60},
    ]}
    api.run(template, "dash-1")
    api.submit(job_id="dash-solo", num_gpus=1, duration_estimate_s=LONG)  # in no workflow
    until(lambda: api.state("dash-1-prep") == "running", "the first stage runs")

    board = api.call("GET", "/v1/dashboard", scope="reader")["workflows"]
    assert len(board) <= 20
    assert all(w["workflow_id"] for w in board)  # the independent job is no workflow
    wf = dash_workflows(api)["dash-1"]
    assert wf["template"] == "dash" and wf["state"] == "running"
    assert wf["stages"] == [{"name": "prep", "state": "running", "jobs": 1},
                            {"name": "train", "state": "held", "jobs": 1},
                            {"name": "eval", "state": "held", "jobs": 1}]
    view = api.workflow("dash-1")  # the same workflow GET /v1/workflows/{id} answers
    assert {k: wf[k] for k in ("submit_time", "start_time", "finish_time")} == {
        k: view[k] for k in ("submit_time", "start_time", "finish_time")}
    assert wf["start_time"] is not None and wf["finish_time"] is None
    # the active workflows come before the ended ones
    states = [w["state"] for w in board]
    ended = [s in ("succeeded", "failed", "cancelled") for s in states]
    assert ended == sorted(ended), states

    # ended: still shown (the latest to end, first of the ended ones), its stages ended
    out = api.call("DELETE", "/v1/workflows/dash-1", scope="submitter",
                   params={"running": True})
    assert out["state"] == "cancelled"
    api.call("DELETE", "/v1/jobs/dash-solo", scope="submitter")
    board = api.call("GET", "/v1/dashboard", scope="reader")["workflows"]
    first_ended = next(w for w in board if w["state"] in ("succeeded", "failed", "cancelled"))
    assert first_ended["workflow_id"] == "dash-1"
    assert first_ended["finish_time"] == out["finish_time"] is not None
    assert [(s["name"], s["state"]) for s in first_ended["stages"]] == [
        ("prep", "cancelled"), ("train", "cancelled"), ("eval", "cancelled")]


def test_the_dashboard_lists_at_most_its_limit_of_workflows(monkeypatch, tmp_path):
    """The active workflows first (newest first), then the ones that ended last (latest
    first), ``WORKFLOW_LIMIT`` in all; none at all: an empty list."""
    from fastapi.testclient import TestClient

    from autoflow.service import dashboard
    from autoflow.service.app import ServeConfig, create_app

    assert dashboard.WORKFLOW_LIMIT == 20
    app = create_app(ServeConfig(db=f"sqlite:///{tmp_path}/lim.db", policy="fifo"))
    with TestClient(app) as client:
        store = app.state.service.store
        tokens = {s: store.create_token(s, s) for s in ("admin", "submitter", "reader")}
        a = Api("http://testserver", tokens)
        a.c.close()
        a.c = client  # the app in this process: its constant can be patched
        a.call("POST", "/v1/clusters", 201, json={"name": "lab", "nodes": NODES})
        assert dash_workflows(a) == {}
        one = {"name": "one", "stages": [{"name": "only", "num_gpus": 1}]}
        for run in ("e-1", "e-2", "e-3", "a-1", "a-2"):
            a.run(one, run)
        for run in ("e-1", "e-3", "e-2"):  # they end in this order
            assert a.call("DELETE", f"/v1/workflows/{run}", scope="submitter",
                          params={"running": True})["state"] == "cancelled"

        def listed() -> list[str]:
            return [w["workflow_id"] for w in a.call("GET", "/v1/dashboard",
                                                     scope="reader")["workflows"]]

        assert listed() == ["a-2", "a-1", "e-2", "e-3", "e-1"]
        monkeypatch.setattr(dashboard, "WORKFLOW_LIMIT", 3)
        assert listed() == ["a-2", "a-1", "e-2"]
        monkeypatch.setattr(dashboard, "WORKFLOW_LIMIT", 1)
        assert listed() == ["a-2"]  # the active ones before any ended one


# -- the client: autoflow submit --workflow-id/--depends-on, autoflow workflows submit|show|cancel
def cli(api: Api, *args: str, scope: str = "submitter"):
    from hardening import invoke

    return invoke(*args, "--url", str(api.c.base_url).rstrip("/"), "--token",
                  api.tokens[scope])


def ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_client_submits_jobs_into_a_workflow_and_shows_and_cancels_it(api):
    out = ok(cli(api, "submit", "--gpus", "1", "--duration-estimate", str(LONG),
                 "--job-id", "cli-parent", "--workflow-id", "cli-wf"))
    assert out.strip().splitlines()[-1] == "cli-parent"
    r = cli(api, "submit", "--gpus", "1", "--job-id", "cli-child", "--workflow-id", "cli-wf",
            "--depends-on", "cli-parent")
    assert ok(r).strip() == "cli-child" and "held until" in r.stderr
    ok(cli(api, "submit", "--gpus", "1", "--job-id", "cli-grand", "--workflow-id", "cli-wf",
           "--depends-on", "cli-parent, cli-child"))
    ok(cli(api, "submit", "--gpus", "1", "--job-id", "cli-other", "--depends-on",
           "cli-parent", "--depends-on", "cli-child"))
    grand = api.job("cli-grand")
    assert grand["workflow_id"] == "cli-wf" and grand["depends_on"] == ["cli-parent",
                                                                        "cli-child"]
    assert api.job("cli-other")["depends_on"] == ["cli-parent", "cli-child"]
    assert api.job("cli-other")["workflow_id"] is None
    until(lambda: api.state("cli-parent") == "running", "the parent runs")
    listed = {ln.split("\t")[0]: ln.split("\t")[4]
              for ln in ok(cli(api, "jobs", "--limit", "1000", scope="reader")).splitlines()}
    assert listed["cli-parent"] == "cli-wf"
    assert listed["cli-grand"] == "cli-wf after cli-parent,cli-child"
    assert listed["cli-other"] == "- after cli-parent,cli-child"

    shown = ok(cli(api, "workflows", "show", "cli-wf", scope="reader"))
    assert shown.startswith("cli-wf: running, 2 pending, 1 running, submit ")
    assert "\n  cli-grand: pending\n    cli-grand: pending after cli-parent, cli-child\n" \
        in shown
    import json

    view = json.loads(ok(cli(api, "workflows", "show", "cli-wf", "--json", scope="reader")))
    assert view == api.workflow("cli-wf")

    r = cli(api, "workflows", "cancel", "cli-wf")
    assert "cancelled 2 job(s): cli-child, cli-grand" in r.stderr
    assert "cli-grand: cancelled after cli-parent, cli-child: workflow cli-wf was " \
        "cancelled" in ok(r)
    assert api.state("cli-parent") == "running"
    # cli-other is outside the workflow, but depends on cli-child: cancelled with it
    assert api.job("cli-other")["reason"] == "depends on cli-child, which was cancelled"
    out = json.loads(ok(cli(api, "workflows", "cancel", "cli-wf", "--running", "--json")))
    assert out["cancelled"] == ["cli-parent"] and out["state"] == "cancelled"
    # a job submitted on a parent that did not succeed: accepted, cancelled at once, said why
    r = cli(api, "submit", "--gpus", "1", "--job-id", "cli-late", "--depends-on", "cli-parent")
    assert ok(r).strip() == "cli-late"
    assert "submitted, cancelled: depends on cli-parent, which was cancelled" in r.stderr


def test_the_client_submits_a_workflow_file_or_a_request_body(api, tmp_path):
    import json

    import yaml

    path = tmp_path / "recsys.yaml"
    path.write_text(yaml.safe_dump(PIPELINE))
    r = cli(api, "workflows", "submit", str(path), "--run", "cli-run-1")
    assert ok(r).strip().splitlines()[-1] == "cli-run-1"
    assert "submitted workflow cli-run-1: 4 job(s)" in r.stderr
    until(lambda: api.workflow("cli-run-1")["state"] == "succeeded", "the run succeeded")
    shown = ok(cli(api, "workflows", "show", "cli-run-1", scope="reader"))
    assert shown.startswith("cli-run-1: succeeded (recsys), 4 succeeded")
    assert "  train: succeeded\n    cli-run-1-train-0: succeeded after cli-run-1-prepare" \
        in shown

    body = tmp_path / "body.json"  # a whole request body; its run unless --run says
    body.write_text(json.dumps({"template": PIPELINE, "run": "cli-run-2"}))
    made = json.loads(ok(cli(api, "workflows", "submit", str(body), "--json")))
    assert made["workflow_id"] == "cli-run-2" and len(made["jobs"]) == 4
    assert ok(cli(api, "workflows", "submit", str(body), "--run", "cli-run-3")).strip() == \
        "cli-run-3"
    for run in ("cli-run-2", "cli-run-3"):
        ok(cli(api, "workflows", "cancel", run, "--running"))
    plain = tmp_path / "plain.yaml"  # no run id: NAME-<12 hex>
    plain.write_text(yaml.safe_dump(PIPELINE))
    auto = ok(cli(api, "workflows", "submit", str(plain))).strip()
    assert auto.startswith("recsys-") and len(auto) == len("recsys-") + 12
    ok(cli(api, "workflows", "cancel", auto, "--running"))


def test_bad_client_input_is_one_line_naming_the_flag_or_field(api, tmp_path):
    from hardening import assert_one_line_error

    def refused(*args, scope="submitter"):
        return cli(api, *args, scope=scope)

    assert_one_line_error(refused("submit", "--depends-on", "a,,b"),
                          "--depends-on: an empty job id in 'a,,b'")
    assert_one_line_error(refused("submit", "--depends-on", "a,b", "--depends-on", "a"),
                          "--depends-on: 'a' appears twice")
    assert_one_line_error(refused("submit", "--depends-on", "no spaces"),
                          "--depends-on: 'no spaces' is not a job id")
    assert_one_line_error(refused("submit", "--job-id", "me", "--depends-on", "me"),
                          "--depends-on: names the job itself")
    assert_one_line_error(refused("submit", "--workflow-id", "-w"), "--workflow-id: '-w'")
    assert_one_line_error(refused("submit", "--depends-on", "no-such-job"),
                          "POST /v1/jobs: 422 depends_on: no job 'no-such-job'")

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages:\n  - name: a\n    gpu_types: [a100, '']\n")
    assert_one_line_error(refused("workflows", "submit", str(bad)),
                          f"{bad} stages[0] (a) field 'gpu_types[1]'")
    bad.write_text("name: x\nstages:\n  - name: a\n  - name: b\n    depends_on: [zz]\n")
    assert_one_line_error(refused("workflows", "submit", str(bad)),
                          "stages[1] (b) field 'depends_on': 'zz' is not a stage")
    bad.write_text('{"template": {"name": "x", "stages": [{"name": "a"}]}, "run": "r", '
                   '"when": 1}')
    assert_one_line_error(refused("workflows", "submit", str(bad)), "unknown field 'when'")
    bad.write_text('{"template": {"name": "x", "stages": [{"name": "a", "replicas": 0}]}}')
    assert_one_line_error(refused("workflows", "submit", str(bad)),
                          f"{bad} field 'template' stages[0] (a) field 'replicas'")
    bad.write_text("name: x\nstages:\n  - name: huge\n    num_gpus: 64\n")
    assert_one_line_error(refused("workflows", "submit", str(bad)),  # the server knows
                          "POST /v1/workflows: 422 template:", "stage 'huge' field 'num_gpus'")
    assert_one_line_error(refused("workflows", "submit", str(tmp_path / "none.yaml")),
                          "no such workflow file")
    good = tmp_path / "good.yaml"
    good.write_text("name: x\nstages:\n  - name: a\n    duration_hint_s: 10\n")
    assert_one_line_error(refused("workflows", "submit", str(good), "--run", "a b"),
                          "--run: 'a b' is not a run id")
    assert_one_line_error(refused("workflows", "submit", str(good), "--run", "cli-x",
                                  scope="reader"), "POST /v1/workflows: 403")
    ok(cli(api, "workflows", "submit", str(good), "--run", "cli-x"))
    assert_one_line_error(refused("workflows", "submit", str(good), "--run", "cli-x"),
                          "POST /v1/workflows: 409 workflow 'cli-x' exists already")
    assert_one_line_error(refused("workflows", "show", "nope", scope="reader"),
                          "GET /v1/workflows/nope: 404 workflow 'nope' not found")
    assert_one_line_error(refused("workflows", "cancel", "cli-x", scope="reader"),
                          "DELETE /v1/workflows/cli-x: 403")
    r = invoke_unreachable("workflows", "show", "x")
    assert_one_line_error(r, "GET /v1/workflows/x: cannot reach http://127.0.0.1:1")


def invoke_unreachable(*args: str):
    from hardening import invoke

    return invoke(*args, "--url", "http://127.0.0.1:1", "--token", "x")


# -- the store: a workflow's jobs found by an index ----------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_workflow_s_jobs_are_found_by_an_index_also_after_the_migration(backend, tmp_path):
    """A store written before the ``workflow_id`` column (revision 0002) is migrated: its
    jobs get the column from their spec; new jobs get it when inserted; the lookup of
    ``GET /v1/workflows/{id}`` uses the index."""
    from servicekit import pg_database

    if backend == "sqlite":
        check_workflow_index(f"sqlite:///{tmp_path}/old.db", backend)
    else:
        with pg_database() as url:
            check_workflow_index(url, backend)


def check_workflow_index(url: str, backend: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import insert, select, text

    from autoflow.service import tables as t
    from autoflow.service.db import MIGRATIONS, make_engine
    from autoflow.service.store import Store

    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    with engine.begin() as conn:  # as the service stored them before
        for i, wf in enumerate(["old-wf", "old-wf", None]):
            spec = {"num_gpus": 1, **({"workflow_id": wf} if wf else {})}
            conn.execute(insert(t.jobs).values(job_id=f"old-{i}", state="succeeded",
                                               submit_time=float(i), spec=spec, user="",
                                               num_gpus=1, kind="training"))
    store = Store(url)  # migrates to the head
    try:
        assert [r["job_id"] for r in store.workflow_jobs("old-wf")] == ["old-0", "old-1"]
        assert store.job("old-2")["workflow_id"] is None
        store.insert_job({"job_id": "new-0", "state": "pending", "submit_time": 5.0,
                          "spec": {"num_gpus": 1, "workflow_id": "new-wf"}, "user": "",
                          "num_gpus": 1, "kind": "training"})
        assert [r["job_id"] for r in store.workflow_jobs("new-wf")] == ["new-0"]
        assert store.workflow_jobs("old-wf", 1)[0]["job_id"] == "old-0"
        q = select(t.jobs).where(t.jobs.c.workflow_id == "old-wf").order_by(t.jobs.c.seq)
        sql = str(q.compile(engine, compile_kwargs={"literal_binds": True}))
        with engine.connect() as c:
            if backend == "sqlite":
                plan = " ".join(str(r[-1]) for r in c.execute(text(
                    f"EXPLAIN QUERY PLAN {sql}")))
            else:
                c.execute(text("SET enable_seqscan = off"))  # a tiny table: else a scan
                plan = " ".join(r[0] for r in c.execute(text(f"EXPLAIN {sql}")))
        assert "ix_jobs_workflow_id" in plan, plan
    finally:
        store.close()
        engine.dispose()
