"""The Kubernetes scheduler extender (``autoflow.service.k8s``).

Payloads are written as kube-scheduler marshals its Go types
(``k8s.io/kube-scheduler/extender/v1``: no JSON tags, so capitalised keys; nil pointers
and maps as ``null``), with ordinary Kubernetes JSON inside (``metadata``, ``spec``,
``status``; a ``v1.NodeList``'s ``items``). Filter answers are checked against
``autoflow.feasibility`` on the engine's live state; bind against a real HTTP server on
127.0.0.1 playing the API server; the mutual-TLS listener against a real
``autoflow serve`` process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from servicekit import until

from autoflow.feasibility import node_mask
from autoflow.job import Job
from autoflow.service.app import ServeConfig, create_app
from autoflow.service.devcerts import make_certs
from autoflow.service.k8s import BadPayload, extender_app, parse_quantity, scale_scores

NODES = [
    {"name": "a100-0", "gpu_type": "A100", "gpus": 8, "cpu_milli": 64_000, "memory_mib": 512_000},
    {"name": "a100-1", "gpu_type": "A100", "gpus": 4, "cpu_milli": 32_000, "memory_mib": 256_000},
    {"name": "v100-0", "gpu_type": "V100", "gpus": 4, "cpu_milli": 16_000, "memory_mib": 65_536},
    {"name": "t4-0", "gpu_type": "T4", "gpus": 1, "cpu_milli": 8_000, "memory_mib": 16_384},
    {"name": "cpu-0", "gpu_type": "cpu", "gpus": 0, "cpu_milli": 32_000, "memory_mib": 131_072},
]
NAMES = [n["name"] for n in NODES]


# -- payloads as kube-scheduler sends them -------------------------------------------------
def pod(name: str, gpus=None, cpu=None, mem=None, *, milli=None, types=None, kind=None,
        ns="team-a", uid=None, use_limits=False) -> dict:
    res: dict = {}
    if gpus is not None:
        res["nvidia.com/gpu"] = str(gpus)
    if cpu is not None:
        res["cpu"] = cpu
    if mem is not None:
        res["memory"] = mem
    ann = {}
    if milli is not None:
        ann["autoflow.io/gpu-milli"] = str(milli)
    if types is not None:
        ann["autoflow.io/gpu-types"] = types
    if kind is not None:
        ann["autoflow.io/kind"] = kind
    resources = {"limits": res} if use_limits else {"requests": res, "limits": {}}
    return {
        "metadata": {"name": name, "namespace": ns, "uid": uid or str(uuid.uuid4()),
                     "creationTimestamp": "2024-05-01T10:00:00Z", "annotations": ann,
                     "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "pytorch:2", "resources": resources}],
                 "restartPolicy": "Never", "schedulerName": "default-scheduler",
                 "priority": 0},
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }


def node_obj(name: str, gpus: str, cpu: str, mem: str, product: str | None = None) -> dict:
    labels = {"kubernetes.io/hostname": name}
    if product:
        labels["nvidia.com/gpu.product"] = product
    alloc = {"cpu": cpu, "memory": mem, "pods": "110", "nvidia.com/gpu": gpus}
    return {"metadata": {"name": name, "labels": labels, "uid": str(uuid.uuid4())},
            "spec": {"podCIDR": "10.0.0.0/24"},
            "status": {"capacity": dict(alloc), "allocatable": alloc,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def args_names(p: dict, names) -> dict:
    """ExtenderArgs with nodeCacheCapable: true."""
    return {"Pod": p, "Nodes": None, "NodeNames": list(names)}


def args_nodes(p: dict, items) -> dict:
    """ExtenderArgs with nodeCacheCapable: false (a v1.NodeList)."""
    return {"Pod": p, "Nodes": {"metadata": {"resourceVersion": "42"}, "items": list(items)},
            "NodeNames": None}


def bind_args(p: dict, node: str) -> dict:
    m = p["metadata"]
    return {"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"],
            "Node": node}


# -- the service ----------------------------------------------------------------------------
class Svc:
    def __init__(self, tmp_path, **cfg):
        self.app = create_app(ServeConfig(db=f"sqlite:///{tmp_path}/k8s.db", **cfg))
        self.service = self.app.state.service
        self.engine = self.service.engine

    def __enter__(self):
        self.api = TestClient(self.app).__enter__()
        self.ext = TestClient(extender_app(self.app))
        admin = self.service.store.create_token("ops", "admin")
        self.auth = {"Authorization": f"Bearer {admin}"}
        r = self.api.post("/v1/clusters", json={"name": "lab", "nodes": NODES},
                          headers=self.auth)
        assert r.status_code == 201, r.text
        return self

    def __exit__(self, *exc):
        self.api.__exit__(*exc)

    def filter(self, body) -> dict:
        r = self.ext.post("/k8s/filter", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def bind(self, p: dict, node: str) -> dict:
        self.filter(args_names(p, [node]))  # kube-scheduler filters before it binds
        r = self.ext.post("/k8s/bind", json=bind_args(p, node))
        assert r.status_code == 200, r.text
        return r.json()

    def job(self, p: dict) -> dict:
        m = p["metadata"]
        jid = f"k8s.{m['namespace']}.{m['name']}.{m['uid'][:8]}"
        r = self.api.get(f"/v1/jobs/{jid}", headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def svc(tmp_path):
    with Svc(tmp_path) as s:
        yield s


def load(s: Svc) -> None:
    """Pods bound through the extender: A100-0 keeps 2 idle GPUs, T4-0 half a GPU,
    V100-0 2 idle GPUs and 4 cores, cpu-0 2 cores."""
    for p, node in ((pod("big", 6), "a100-0"), (pod("half", milli=500), "t4-0"),
                    (pod("v2", 2, "12"), "v100-0"), (pod("cpuonly", cpu="30000m"), "cpu-0")):
        assert s.bind(p, node) == {"Error": ""}


# -- quantities -------------------------------------------------------------------------
@pytest.mark.parametrize("text,value", [
    ("500m", Decimal("0.5")), ("2", Decimal(2)), ("1.5", Decimal("1.5")),
    ("4Gi", Decimal(4 << 30)), ("512Mi", Decimal(512 << 20)), ("1G", Decimal(10**9)),
    ("1e3", Decimal(1000)), ("100k", Decimal(100_000)), (".5", Decimal("0.5")),
    ("250u", Decimal("0.00025")), (3, Decimal(3)), ("+1Ki", Decimal(1024)),
])
def test_quantities(text, value):
    assert parse_quantity(text, "x") == value


@pytest.mark.parametrize("bad", ["abc", "-1", "1.2.3", "5 Gi", "", "1Zi", "1e99999", True,
                                 None, [1], "1" * 80, float("nan"), "1e999"])
def test_bad_quantities_name_the_field(bad):
    with pytest.raises(BadPayload, match=r"^spec\.cpu: "):
        parse_quantity(bad, "spec.cpu")


def test_scale_scores():
    assert scale_scores({}) == {}
    assert scale_scores({"a": 5.0, "b": 5.0}) == {"a": 10, "b": 10}
    assert scale_scores({"a": 0.0, "b": 100.0, "c": 25.0}) == {"a": 10, "b": 1, "c": 8}


# -- filter --------------------------------------------------------------------------------
PROBES = [  # (pod kwargs, the same as autoflow job fields)
    ({"gpus": 1}, {"num_gpus": 1}),
    ({"gpus": 2}, {"num_gpus": 2}),
    ({"gpus": 3}, {"num_gpus": 3}),
    ({"gpus": 4}, {"num_gpus": 4}),
    ({"gpus": 8}, {"num_gpus": 8}),
    ({"gpus": 200}, {"num_gpus": 200}),
    ({"milli": 500}, {"num_gpus": 1, "gpu_milli": 500}),
    ({"gpus": 1, "milli": 600}, {"num_gpus": 1, "gpu_milli": 600}),
    ({"milli": 300, "types": "T4"}, {"num_gpus": 1, "gpu_milli": 300, "gpu_types": ("T4",)}),
    ({"gpus": 2, "types": "A100"}, {"num_gpus": 2, "gpu_types": ("A100",)}),
    ({"gpus": 1, "types": "V100,T4"}, {"num_gpus": 1, "gpu_types": ("T4", "V100")}),
    ({"gpus": 1, "types": "H100"}, {"num_gpus": 1, "gpu_types": ("H100",)}),
    ({"gpus": 1, "cpu": "5"}, {"num_gpus": 1, "cpu_milli": 5000}),
    ({"gpus": 1, "mem": "300Gi"}, {"num_gpus": 1, "memory_mib": 300 * 1024}),
    ({"cpu": "4"}, {"num_gpus": 0, "cpu_milli": 4000}),
    ({"cpu": "2500m", "mem": "1G"}, {"num_gpus": 0, "cpu_milli": 2500, "memory_mib": 954}),
    ({"cpu": "100"}, {"num_gpus": 0, "cpu_milli": 100_000}),
    ({"gpus": 2, "cpu": "4", "use_limits": True}, {"num_gpus": 2, "cpu_milli": 4000}),
]


def test_filter_agrees_with_feasibility(svc):
    load(svc)
    candidates = [*NAMES, "ghost"]
    for kw, fields in PROBES:
        got = svc.filter(args_names(pod("probe", **kw), candidates))
        eng = svc.engine
        with eng.lock:
            st = eng.core.state
            mask = node_mask(st, st.compile(Job("probe", 0.0, None, **fields)))
        want = [n for n in NAMES if mask[eng.node_index[n]]]
        assert got["NodeNames"] == want, (kw, got)
        assert got["Nodes"] is None and got["Error"] == ""
        failed = {**got["FailedNodes"], **got["FailedAndUnresolvableNodes"]}
        assert sorted(failed) == sorted(set(candidates) - set(want)), (kw, got)
        assert "not registered" in got["FailedAndUnresolvableNodes"]["ghost"]

    # the same answers, by hand
    def passed(**kw):
        return svc.filter(args_names(pod("p", **kw), NAMES))["NodeNames"]

    assert passed(gpus=2) == ["a100-0", "a100-1", "v100-0"]
    assert passed(gpus=3) == ["a100-1"]
    assert passed(milli=600) == ["a100-0", "a100-1", "v100-0"]  # T4 has 500/1000 left
    assert passed(milli=500, types="T4") == ["t4-0"]
    assert passed(gpus=1, cpu="5") == ["a100-0", "a100-1"]  # V100-0 has 4 cores left
    assert passed(cpu="4") == ["a100-0", "a100-1", "v100-0", "t4-0"]  # cpu-0 has 2 left
    assert passed(gpus=1, types="H100") == []

    r = svc.filter(args_names(pod("p", 3), ["a100-0", "t4-0"]))
    # a100-0 could take it once jobs leave (preemption may help); t4-0 never can
    assert r["FailedNodes"] == {"a100-0": "autoflow: needs 3 idle GPU(s), the node has 2 "
                                          "idle of 8"}
    assert r["FailedAndUnresolvableNodes"]["t4-0"].startswith("autoflow: never fits: needs 3")


def test_filter_on_a_cordoned_node(svc):
    r = svc.api.post("/v1/nodes/a100-1/cordon", headers=svc.auth)
    assert r.status_code == 200, r.text
    got = svc.filter(args_names(pod("p", 1), ["a100-0", "a100-1"]))
    assert got["NodeNames"] == ["a100-0"]
    assert got["FailedAndUnresolvableNodes"] == {"a100-1": "autoflow: node a100-1 is cordoned"}


def test_filter_with_full_nodes(svc):
    load(svc)
    items = [
        node_obj("a100-0", "8", "64", "500Gi", "NVIDIA-A100-SXM4-80GB"),  # registered: 2 idle
        node_obj("a100-1", "4", "32", "250Gi"),  # registered: idle
        node_obj("k8s-h100", "8", "96", "1Ti", "H100"),  # not registered: from the object
        node_obj("k8s-small", "1", "2", "8Gi", "H100"),  # not registered, too small
    ]
    got = svc.filter(args_nodes(pod("p", 4, "8", types="A100,H100"), items))
    assert got["NodeNames"] is None and got["Error"] == ""
    assert got["Nodes"]["items"] == [items[1], items[2]]  # the objects, as sent
    assert got["FailedNodes"] == {"a100-0": "autoflow: needs 4 idle GPU(s), the node has 2 "
                                            "idle of 8"}
    small = got["FailedAndUnresolvableNodes"]["k8s-small"]
    assert "needs 4 idle GPU(s), the node has 1" in small and "needs cpu 8000m" in small
    # Go decodes keys case-insensitively: a list written with "Items" reads the same
    body = {"pod": pod("p", 4, "8", types="A100,H100"), "nodes": {"Items": items}}
    assert [n["metadata"]["name"] for n in svc.filter(body)["Nodes"]["items"]] == \
        ["a100-1", "k8s-h100"]
    # an unregistered node without the GPU type label has type "unknown"
    got = svc.filter(args_nodes(pod("p", 1, types="H100"), [node_obj("bare", "8", "8", "8Gi")]))
    assert "GPU type unknown is not one of H100" in got["FailedAndUnresolvableNodes"]["bare"]


# -- prioritize ------------------------------------------------------------------------------
def test_prioritize_scores_best_fit(svc):
    load(svc)
    r = svc.ext.post("/k8s/prioritize", json=args_names(pod("p", 1), [*NAMES, "ghost"]))
    assert r.status_code == 200, r.text
    got = r.json()
    assert [h["Host"] for h in got] == [*NAMES, "ghost"]
    scores = {h["Host"]: h["Score"] for h in got}
    assert all(isinstance(s, int) and 0 <= s <= 10 for s in scores.values())
    # best-fit: the least free share after placement scores highest (A100-0 and V100-0
    # keep one idle GPU, A100-1 three); T4-0 (half used), cpu-0 and ghost do not fit
    assert scores == {"a100-0": 10, "v100-0": 10, "a100-1": 1, "t4-0": 0, "cpu-0": 0,
                      "ghost": 0}
    # a share: the fullest GPU that fits (the T4's half-used one) is best
    got = svc.ext.post("/k8s/prioritize", json=args_names(pod("s", milli=400), NAMES)).json()
    scores = {h["Host"]: h["Score"] for h in got}
    assert scores["t4-0"] == 10 and scores["cpu-0"] == 0
    assert all(1 <= scores[n] < 10 for n in ("a100-0", "a100-1", "v100-0"))
    # the placer's order, whatever the cluster: scores fall as the residual grows
    eng = svc.engine
    with eng.lock:
        st = eng.core.state
        r2 = st.compile(Job("x", 0.0, None, 1))
        idx = np.array([eng.node_index[n] for n in ("a100-0", "a100-1", "v100-0")])
        raw = eng.policy.placer.node_scores(st, r2, idx)
    assert list(raw) == [1000.0, 3000.0, 1000.0]


# -- bind ---------------------------------------------------------------------------------------
class FakeApiServer:
    """A Kubernetes API server stand-in on 127.0.0.1: records every request; answers a
    Binding POST with 201 (or ``fail_bind`` with its status) and GETs pods it holds."""

    def __init__(self):
        self.requests: list[dict] = []
        self.pods: dict[str, dict] = {}
        self.fail_bind: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> dict:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                req = {"method": self.command, "path": self.path,
                       "headers": dict(self.headers), "body": body}
                outer.requests.append(req)
                return req

            def do_POST(self):
                req = self._record()
                name = self.path.split("/")[-2]
                if name in outer.fail_bind:
                    return self._answer(outer.fail_bind[name], {
                        "kind": "Status", "status": "Failure", "message": f"pod {name} is "
                        "being deleted", "code": outer.fail_bind[name]})
                return self._answer(201, {**req["body"], "status": "Success"})

            def do_GET(self):
                self._record()
                if self.path == "/api/v1/pods":  # a PodList
                    return self._answer(200, {"kind": "PodList", "apiVersion": "v1",
                                              "items": list(outer.pods.values())})
                name = self.path.rsplit("/", 1)[-1]
                if name in outer.pods:
                    return self._answer(200, outer.pods[name])
                return self._answer(404, {"kind": "Status", "message": f"pods {name!r} not "
                                          "found", "code": 404})

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_bind_records_the_job_and_posts_the_binding(tmp_path):
    token = tmp_path / "token"
    token.write_text("sekret-sa-token\n")
    with FakeApiServer() as kube, Svc(tmp_path, k8s_api=kube.url,
                                      k8s_token_file=str(token)) as s:
        p = pod("train-1", 2, "4", "16Gi", ns="ml")
        assert s.bind(p, "a100-1") == {"Error": ""}
        # the Binding, as kube-scheduler's default binder would have posted it
        (req,) = kube.requests
        assert req["method"] == "POST"
        assert req["path"] == "/api/v1/namespaces/ml/pods/train-1/binding"
        assert req["headers"]["Authorization"] == "Bearer sekret-sa-token"
        assert req["body"] == {"apiVersion": "v1", "kind": "Binding",
                               "metadata": {"name": "train-1", "namespace": "ml",
                                            "uid": p["metadata"]["uid"]},
                               "target": {"apiVersion": "v1", "kind": "Node",
                                          "name": "a100-1"}}
        # autoflow runs it there: the store, the engine and the API agree
        job = s.job(p)
        assert job["state"] == "running" and job["user"] == "ml"
        assert job["placement"]["nodes"][0]["node"] == "a100-1"
        assert job["num_gpus"] == 2 and job["cpu_milli"] == 4000
        assert job["memory_mib"] == 16 * 1024
        i = s.engine.node_index["a100-1"]
        assert int(s.engine.core.state.whole_free[i]) == 2
        assert int(s.engine.core.state.cpu_free[i]) == 28_000
        events = s.api.get(f"/v1/jobs/{job['job_id']}/events", headers=s.auth).json()
        assert [e["event"] for e in events["events"]] == ["bound"]
        # kube-scheduler retrying the same bind changes nothing
        r = s.ext.post("/k8s/bind", json=bind_args(p, "a100-1")).json()
        assert r == {"Error": ""} and int(s.engine.core.state.whole_free[i]) == 2
        assert len(kube.requests) == 1
        # now a filter sees what was bound
        got = s.filter(args_names(pod("next", 3), ["a100-1"]))
        assert got["NodeNames"] == [] and "2 idle of 4" in got["FailedNodes"]["a100-1"]

        # a pod no filter call named: fetched from the API server, then bound
        q = pod("fetched", 1, ns="ml")
        kube.pods["fetched"] = q
        r = s.ext.post("/k8s/bind", json=bind_args(q, "v100-0")).json()
        assert r == {"Error": ""}
        assert [x["method"] + " " + x["path"] for x in kube.requests[1:]] == [
            "GET /api/v1/namespaces/ml/pods/fetched",
            "POST /api/v1/namespaces/ml/pods/fetched/binding"]
        assert s.job(q)["placement"]["nodes"][0]["node"] == "v100-0"

        # the API server refuses the Binding: the error is kube-scheduler's, and the
        # place autoflow reserved is freed (the job failed)
        f = pod("doomed", 4, ns="ml")
        kube.fail_bind["doomed"] = 409
        s.filter(args_names(f, ["a100-0"]))
        r = s.ext.post("/k8s/bind", json=bind_args(f, "a100-0")).json()
        assert "HTTP 409" in r["Error"] and "being deleted" in r["Error"]
        assert s.job(f)["state"] == "failed"
        assert int(s.engine.core.state.whole_free[s.engine.node_index["a100-0"]]) == 8


def test_pods_that_end_come_back_as_events(tmp_path):
    """With --k8s-api, the pods autoflow bound are followed: Succeeded -> finished,
    Failed -> failed with the reason, deleted -> cancelled; their GPUs free; pods still
    running change nothing; an API server that cannot be reached loses nothing."""
    with FakeApiServer() as kube, Svc(tmp_path, k8s_api=kube.url) as s:
        pods = {n: pod(n, 2, ns="ml") for n in ("ok", "bad", "gone", "busy")}
        for n, p in pods.items():
            kube.pods[n] = p
            assert s.bind(p, "a100-0") == {"Error": ""}
        sync = s.service.workers[0]
        i = s.engine.node_index["a100-0"]
        assert int(s.engine.core.state.whole_free[i]) == 0
        assert sync.sync_once() == {"finished": 0, "failed": 0, "cancelled": 0}
        kube.pods["ok"] = {**pods["ok"], "status": {"phase": "Succeeded"}}
        kube.pods["bad"] = {**pods["bad"], "status": {"phase": "Failed", "containerStatuses": [
            {"name": "main", "state": {"terminated": {"reason": "OOMKilled",
                                                      "exitCode": 137}}}]}}
        del kube.pods["gone"]
        kube.pods["busy"] = {**pods["busy"], "status": {"phase": "Running"}}
        assert sync.sync_once() == {"finished": 1, "failed": 1, "cancelled": 1}
        assert s.job(pods["ok"])["state"] == "succeeded"
        bad = s.job(pods["bad"])
        assert bad["state"] == "failed" and "OOMKilled (exit code 137)" in bad["reason"]
        gone = s.job(pods["gone"])
        assert gone["state"] == "cancelled" and gone["reason"] == "pod deleted"
        assert s.job(pods["busy"])["state"] == "running"
        assert int(s.engine.core.state.whole_free[i]) == 6  # three pods' GPUs are free
        events = s.api.get(f"/v1/jobs/{bad['job_id']}/events", headers=s.auth).json()
        assert [e["event"] for e in events["events"]] == ["bound", "failed"]
        assert events["events"][1]["detail"]["source"] == "kubernetes"
        assert sync.sync_once() == {"finished": 0, "failed": 0, "cancelled": 0}  # once
        # the API server cannot be reached: the round fails with its error (logged by
        # the sync thread), and nothing changes
        kube.server.shutdown()
        kube.server.server_close()
        from autoflow.service.k8s import KubeApiError

        with pytest.raises(KubeApiError):
            sync.sync_once()
        assert s.job(pods["busy"])["state"] == "running"


def test_the_pod_sync_runs_on_its_own(tmp_path):
    with FakeApiServer() as kube, Svc(tmp_path, k8s_api=kube.url, k8s_pod_sync_s=0.05) as s:
        p = pod("quick", 1, ns="ml")
        kube.pods["quick"] = p
        assert s.bind(p, "a100-0") == {"Error": ""}
        kube.pods["quick"] = {**p, "status": {"phase": "Succeeded"}}
        until(lambda: s.job(p)["state"] == "succeeded", "the pod sync")


def test_bind_without_an_api_server(svc):
    p = pod("solo", milli=250, cpu="1")
    assert svc.bind(p, "t4-0") == {"Error": ""}
    job = svc.job(p)
    assert job["state"] == "running" and job["gpu_milli"] == 250
    assert job["placement"]["nodes"][0] == {"node": "t4-0", "gpus": 0.25,
                                            "gpu_indices": [0], "gpu_milli": 250}
    # does not fit now: refused, nothing recorded
    big = pod("big", milli=800)
    svc.filter(args_names(big, ["t4-0"]))
    r = svc.ext.post("/k8s/bind", json=bind_args(big, "t4-0")).json()
    assert r["Error"].startswith("autoflow: pod team-a/big does not fit on node t4-0 now: "
                                 "needs 800/1000 of one GPU")
    assert svc.service.store.job(f"k8s.team-a.big.{big['metadata']['uid'][:8]}") is None
    # a pod autoflow never saw, with no API server to ask
    r = svc.ext.post("/k8s/bind", json=bind_args(pod("unseen", 1), "a100-0")).json()
    assert r["Error"].startswith("PodUID: pod team-a/unseen")
    # a UID that is another pod's
    other = bind_args(p, "t4-0") | {"PodName": "impostor"}
    assert svc.ext.post("/k8s/bind", json=other).json()["Error"].startswith("PodUID: ")


def test_bound_pods_survive_a_restart(tmp_path):
    p = pod("keep", 2)
    with Svc(tmp_path) as s:
        assert s.bind(p, "a100-1") == {"Error": ""}
    app = create_app(ServeConfig(db=f"sqlite:///{tmp_path}/k8s.db"))
    with TestClient(app):
        eng = app.state.service.engine
        assert int(eng.core.state.whole_free[eng.node_index["a100-1"]]) == 2
        ext = TestClient(extender_app(app))
        got = ext.post("/k8s/filter", json=args_names(pod("p", 3), ["a100-1"])).json()
        assert got["NodeNames"] == []


# -- preempt --------------------------------------------------------------------------------------


def test_preempt_keeps_the_victims_las_agrees_with(tmp_path):
    # LAS with queues cut at 1 and 2 GPU-seconds, on a clock 1,000x faster than the wall:
    # bound training pods reach the lowest queue within milliseconds
    with Svc(tmp_path, policy="las:1/2", time_scale=1000.0) as s:
        v1, v2 = pod("v1", 2), pod("v2", 2)
        inf = pod("serve", 4, kind="inference")
        for p, node in ((v1, "a100-1"), (v2, "a100-1"), (inf, "v100-0")):
            assert s.bind(p, node) == {"Error": ""}
        eng = s.engine

        def js(p):
            return eng.by_id[s.job(p)["job_id"]]

        until(lambda: eng.policy.queue_of(js(v1)) == 2 and eng.policy.queue_of(js(v2)) == 2,
              "LAS demotions")
        with eng.lock:  # the policy's preemption order: the worst-ranked first
            now = eng.clock.now()
            worst = max((v1, v2), key=lambda p: eng.policy.preempt_key(js(p), now))
        uid = {p["metadata"]["name"]: p["metadata"]["uid"] for p in (v1, v2, inf)}
        outsider = str(uuid.uuid4())  # a pod autoflow did not place (no GPUs, say)

        def meta(*names):
            return {"Pods": [{"UID": uid.get(n, n)} for n in names], "NumPDBViolations": 0}

        body = {"Pod": pod("urgent", 2), "NodeNameToVictims": None,
                "NodeNameToMetaVictims": {"a100-1": meta("v1", "v2", outsider),
                                          "v100-0": meta("serve"),
                                          "ghost": meta(outsider)}}
        r = s.ext.post("/k8s/preempt", json=body)
        assert r.status_code == 200, r.text
        got = r.json()["NodeNameToMetaVictims"]
        # a100-1: one of the two is enough, the worst-ranked; the outsider passes through;
        # v100-0: an inference job is never preempted; ghost: not autoflow's node
        assert set(got) == {"a100-1"}
        assert got["a100-1"] == {"Pods": [{"UID": outsider}, {"UID": worst["metadata"]["uid"]}],
                                 "NumPDBViolations": 0}
        # a pod that needs the whole node: both
        body["Pod"] = pod("urgent4", 4)
        got = s.ext.post("/k8s/preempt", json=body).json()["NodeNameToMetaVictims"]
        assert sorted(p["UID"] for p in got["a100-1"]["Pods"]) == sorted(
            [outsider, uid["v1"], uid["v2"]])
        # a pod that would not fit even with them gone: no candidate
        body["Pod"] = pod("huge", 6)
        assert s.ext.post("/k8s/preempt", json=body).json() == {"NodeNameToMetaVictims": {}}

        # kube-scheduler without nodeCacheCapable sends whole pods: the same answers, and a
        # node autoflow does not manage is passed through
        full = {"Pod": pod("urgent", 2), "NodeNameToMetaVictims": None,
                "NodeNameToVictims": {"a100-1": {"Pods": [v1, v2], "NumPDBViolations": 0},
                                      "k8s-other": {"Pods": [pod("x", 1)],
                                                    "NumPDBViolations": 2}}}
        got = s.ext.post("/k8s/preempt", json=full).json()["NodeNameToMetaVictims"]
        assert got["a100-1"]["Pods"] == [{"UID": worst["metadata"]["uid"]}]
        assert got["k8s-other"]["NumPDBViolations"] == 2
        assert got["k8s-other"]["Pods"] == [{"UID": full["NodeNameToVictims"]["k8s-other"]
                                             ["Pods"][0]["metadata"]["uid"]}]


@pytest.mark.parametrize("policy", ["fifo", "las"])
def test_preempt_of_jobs_that_rank_ahead(tmp_path, policy):
    """fifo: an earlier job ranks ahead of a new pod; las: a job still in the first queue
    (under 1 GPU-hour) too. Neither policy would preempt it for the pod."""
    with Svc(tmp_path, policy=policy) as s:
        v = pod("v", 4)
        assert s.bind(v, "a100-1") == {"Error": ""}
        body = {"Pod": pod("late", 2), "NodeNameToMetaVictims": {
            "a100-1": {"Pods": [{"UID": v["metadata"]["uid"]}], "NumPDBViolations": 0}}}
        r = s.ext.post("/k8s/preempt", json=body)
        assert r.status_code == 200 and r.json() == {"NodeNameToMetaVictims": {}}


# -- bad payloads ----------------------------------------------------------------------------------
@pytest.mark.parametrize("body,field", [
    ({"Nodes": None, "NodeNames": ["a100-0"]}, "Pod: required"),
    ({"Pod": pod("p", 1), "Nodes": None, "NodeNames": None}, "Nodes / NodeNames"),
    ({"Pod": pod("p", 1), "NodeNames": "a100-0"}, "NodeNames: expected a JSON array"),
    ({"Pod": pod("p", 1), "NodeNames": [3]}, "NodeNames[0]: expected a string"),
    ({"Pod": pod("p", 1), "Nodes": {"items": [{"metadata": {}}]}},
     "Nodes.items[0].metadata.name: required"),
    ({"Pod": {"metadata": {}}, "NodeNames": []}, "Pod.metadata.name: required"),
    ({"Pod": pod("p", cpu="lots"), "NodeNames": []},
     "Pod.spec.containers[0].resources.requests['cpu']: 'lots' is not a Kubernetes quantity"),
    ({"Pod": pod("p", "1.5"), "NodeNames": []},
     "Pod.spec.containers[0].resources.requests['nvidia.com/gpu']: '1.5' is not a whole"),
    ({"Pod": pod("p", mem="-1Gi"), "NodeNames": []}, "requests['memory']: '-1Gi' is negative"),
    ({"Pod": pod("p", milli="half"), "NodeNames": []},
     "Pod.metadata.annotations['autoflow.io/gpu-milli']: must be a whole number"),
    ({"Pod": pod("p", 2, milli=500), "NodeNames": []},
     "Pod.metadata.annotations['autoflow.io/gpu-milli']: a GPU share is for one GPU"),
    ({"Pod": pod("p", 1, types=" , "), "NodeNames": []},
     "Pod.metadata.annotations['autoflow.io/gpu-types']"),
    ({"Pod": pod("p", 1, kind="batch"), "NodeNames": []},
     "Pod.metadata.annotations['autoflow.io/kind']: must be one of training, inference"),
    ({"Pod": pod("p", 1) | {"spec": {"containers": {"a": 1}}}, "NodeNames": []},
     "Pod.spec.containers: expected a JSON array"),
    ({"Pod": pod("p", 1), "Nodes": {"items": [node_obj("n", "x", "1", "1Gi")]}},
     "Nodes.items['n'].status.allocatable['nvidia.com/gpu']: 'x' is not"),
])
def test_bad_filter_payloads_name_the_field(svc, body, field):
    r = svc.ext.post("/k8s/filter", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert field in got["Error"], got
    assert got["NodeNames"] is None and got["Nodes"] is None


def test_bad_payloads_on_the_other_routes(svc):
    r = svc.ext.post("/k8s/prioritize", json={"Pod": pod("p", cpu="1x"), "NodeNames": []})
    assert r.status_code == 400 and "requests['cpu']" in r.json()["Error"]
    r = svc.ext.post("/k8s/preempt", json={"Pod": pod("p", 1)})
    assert r.status_code == 400 and "NodeNameToMetaVictims" in r.json()["Error"]
    r = svc.ext.post("/k8s/preempt", json={"Pod": pod("p", 1), "NodeNameToMetaVictims": {
        "a100-0": {"Pods": [{"UID": 7}], "NumPDBViolations": 0}}})
    assert r.status_code == 400
    assert "NodeNameToMetaVictims['a100-0'].Pods[0].UID" in r.json()["Error"]
    r = svc.ext.post("/k8s/bind", json={"PodNamespace": "x", "PodUID": "u", "Node": "n"})
    assert r.status_code == 200 and r.json()["Error"].startswith("PodName: required")
    r = svc.ext.post("/k8s/bind", json={"PodName": "p", "PodUID": "u", "Node": ["n"]})
    assert r.json()["Error"].startswith("Node: expected a string")
    for path in ("filter", "prioritize", "bind", "preempt"):
        r = svc.ext.post(f"/k8s/{path}", content=b"{not json")
        assert r.status_code == 400 and r.json()["Error"].startswith("request body: not JSON")
        r = svc.ext.post(f"/k8s/{path}", json=[1, 2])
        assert r.status_code == 400 and "expected a JSON object" in r.json()["Error"]


JUNK = [None, 0, -1, 1.5, 1e308, "", "x", "-5", "1e999", [], {}, [None], {"a": None}, True,
        "\u0000", "9" * 300]


def _mutate(obj, rng: random.Random):
    """A copy of ``obj`` with one value somewhere replaced by junk."""
    obj = json.loads(json.dumps(obj))
    paths = []

    def walk(o, path):
        paths.append(path)
        if isinstance(o, dict):
            for k, v in o.items():
                walk(v, (*path, k))
        elif isinstance(o, list):
            for i, v in enumerate(o):
                walk(v, (*path, i))

    walk(obj, ())
    path = rng.choice(paths[1:])
    target = obj
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = rng.choice(JUNK)
    return obj


def test_mutated_payloads_never_get_a_5xx(svc):
    load(svc)
    p = pod("fuzz", 2, "2", "1Gi", milli=None, types="A100,V100")
    bodies = {
        "filter": args_names(p, NAMES),
        "prioritize": args_nodes(p, [node_obj("a100-0", "8", "64", "1Ti", "A100"),
                                     node_obj("zz", "2", "4", "8Gi", "V100")]),
        "bind": bind_args(p, "a100-0"),
        "preempt": {"Pod": p, "NodeNameToMetaVictims": {
            "a100-0": {"Pods": [{"UID": "u1"}], "NumPDBViolations": 0}},
            "NodeNameToVictims": {"a100-1": {"Pods": [pod("w", 1)], "NumPDBViolations": 1}}},
    }
    rng = random.Random(16)
    statuses = set()
    for _ in range(300):
        path = rng.choice(sorted(bodies))
        r = svc.ext.post(f"/k8s/{path}", json=_mutate(bodies[path], rng))
        statuses.add(r.status_code)
        assert r.status_code < 500, (path, r.text)
        assert isinstance(r.json(), (dict, list))
    assert statuses <= {200, 400}


def test_the_api_port_does_not_serve_the_extender(svc):
    for path in ("filter", "prioritize", "bind", "preempt"):
        r = svc.api.post(f"/k8s/{path}", json=args_names(pod("p", 1), NAMES),
                         headers=svc.auth)
        assert r.status_code == 404


# -- mutual TLS, on a real `autoflow serve` -------------------------------------------------------
def _certs(tmp_path):
    return make_certs(tmp_path, rogue=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_extender_listener_requires_a_client_certificate(tmp_path):
    from autoflow.service.store import Store

    certs = _certs(tmp_path)
    db = f"sqlite:///{tmp_path}/tls.db"
    store = Store(db)
    admin = store.create_token("ops", "admin")
    store.close()
    port, ext_port = _free_port(), _free_port()
    cmd = [sys.executable, "-m", "autoflow", "serve", "--db", db, "--port", str(port),
           "--extender-port", str(ext_port), "--tls-cert", certs["server"][0],
           "--tls-key", certs["server"][1], "--tls-client-ca", certs["ca"],
           "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(1200):  # until it listens (a bound on the loop)
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode())
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        auth = {"Authorization": f"Bearer {admin}"}
        r = httpx.post(f"{base}/v1/clusters", json={"name": "lab", "nodes": NODES},
                       headers=auth)
        assert r.status_code == 201, r.text
        url = f"https://127.0.0.1:{ext_port}/k8s/filter"
        body = args_names(pod("p", 3), NAMES)

        def tls_client(cert):
            ctx = ssl.create_default_context(cafile=certs["ca"])
            if cert:
                ctx.load_cert_chain(*cert)
            return httpx.Client(verify=ctx)

        # kube-scheduler with its client certificate: answers
        with tls_client(certs["client"]) as c:
            r = c.post(url, json=body)
        assert r.status_code == 200, r.text
        assert r.json()["NodeNames"] == ["a100-0", "a100-1", "v100-0"]

        # no client certificate, or one from another CA: refused in the TLS handshake
        for cert in (None, certs["rogue-client"]):
            with tls_client(cert) as c, \
                    pytest.raises(httpx.TransportError):
                c.post(url, json=body)
            for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
                ctx = ssl.create_default_context(cafile=certs["ca"])
                ctx.maximum_version = version
                if cert:
                    ctx.load_cert_chain(*cert)
                with socket.create_connection(("127.0.0.1", ext_port)) as raw, \
                        pytest.raises((ssl.SSLError, ConnectionResetError)), \
                        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    # TLS 1.3 finishes the client's side first: the server's refusal
                    # arrives as an alert on the first read
                    tls.sendall(b"POST /k8s/filter HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Length: 2\r\n\r\n{}")
                    assert tls.recv(1024) == b"", "the server answered"
                    raise ConnectionResetError("closed without an answer")

        # the API port has no extender routes, token or not
        for headers in ({}, auth):
            assert httpx.post(f"{base}/k8s/filter", json=body, headers=headers
                              ).status_code == 404
        # and the extender listener has no API routes
        with tls_client(certs["client"]) as c:
            assert c.get(f"https://127.0.0.1:{ext_port}/v1/nodes", headers=auth
                         ).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read().decode()


@pytest.mark.parametrize("flags,msg", [
    (["--extender-port", "9"], "--extender-port needs --tls-cert"),
    (["--tls-cert", "x.pem"], "--tls-cert is for the extender's listener"),
    (["--k8s-api", "ftp://x"], "--k8s-api: expected an http(s):// URL"),
    (["--k8s-token-file", "/etc/hostname"], "are for --k8s-api"),
])
def test_serve_extender_flags_are_checked(tmp_path, flags, msg):
    r = subprocess.run([sys.executable, "-m", "autoflow", "serve", "--db",
                        f"sqlite:///{tmp_path}/f.db", *flags], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 2
    assert msg in " ".join(r.stderr.split()), r.stderr


def test_the_example_scheduler_configuration_matches_the_routes():
    import pathlib

    import yaml

    root = pathlib.Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "deploy/k8s/kube-scheduler-config.yaml").read_text())
    assert cfg["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert cfg["kind"] == "KubeSchedulerConfiguration"
    (ext,) = cfg["extenders"]
    assert ext["urlPrefix"].startswith("https://") and ext["urlPrefix"].endswith("/k8s")
    routes = {r.path for r in extender_app(create_app(ServeConfig(db="sqlite://"))).routes}
    for verb in ("filterVerb", "prioritizeVerb", "preemptVerb", "bindVerb"):
        assert f"/k8s/{ext[verb]}" in routes
    assert ext["nodeCacheCapable"] is True and ext["enableHTTPS"] is True
    assert {"name": "nvidia.com/gpu", "ignoredByScheduler": False} in ext["managedResources"]
    assert set(ext["tlsConfig"]) >= {"certFile", "keyFile", "caFile"}
    assert isinstance(ext["ignorable"], bool) and 1 <= ext["weight"] <= 100
