"""``autoflow serve --executor ray`` (a real uvicorn subprocess) on an existing Ray
cluster (``--ray-address``) whose nodes carry ``autoflow-node:NAME``: started jobs run as
Ray tasks on their nodes; when a Ray node dies its jobs wait again and resume from their
checkpoints on the other node; every acknowledged job succeeds and the service's view of
the nodes agrees with Ray's afterwards."""

from __future__ import annotations

import os

import httpx
import pytest
from raykit import need_ray
from servicekit import Server, make_token, until

from autoflow.execution.local_ray import HEALTH_CHECKS, NODE_RESOURCE, free_port

ray = need_ray()

SCALE = 50.0  # cluster seconds per wall second
DURATION = 400.0  # cluster seconds: 8 s of wall time
INTERVAL = 20.0


@pytest.fixture
def ray_cluster():
    from ray.cluster_utils import Cluster

    try:
        c = Cluster(initialize_head=True, connect=False, head_node_args={
            "num_cpus": 1, "num_gpus": 0, "gcs_server_port": free_port(),
            "include_dashboard": False, "_system_config": HEALTH_CHECKS})
    except Exception as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Ray cannot start here: {type(e).__name__}: {e}")
    nodes = {name: c.add_node(num_cpus=1, num_gpus=2,
                              resources={f"{NODE_RESOURCE}{name}": 1.0})
             for name in ("a", "b")}
    c.wait_for_nodes()
    try:
        yield c, nodes
    finally:
        c.shutdown()


def serve_ray(tmp_path, *args: str) -> tuple[Server, dict]:
    """``autoflow serve --executor ray --policy fifo`` on a fresh SQLite store, checkpoints
    in ``tmp_path/ckpt``; the server and an admin's headers."""
    db = f"sqlite:///{tmp_path}/svc.db"
    token = make_token(db)
    srv = Server(db, tmp_path / "serve.log", "--executor", "ray", "--policy", "fifo",
                 "--checkpoint-dir", str(tmp_path / "ckpt"), *args).start(timeout=180)
    return srv, {"Authorization": f"Bearer {token}"}


def test_a_dead_ray_node_s_jobs_resume_elsewhere_and_states_agree(tmp_path, ray_cluster):
    cluster, nodes = ray_cluster
    srv, h = serve_ray(tmp_path, "--ray-address", cluster.address, "--time-scale", str(SCALE),
                       "--checkpoint-interval", str(INTERVAL))
    try:
        with httpx.Client(base_url=srv.url, headers=h, timeout=30) as c:
            r = c.post("/v1/clusters", json={"name": "two", "nodes": [
                {"name": n, "gpu_type": "V100", "gpus": 2} for n in ("a", "b")]})
            assert r.status_code == 201, r.text
            ids = []
            for i in range(4):
                r = c.post("/v1/jobs", json={"job_id": f"j{i}", "num_gpus": 1,
                                             "duration_estimate_s": DURATION})
                assert r.status_code == 201, r.text
                ids.append(f"j{i}")

            def jobs():
                return {j["job_id"]: j for j in c.get("/v1/jobs").json()["jobs"]}

            until(lambda: all(j["state"] == "running" for j in jobs().values()),
                  "all four jobs run", polls=3000)
            # the tasks report only when they end; wait until each has checkpointed twice
            ckpt = tmp_path / "ckpt"
            until(lambda: all(_progress(ckpt, k) >= 2 * INTERVAL for k in ids),
                  "every job checkpointed twice", polls=3000)
            on_b = sorted(k for k, j in jobs().items() if j["placement"]["nodes"][0]["node"] == "b")
            assert len(on_b) == 2
            cluster.remove_node(nodes["b"], allow_graceful=False)
            until(lambda: {n["name"]: n["state"] for n in c.get("/v1/nodes").json()["nodes"]
                           }["b"] == "failed",
                  "the service marks node b failed", polls=3000)
            until(lambda: all(j["state"] == "succeeded" for j in jobs().values()),
                  "every job succeeds", polls=6000)
            final = jobs()
            for k in ids:
                ev = c.get(f"/v1/jobs/{k}/events").json()["events"]
                fin = [e for e in ev if e["event"] == "finished"]
                assert len(fin) == 1
                if k in on_b:
                    assert final[k]["failures"] == 1 and final[k]["starts"] == 2
                    # it resumed from a checkpoint written before node b died, on node a
                    assert fin[0]["detail"]["resumed_from"] >= 2 * INTERVAL
                    assert fin[0]["detail"]["ray_node"] == nodes["a"].node_id
                else:
                    assert final[k]["failures"] == 0 and final[k]["starts"] == 1
                    assert fin[0]["detail"]["resumed_from"] == 0.0
                assert fin[0]["detail"]["reached"] == DURATION
            view = {n["name"]: n for n in c.get("/v1/nodes").json()["nodes"]}
        assert view["a"]["state"] == "up" and view["a"]["gpus_free"] == 2
        assert view["a"]["jobs"] == [] and view["b"]["state"] == "failed"
    finally:
        srv.stop()
    # Ray agrees: node b is gone, node a's GPUs are all free (its view settles shortly)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        alive = {nid for nid in (n["NodeID"] for n in ray.nodes() if n["Alive"])}
        assert nodes["a"].node_id in alive and nodes["b"].node_id not in alive
        until(lambda: ray.available_resources().get("GPU", 0.0) == 2.0,
              "Ray sees node a's two GPUs free", polls=600, every=0.1)
    finally:
        ray.shutdown()


