"""``GET /metrics``: kube-scheduler's names on a real app (its lifespan, timer thread and
store), values that move with submissions, decisions, preemptions and policy switches,
and labels that never carry a job id or a user."""

from __future__ import annotations

import pytest
from servicekit import until

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from autoflow.service.app import ServeConfig, create_app

CLUSTER = {"name": "c1", "nodes": [{"name": "n1", "gpu_type": "a100", "gpus": 4},
                                   {"name": "n2", "gpu_type": "a100", "gpus": 4}]}
USERS = ("alice", "bob-the-user")


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]




def scrape_until(client, headers, cond, what: str) -> str:
    """The exposition once ``cond(text)`` holds: decisions are counted after their
    commit, on the scheduler's thread."""
    def ready():
        text = client.get("/metrics", headers=headers).text
        try:
            return text if cond(text) else None
        except KeyError:  # the series does not exist yet
            return None
    return until(ready, what)


def starts(n: int, label: str = "las+best-fit"):
    return lambda text: value(text, "autoflow_decisions_total", policy=label,
                              action="start") >= n


@pytest.fixture
def served(tmp_path):
    def make(name="a", **config):
        app = create_app(ServeConfig(db=f"sqlite:///{tmp_path}/{name}.db", **config))
        client = TestClient(app)
        client.__enter__()
        store = app.state.service.store
        admin = {"Authorization": f"Bearer {store.create_token('ops', 'admin')}"}
        reader = {"Authorization": f"Bearer {store.create_token('viewer', 'reader')}"}
        opened.append(client)
        return app, client, admin, reader

    opened: list[TestClient] = []
    yield make
    for c in opened:
        c.__exit__(None, None, None)


def submit(client, headers, n, gpus=4, **extra):
    ids = []
    for i in range(n):
        r = client.post("/v1/jobs", headers=headers,
                        json={"num_gpus": gpus, "duration_estimate_s": 3600,
                              "user": USERS[i % 2], **extra})
        assert r.status_code == 201, r.text
        ids.append(r.json()["job_id"])
    return ids


def test_metrics_needs_a_token(served):
    _app, client, _admin, reader = served()
    r = client.get("/metrics")
    assert r.status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = client.get("/metrics", headers=reader)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name in ("autoflow_schedule_attempts", "autoflow_scheduling_attempt_duration_seconds",
                 "autoflow_pending_jobs", "autoflow_preemption_victims",
                 "autoflow_preemption_attempts", "autoflow_gpus_allocated",
                 "autoflow_gpus_total", "autoflow_gpu_fragmentation_ratio",
                 "autoflow_decisions", "autoflow_http_request_duration_seconds",
                 "autoflow_jobs", "autoflow_nodes", "autoflow_policy_info",
                 "autoflow_policy_switches", "autoflow_scheduler_errors"):
        assert name in families, name
    assert families["autoflow_schedule_attempts"] == "counter"
    assert families["autoflow_scheduling_attempt_duration_seconds"] == "histogram"
    assert families["autoflow_preemption_victims"] == "histogram"
    assert families["autoflow_pending_jobs"] == "gauge"
    # before any cluster: nothing allocated, nothing attempted
    assert value(text, "autoflow_gpus_total") == 0
    assert value(text, "autoflow_schedule_attempts_total", result="scheduled") == 0
    assert value(text, "autoflow_policy_info", policy="las", label="las+best-fit") == 1


def test_values_move_with_submissions(served):
    app, client, admin, reader = served()
    assert client.post("/v1/clusters", headers=admin, json=CLUSTER).status_code == 201
    ids = submit(client, admin, 4)  # two fit (4 GPUs per node); two wait
    engine = app.state.service.engine
    # every submission is followed by a pass: two start, two stay unschedulable
    scrape_until(client, reader, lambda t: starts(2)(t) and value(
        t, "autoflow_schedule_attempts_total", result="unschedulable") >= 2,
        "two starts and two unschedulable attempts")
    client.get(f"/v1/jobs/{ids[0]}", headers=reader)
    client.get("/v1/jobs/no-such-job", headers=reader)
    client.get("/no/such/route", headers=reader)

    text = client.get("/metrics", headers=reader).text
    assert len(engine.core.waiting) == 2
    assert value(text, "autoflow_schedule_attempts_total", result="scheduled") == 2
    assert value(text, "autoflow_schedule_attempts_total", result="error") == 0
    assert value(text, "autoflow_scheduling_attempt_duration_seconds_count") >= 2
    assert value(text, "autoflow_decisions_total", policy="las+best-fit", action="start") == 2
    assert value(text, "autoflow_gpus_total") == 8
    assert value(text, "autoflow_gpus_allocated") == 8
    assert value(text, "autoflow_gpu_fragmentation_ratio") == 0
    assert value(text, "autoflow_pending_jobs", queue="active") == 2
    assert value(text, "autoflow_pending_jobs", queue="preempted") == 0
    assert value(text, "autoflow_jobs", state="running") == 2
    assert value(text, "autoflow_jobs", state="pending") == 2
    assert value(text, "autoflow_nodes", state="up") == 2
    # HTTP latency by route template, never the raw path
    http = "autoflow_http_request_duration_seconds_count"
    assert value(text, http, method="POST", route="/v1/jobs", status="201") == 4
    assert value(text, http, method="GET", route="/v1/jobs/{job_id}", status="200") == 1
    assert value(text, http, method="GET", route="/v1/jobs/{job_id}", status="404") == 1
    assert value(text, http, method="GET", route="unmatched", status="404") == 1

    # one job ends: allocation and states follow
    assert client.post(f"/v1/jobs/{ids[0]}/events", headers=admin,
                       json={"event": "finished"}).status_code == 200
    text = scrape_until(client, reader, starts(3), "the next start")
    assert value(text, "autoflow_schedule_attempts_total", result="scheduled") == 3
    assert value(text, "autoflow_jobs", state="succeeded") == 1
    assert value(text, "autoflow_pending_jobs", queue="active") == 1
    assert value(text, "autoflow_decisions_total", policy="las+best-fit", action="start") == 3
    assert value(text, "autoflow_gpus_allocated") == 8

    # no label value anywhere names a job or a user
    text = client.get("/metrics", headers=reader).text
    for name, labels in samples(text):
        for key, val in labels:
            assert val not in ids and val not in USERS, (name, key, val)
            assert "job-" not in val and "no-such-job" not in val, (name, key, val)
    assert "alice" not in text and not any(i in text for i in ids)


