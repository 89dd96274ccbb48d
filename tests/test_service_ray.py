"""``autoflow serve --executor ray`` (a real uvicorn subprocess) on an existing Ray
cluster (``--ray-address``) whose nodes carry ``autoflow-node:NAME``: started jobs run as
Ray tasks on their nodes; when a Ray node dies its jobs wait again and resume from their
checkpoints on the other node; every acknowledged job succeeds and the service's view of
the nodes agrees with Ray's afterwards."""

from __future__ import annotations

import os

import httpx
import pytest

from servicekit import Server, make_token, until

if os.environ.get("CI"):
    import ray  # in CI Ray must be there: these tests never skip
else:
    ray = pytest.importorskip("ray")

from autoflow.execution.local_ray import HEALTH_CHECKS, NODE_RESOURCE, free_port

SCALE = 50.0  # cluster seconds per wall second
DURATION = 400.0  # cluster seconds: 8 s of wall time
INTERVAL = 20.0


@pytest.fixture
def ray_cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "gcs_server_port": free_port(),
        "include_dashboard": False, "_system_config": HEALTH_CHECKS})
    nodes = {name: c.add_node(num_cpus=1, num_gpus=2,
                              resources={f"{NODE_RESOURCE}{name}": 1.0})
             for name in ("a", "b")}
    c.wait_for_nodes()
    try:
        yield c, nodes
    finally:
        c.shutdown()


def test_a_dead_ray_node_s_jobs_resume_elsewhere_and_states_agree(tmp_path, ray_cluster):
    cluster, nodes = ray_cluster
    db = f"sqlite:///{tmp_path}/svc.db"
    token = make_token(db)
    srv = Server(db, tmp_path / "serve.log", "--executor", "ray", "--ray-address",
                 cluster.address, "--time-scale", str(SCALE), "--policy", "fifo",
                 "--checkpoint-dir", str(tmp_path / "ckpt"),
                 "--checkpoint-interval", str(INTERVAL)).start(timeout=180)
    h = {"Authorization": f"Bearer {token}"}
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