def _progress(folder, key: str) -> float:
    from autoflow.execution import checkpoints

    return checkpoints.progress(folder, key)


def test_entrypoint_jobs_run_checkpoint_on_preemption_and_resume(tmp_path):
    """Embedded Ray (no --ray-address): a training job whose entrypoint is the demo
    training loop is preempted by a drain of its node (SIGTERM: it checkpoints and stops),
    starts again on the other node and resumes from that checkpoint; an inference replica
    becomes ready within its start-delay SLO and answers requests."""
    import json
    import time
    import urllib.request

    from autoflow.demo.inference_replica import slo_met

    ckpt = tmp_path / "ckpt"
    srv, h = serve_ray(tmp_path)
    try:
        with httpx.Client(base_url=srv.url, headers=h, timeout=60) as c:
            r = c.post("/v1/clusters", json={"name": "two", "nodes": [
                {"name": n, "gpu_type": "V100", "gpus": 1} for n in ("a", "b")]})
            assert r.status_code == 201, r.text
            r = c.post("/v1/jobs", json={
                "job_id": "train", "num_gpus": 1, "duration_estimate_s": 30,
                "entrypoint": "python -m autoflow.demo.train_loop --steps 400 "
                              "--step-time 0.02 --checkpoint-every 10",
                "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "1"}}})
            assert r.status_code == 201, r.text
            folder = ckpt / "train"
            until(lambda: (folder / "checkpoint.pt").exists(), "the job checkpoints",
                  polls=6000)
            node = c.get("/v1/jobs/train").json()["placement"]["nodes"][0]["node"]
            assert c.post(f"/v1/nodes/{node}/drain").status_code == 200
            until(lambda: c.get("/v1/jobs/train").json()["state"] == "succeeded",
                  "the training job succeeds", polls=6000)
            lines = [json.loads(x) for x in (folder / "stdout.log").read_text().splitlines()
                     if x.startswith("{")]
            assert [x["status"] for x in lines] == ["stopped", "done"]
            assert lines[0]["resumed_from"] == 0 and lines[0]["step"] >= 10
            assert lines[1]["resumed_from"] == lines[0]["step"]  # no step was lost
            assert lines[1]["step"] == 400
            ev = [e["event"] for e in c.get("/v1/jobs/train/events").json()["events"]]
            # (the stop's "preempted" confirmation is not sent once the job runs again:
            # the engine would take it for the new run's loss)
            assert ev == ["started", "started", "finished"]
            after = c.get("/v1/jobs/train").json()
            assert after["preemptions"] == 1

            submitted = time.time()
            r = c.post("/v1/jobs", json={
                "job_id": "replica", "kind": "inference", "num_gpus": 1, "gpu_milli": 500,
                "slo_s": 60, "entrypoint": "python -m autoflow.demo.inference_replica "
                                           "--serve-for 30 --load-time 0.2"})
            assert r.status_code == 201, r.text
            ready = ckpt / "replica" / "ready.json"
            until(ready.exists, "the replica is ready", polls=6000)
            port = json.loads(ready.read_text())["port"]
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/predict", method="POST",
                data=json.dumps({"inputs": [[0.1] * 16]}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert len(json.loads(resp.read())["outputs"]) == 1
            assert slo_met(submitted, ready, 60.0)
            assert c.delete("/v1/jobs/replica").status_code == 200
            bad = c.post("/v1/jobs", json={"entrypoint": "   "})
            assert bad.status_code == 422 and "entrypoint" in bad.text
    finally:
        srv.stop()


def test_a_ray_address_nobody_answers_is_one_clear_line(tmp_path):
    import subprocess
    import sys

    port = free_port()
    out = subprocess.run([sys.executable, "-m", "autoflow", "serve", "--executor", "ray",
                          "--ray-address", f"127.0.0.1:{port}", "--db",
                          f"sqlite:///{tmp_path}/x.db", "--checkpoint-dir",
                          str(tmp_path / "ck")], capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: --ray-address 127.0.0.1:{port}: nothing answers there (Connection "
        "refused); is the Ray head running?")


def test_jobs_running_when_the_service_is_killed_resume_after_its_restart(tmp_path,
                                                                        ray_cluster):
    """SIGKILL the service while its jobs run on an existing Ray cluster (Ray ends the dead
    driver's tasks); the restarted service launches them again on their nodes and they
    resume from their checkpoints; nothing acknowledged is lost."""
    cluster, _nodes = ray_cluster
    args = ("--ray-address", cluster.address, "--time-scale", str(SCALE),
            "--checkpoint-interval", str(INTERVAL))
    srv, h = serve_ray(tmp_path, *args)
    ckpt = tmp_path / "ckpt"
    try:
        with httpx.Client(base_url=srv.url, headers=h, timeout=30) as c:
            assert c.post("/v1/clusters", json={"name": "two", "nodes": [
                {"name": n, "gpu_type": "V100", "gpus": 2} for n in ("a", "b")]}
                ).status_code == 201
            for i in range(2):
                assert c.post("/v1/jobs", json={"job_id": f"r{i}", "num_gpus": 2,
                                                 "duration_estimate_s": DURATION}
                              ).status_code == 201
            until(lambda: all(_progress(ckpt, f"r{i}") >= 2 * INTERVAL for i in range(2)),
                  "both jobs checkpointed twice", polls=3000)
        srv.kill()
        saved = {f"r{i}": _progress(ckpt, f"r{i}") for i in range(2)}
        srv = Server(srv.db, tmp_path / "serve.log", "--executor", "ray", "--policy", "fifo",
                     "--checkpoint-dir", str(ckpt), *args, port=srv.port).start(timeout=180)
        with httpx.Client(base_url=srv.url, headers=h, timeout=30) as c:
            until(lambda: all(j["state"] == "succeeded"
                              for j in c.get("/v1/jobs").json()["jobs"]),
                  "both jobs succeed after the restart", polls=6000)
            for key, was in saved.items():
                fin = [e for e in c.get(f"/v1/jobs/{key}/events").json()["events"]
                       if e["event"] == "finished"]
                assert len(fin) == 1
                # the relaunched run resumed from at least the checkpoint seen before
                assert fin[0]["detail"]["resumed_from"] >= was >= 2 * INTERVAL
                assert fin[0]["detail"]["reached"] == DURATION
    finally:
        srv.stop()
