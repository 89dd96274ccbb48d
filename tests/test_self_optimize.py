"""``autoflow serve --self-optimize`` (issue 20): a running service serves the model
registry's champion and follows its promotions and rollbacks (a real server on
127.0.0.1, the registry in the service's own SQLite store, promotions by the CLI)."""

from __future__ import annotations

import subprocess
import sys

import httpx
from modelkit import always
from servicekit import Server, make_token, until

from autoflow.loop.registry import Registry

NODES = [{"name": "n0", "gpu_type": "a100", "gpus": 4, "cpu_milli": 64000,
          "memory_mib": 512000}]


def _models(db: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoflow", "models", *args, "--db", db],
                          capture_output=True, text=True, check=False)


def test_the_service_follows_the_champion(tmp_path):
    db = f"sqlite:///{tmp_path}/svc.db"
    reg = Registry(db)
    first = reg.register(always("las", tmp_path / "las"), kind="adaptive", name="las-only")
    second = reg.register(always("fifo", tmp_path / "fifo"), kind="adaptive", name="fifo-only")
    reg.promote(first, reason="the first champion")
    reg.close()
    srv = Server(db, tmp_path / "serve.log", "--policy", "fifo", "--self-optimize",
                 "--self-optimize-interval", "0.2").start()
    try:
        h = {"Authorization": f"Bearer {make_token(db, 'admin')}"}
        c = httpx.Client(base_url=srv.url, headers=h, timeout=30)

        def serving() -> dict:
            return c.get("/v1/policy").json()

        # the champion serves from the start, its hash in the policy history
        p = serving()
        assert p["policy"].startswith("rl:") and first in p["policy"]
        assert p["history"][0]["model_sha256"] == first
        assert p["history"][0]["token_name"] == "self-optimize"
        assert c.post("/v1/clusters", json={"name": "lab", "nodes": NODES}).status_code == 201
        job = c.post("/v1/jobs", json={"num_gpus": 1, "duration_estimate_s": 60}).json()
        until(lambda: c.get(f"/v1/jobs/{job['job_id']}").json()["state"] == "running",
              "the champion starts a job")

        # a promotion (the CLI, another process) is followed at the next read
        r = _models(db, "promote", second, "--reason", "test: fifo-only promoted")
        assert r.returncode == 0, r.stderr
        until(lambda: second in serving()["policy"], "the promoted champion serves")
        assert c.get(f"/v1/jobs/{job['job_id']}").json()["state"] == "running"  # stands
        assert serving()["history"][0]["model_sha256"] == second
        dash = c.get("/v1/dashboard").json()
        assert dash["policy"]["model_sha256"] == second
        metrics = c.get("/metrics").text
        switches = [line for line in metrics.splitlines()
                    if line.startswith("autoflow_policy_switches_total")]
        assert switches and float(switches[0].split()[-1]) >= 2

        # and a rollback
        r = _models(db, "rollback", "--reason", "test: back")
        assert r.returncode == 0, r.stderr
        until(lambda: first in serving()["policy"], "the rolled-back champion serves")
    finally:
        srv.stop()


def test_self_optimize_interval_is_checked(tmp_path):
    r = subprocess.run([sys.executable, "-m", "autoflow", "serve", "--db",
                        f"sqlite:///{tmp_path}/x.db", "--self-optimize",
                        "--self-optimize-interval", "0"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 2 and "--self-optimize-interval" in r.stderr
    assert "Traceback" not in r.stderr
