"""The Kubernetes extender's latency over mutual TLS (the figures in
benchmarks/RESULTS.md, "Service: Kubernetes extender and what-if costs").

    python benchmarks/extender_load.py [--nodes 1000] [--pods 100]

A real ``autoflow serve`` with its extender listener (certificates made for the run,
``autoflow.service.devcerts``) and ``--nodes`` registered 8-GPU nodes. One client, as
kube-scheduler drives an extender: for each pod, in turn, ``filter`` (``NodeNames`` of
every node, nodeCacheCapable), ``prioritize`` on the nodes that passed, ``bind`` to the
best. Reported: pods/s and the milliseconds of each call. Twice: with ``TCP_NODELAY`` on
the client's socket (Go's net package, hence kube-scheduler, sets it) and without (a
client that writes a request in two segments then waits for the server's delayed ACK).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pod_json(name: str, gpus: int) -> dict:
    return {"metadata": {"name": name, "namespace": "bench", "uid": str(uuid.uuid4())},
            "spec": {"containers": [{"name": "main", "resources": {
                "requests": {"nvidia.com/gpu": str(gpus)}}}]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=100)
    args = ap.parse_args()
    os.environ.setdefault("AUTOFLOW_HOME", tempfile.mkdtemp(prefix="af-home-"))
    from autoflow.service.devcerts import make_certs
    from autoflow.service.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="af-ext-"))
    certs = make_certs(tmp)
    db = f"sqlite:///{tmp}/ext.db"
    store = Store(db)
    token = store.create_token("bench", "admin")
    store.close()
    port, ext = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "autoflow", "serve", "--db", db,
                             "--port", str(port), "--extender-port", str(ext),
                             "--tls-cert", certs["server"][0], "--tls-key", certs["server"][1],
                             "--tls-client-ca", certs["ca"], "--log-level", "warning"])
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        names = [f"n{i}" for i in range(args.nodes)]
        req = urllib.request.Request(
            f"{base}/v1/clusters", method="POST",
            data=json.dumps({"name": "bench", "nodes": [
                {"name": n, "gpu_type": "a100", "gpus": 8} for n in names]}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=60)
        ctx = ssl.create_default_context(cafile=certs["ca"])
        ctx.load_cert_chain(*certs["client"])
        print(f"extender over mutual TLS, {args.nodes:,} nodes, {args.pods} pods, one client")
        for nodelay in (True, False):
            c = http.client.HTTPSConnection("127.0.0.1", ext, context=ctx)
            c.connect()
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))

            def post(path: str, body: dict, c=c):
                c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                if r.status != 200:
                    raise RuntimeError(f"{path}: {r.status} {data[:200]!r}")
                return json.loads(data)

            spent = {"filter": 0.0, "prioritize": 0.0, "bind": 0.0}
            t0 = time.perf_counter()
            for i in range(args.pods):
                p = pod_json(f"p{int(nodelay)}-{i}", 1 + i % 4)
                t = time.perf_counter()
                ok = post("/k8s/filter", {"Pod": p, "Nodes": None, "NodeNames": names})
                t1 = time.perf_counter()
                scores = post("/k8s/prioritize", {"Pod": p, "Nodes": None,
                                                  "NodeNames": ok["NodeNames"]})
                t2 = time.perf_counter()
                best = max(scores, key=lambda h: h["Score"])["Host"]
                m = p["metadata"]
                b = post("/k8s/bind", {"PodName": m["name"], "PodNamespace": m["namespace"],
                                       "PodUID": m["uid"], "Node": best})
                t3 = time.perf_counter()
                if b.get("Error"):
                    raise RuntimeError(f"bind: {b['Error']}")
                spent["filter"] += t1 - t
                spent["prioritize"] += t2 - t1
                spent["bind"] += t3 - t2
            wall = time.perf_counter() - t0
            c.close()
            print(f"  TCP_NODELAY {'on ' if nodelay else 'off'}: {args.pods / wall:6.1f} pods/s "
                  f"({wall / args.pods * 1000:.1f} ms a pod: "
                  + ", ".join(f"{k} {v / args.pods * 1000:.1f} ms" for k, v in spent.items())
                  + ")", flush=True)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
