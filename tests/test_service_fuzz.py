"""Schemathesis over the service's OpenAPI spec, against the app in-process (ASGI).

Seeded (Hypothesis ``derandomize``: the same cases every run) and bounded: for every
operation, ``POSITIVE`` cases (valid by the spec) and ``NEGATIVE`` ones (that break it),
at least 1,000 in all, with an admin token, on a store with a registered cluster. No
answer may be a 5xx; a response that has a declared schema must conform to it, and its
content type must be the declared one. (Status codes are not checked against the spec:
FastAPI lists only 2xx and 422, not the 401/403/404/409/413 the API documents in prose.)

Long-polls are shortened to 50 ms (``wait``): waiting is tested in test_service_api.py.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import get_client
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from autoflow.service.app import ServeConfig, create_app

MIN_CASES = 1000
EXAMPLES = {GenerationMode.POSITIVE: 90, GenerationMode.NEGATIVE: 45}
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]


@pytest.fixture
def served(tmp_path):
    app = create_app(ServeConfig(db=f"sqlite:///{tmp_path}/fuzz.db", policy="las"))
    # Schemathesis's ASGI client runs the app's lifespan (the engine and its timers) once
    # and keeps it for the process; its calls below reach the same running app.
    with get_client(app) as client:
        token = app.state.service.store.create_token("fuzz", "admin")
        h = {"Authorization": f"Bearer {token}"}
        r = client.post("/v1/clusters", headers=h, json={"name": "lab", "nodes": [
            {"name": f"n{i}", "gpu_type": "a100" if i % 2 else "v100", "gpus": 8,
             "cpu_milli": 96000, "memory_mib": 768000} for i in range(4)]})
        assert r.status_code == 201
        for i in range(6):  # some state for the reads: jobs, decisions, events
            r = client.post("/v1/jobs", headers=h, json={"job_id": f"seed-{i}", "num_gpus": 2,
                                                         "duration_estimate_s": 600})
            assert r.status_code == 201
        yield app, h


def test_no_server_errors_over_the_openapi_spec(served):
    app, auth = served
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    total = 0
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) >= 15
    for op in ops:
        for mode, n in EXAMPLES.items():
            @hypothesis.settings(max_examples=n, derandomize=True, deadline=None,
                                 database=None, phases=[Phase.explicit, Phase.generate],
                                 suppress_health_check=list(HealthCheck))
            @hypothesis.given(case=op.as_strategy(generation_mode=mode))
            def one(case):
                nonlocal total
                total += 1
                if isinstance(case.query, dict) and "wait" in case.query:
                    w = case.query["wait"]
                    if isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0.05:
                        case.query["wait"] = 0.05
                resp = case.call(headers=dict(auth))
                case.validate_response(resp, checks=CHECKS, headers=dict(auth))

            try:
                one()
            except hypothesis.errors.Unsatisfiable:
                # no invalid input exists: no body, and parameters any string satisfies
                assert mode == GenerationMode.NEGATIVE and not op.body, op.label
            except Exception as e:
                e.add_note(f"operation: {op.label} ({mode.value})")
                raise
    print(f"schemathesis: {total} cases over {len(ops)} operations")
    assert total >= MIN_CASES, f"only {total} cases generated"