def test_fractional_allocation_and_fragmentation(served):
    _app, client, admin, reader = served()
    client.post("/v1/clusters", headers=admin, json=CLUSTER)
    submit(client, admin, 1, gpus=1, gpu_milli=500)
    text = scrape_until(client, reader, starts(1), "the start")
    assert value(text, "autoflow_gpus_allocated") == 0.5
    # half a GPU is free on a used GPU, 7 are whole: 0.5 of 7.5 free GPUs is fragmented
    assert value(text, "autoflow_gpu_fragmentation_ratio") == pytest.approx(0.5 / 7.5)


def test_preemption_victims_and_policy_switches(served):
    # las with a 1 GPU-second threshold: a running job is demoted almost at once, and a
    # new job (level 0) preempts it
    app, client, admin, reader = served(policy="las:1")
    client.post("/v1/clusters", headers=admin,
                json={"name": "c1", "nodes": [{"name": "n1", "gpu_type": "a100", "gpus": 4}]})
    (first,) = submit(client, admin, 1)
    engine = app.state.service.engine
    js = until(lambda: engine.seq >= 1 and engine.by_id[first], "the first start")
    until(lambda: engine.clock.now() - js.seg_start > 1.0, "the first job's demotion")
    submit(client, admin, 1)
    label = engine.policy.label
    text = scrape_until(client, reader, lambda t: value(
        t, "autoflow_decisions_total", policy=label, action="preempt") >= 1, "a preemption")
    assert value(text, "autoflow_preemption_victims_count") >= 1
    assert value(text, "autoflow_preemption_victims_sum") >= 1
    assert value(text, "autoflow_preemption_attempts_total") >= 1
    assert value(text, "autoflow_decisions_total", policy=label, action="preempt") >= 1
    assert value(text, "autoflow_policy_switches_total") == 0

    r = client.put("/v1/policy", headers=admin, json={"policy": "fifo"})
    assert r.status_code == 200, r.text
    text = client.get("/metrics", headers=reader).text
    assert value(text, "autoflow_policy_switches_total") == 1
    fifo = app.state.service.engine.policy.label
    assert value(text, "autoflow_policy_info", policy="fifo", label=fifo) == 1
    assert ("autoflow_policy_info", (("label", label), ("policy", "las:1"))) not in samples(text)


def test_each_app_has_its_own_registry(served):
    _app_a, client_a, admin_a, reader_a = served("a")
    _app_b, client_b, _admin_b, reader_b = served("b")
    client_a.post("/v1/clusters", headers=admin_a, json=CLUSTER)
    submit(client_a, admin_a, 1)
    a = scrape_until(client_a, reader_a, starts(1), "the start")
    b = client_b.get("/metrics", headers=reader_b).text
    assert value(a, "autoflow_schedule_attempts_total", result="scheduled") == 1
    assert value(b, "autoflow_schedule_attempts_total", result="scheduled") == 0
    assert value(b, "autoflow_gpus_total") == 0


def test_a_failing_pass_counts_error_attempts(served):
    app, client, admin, reader = served()
    client.post("/v1/clusters", headers=admin, json=CLUSTER)
    engine = app.state.service.engine

    def broken(ctx):
        raise RuntimeError("a policy bug")

    with engine.lock:
        engine.core.policy.schedule = broken
    submit(client, admin, 2)
    # the pass counts its attempts as errors; the timer thread then reports the error
    text = scrape_until(client, reader, lambda t: value(
        t, "autoflow_schedule_attempts_total", result="error") >= 1 and value(
        t, "autoflow_scheduler_errors_total") >= 1, "an error attempt, reported")
    assert value(text, "autoflow_schedule_attempts_total", result="scheduled") == 0
    assert value(text, "autoflow_pending_jobs", queue="active") == 2
