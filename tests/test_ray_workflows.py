"""Workflows on the Ray backend (issue 21), on a real local two-node Ray cluster (logical
GPUs): a stage's tasks are launched only after every task of each job it depends on has
ended (the times are the tasks' own clocks, not the core's), every job finishes, and the
jobs that depend on one that did not succeed (cancelled while running or while held) are
dropped: never launched on Ray, listed with the reason."""

from __future__ import annotations

import time

import pytest
from raykit import local_cluster, need_ray, replay_on_ray

from autoflow.cluster import ClusterSpec, Node
from autoflow.errors import ConfigError
from autoflow.job import Job
from autoflow.policies import make_policy
from autoflow.workload import Workload

ray = need_ray()

SPEC = ClusterSpec("two", [Node("a", "V100", 2), Node("b", "V100", 2)])
SCALE = 0.02  # wall seconds per trace second: a 60 s stage runs 1.2 s


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(SPEC) as rc:
        yield rc


def pipeline(k: int, submit: float, prepare: float = 20.0) -> list[Job]:
    """prepare (CPU only) -> train (2 GPUs) -> eval (1 GPU), all submitted at once."""
    w = f"p{k}"
    return [Job(f"{w}-prepare", submit, prepare, 0, cpu_milli=0, workflow_id=w,
                group="pipe/prepare"),
            Job(f"{w}-train", submit, 60.0, 2, workflow_id=w, group="pipe/train",
                depends_on=(f"{w}-prepare",)),
            Job(f"{w}-eval", submit, 20.0, 1, workflow_id=w, group="pipe/eval",
                depends_on=(f"{w}-train",))]


def segments_of(run) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for seg in run.segments:
        out.setdefault(seg["job"], []).append(seg)
    return out


@pytest.mark.parametrize("policy", ["fifo", "las"])
def test_every_stage_runs_on_ray_only_after_its_parents_ended(cluster, policy):
    jobs = [*pipeline(0, 0.0), *pipeline(1, 5.0), *pipeline(2, 10.0),
            Job("solo-0", 0.0, 40.0, 1), Job("solo-1", 2.0, 30.0, 2),
            Job("solo-2", 4.0, 50.0, 1)]
    w = Workload(jobs)
    run = replay_on_ray(w, SPEC, make_policy(policy), time_scale=SCALE,
                        restart_overhead_s=5.0, cluster=cluster)
    by_id = {js.job.job_id: js for js in run.jobs}
    segs = segments_of(run)
    assert all(js.status == "done" for js in run.jobs) and not run.dropped
    for j in jobs:  # every job ran to its end on Ray, where the policy placed it
        assert segs[j.job_id][-1]["outcome"] == "finished", segs[j.job_id]
        assert segs[j.job_id][-1]["reached"] == pytest.approx(j.duration)
        assert all(s["ray_node"] == run.node_ids[s["node"]] for s in segs[j.job_id])
    for j in jobs:
        for p in j.depends_on:
            ended = max(s["ended"] for s in segs[p])  # the parent's last task, its clock
            for s in segs[j.job_id]:
                # launched after the parent's tasks ended, and began after that
                assert s["launched"] >= ended and s["began"] >= ended, (j.job_id, p)
            # the core agrees: first start after the parent's finish (trace seconds)
            assert by_id[j.job_id].first_start >= by_id[p].finish
    # the held stages did not hold the cluster: an independent job submitted after a
    # pipeline began before that pipeline's training stage
    assert min(by_id[f"solo-{i}"].first_start for i in (1, 2)) < by_id["p0-train"].first_start
    m = summarize_run(run, policy)
    assert m["dropped_jobs"] == 0 and m["dropped_workflows"] == 0


def summarize_run(run, policy: str) -> dict:
    from autoflow.execution.fidelity import real_metrics

    return real_metrics(run, SPEC, make_policy(policy))


def test_a_cancelled_parent_drops_its_descendants_which_never_run(cluster):
    """p0's prepare is cancelled while its task runs (the task is stopped); p1's train is
    cancelled while it is held. The stages after each are dropped and never launched;
    p1's prepare, p2 and the independent jobs run to their end."""
    jobs = [*pipeline(0, 0.0, prepare=300.0), *pipeline(1, 0.0, prepare=100.0),
            *pipeline(2, 0.0), Job("solo", 0.0, 40.0, 1)]
    seen = {}

    def cancel(backend):
        time.sleep(40 * SCALE)  # the first tasks run (and checkpoint) for a while
        core = backend.core
        seen["running"] = sorted(js.job.job_id for js in core.running.values())
        seen["held"] = sorted(js.job.job_id for js in core.held.values())
        assert backend.cancel("p0-prepare") and backend.cancel("p1-train")
        assert not backend.cancel("p1-train")  # ended already: nothing to do

    run = replay_on_ray(Workload(jobs), SPEC, make_policy("fifo"), time_scale=SCALE,
                        cluster=cluster, during=cancel)
    assert "p0-prepare" in seen["running"] and "p1-train" in seen["held"]
    by_id = {js.job.job_id: js for js in run.jobs}
    segs = segments_of(run)
    assert all(js.status == "done" for js in run.jobs)
    dropped = {d["job"]: d["reason"] for d in run.dropped}
    assert dropped == {"p0-train": "depends on p0-prepare, which did not succeed",
                       "p0-eval": "depends on p0-train, which did not succeed",
                       "p1-eval": "depends on p1-train, which did not succeed"}
    for jid in ("p0-train", "p0-eval", "p1-train", "p1-eval"):
        assert jid not in segs  # never launched on Ray
        assert by_id[jid].first_start is None and by_id[jid].starts == 0
    # the cancelled running task was asked to stop, and did: it checkpointed and stopped,
    # or (on a loaded machine, its worker not yet running it) Ray cancelled it outright
    outcome = [s["outcome"] for s in segs["p0-prepare"]]
    assert outcome in (["stopped"], ["killed"])
    if outcome == ["stopped"]:
        assert 0.0 < segs["p0-prepare"][0]["reached"] < 300.0
    for jid in ("p1-prepare", "p2-prepare", "p2-train", "p2-eval", "solo"):
        assert segs[jid][-1]["outcome"] == "finished"
    assert segs["p2-train"][0]["began"] >= segs["p2-prepare"][-1]["ended"]
    m = summarize_run(run, "fifo")
    assert m["dropped_jobs"] == 4 and m["dropped_workflows"] == 2


def test_a_workload_whose_dependencies_cannot_be_met_is_refused_before_ray_runs(cluster):
    w = Workload([Job("a", 0.0, 10.0, 1, depends_on=("nope",))])
    with pytest.raises(ConfigError, match="'a' field 'depends_on': no job 'nope'"):
        replay_on_ray(w, SPEC, make_policy("fifo"), time_scale=SCALE, cluster=cluster)
    cyc = Workload([Job("a", 0.0, 10.0, 1, depends_on=("b",)),
                    Job("b", 0.0, 10.0, 1, depends_on=("a",))])
    with pytest.raises(ConfigError, match="cycle"):
        replay_on_ray(cyc, SPEC, make_policy("fifo"), time_scale=SCALE, cluster=cluster)


def test_a_failing_stage_on_the_service_s_ray_executor_cancels_what_depends_on_it(
        cluster, tmp_path):
    """``autoflow serve --executor ray`` on the same Ray cluster (its nodes carry
    ``autoflow-node:a`` / ``:b``): a workflow's first stage is a command that exits with
    an error on Ray; the stages after it are cancelled with the reason and never
    started, while another workflow, submitted as a template whose stages run commands
    (``entrypoint``, ``runtime_env``), runs on Ray one stage after the other."""
    import httpx
    from servicekit import Server, make_token, until

    db = f"sqlite:///{tmp_path}/svc.db"
    token = make_token(db)
    srv = Server(db, tmp_path / "serve.log", "--executor", "ray", "--policy", "fifo",
                 "--ray-address", cluster.address, "--time-scale", "50",
                 "--checkpoint-dir", str(tmp_path / "ckpt")).start(timeout=180)
    fails = "python -c \"import sys, time; time.sleep(1); sys.exit('no input data')\""
    try:
        with httpx.Client(base_url=srv.url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            def post(**job):
                r = c.post("/v1/jobs", json=job)
                assert r.status_code == 201, r.text
                return r.json()

            r = c.post("/v1/clusters", json={"name": "two", "nodes": [
                {"name": n.name, "gpu_type": n.gpu_type, "gpus": n.gpus} for n in SPEC.nodes]})
            assert r.status_code == 201, r.text
            post(job_id="bad-prepare", workflow_id="bad", num_gpus=1, entrypoint=fails)
            post(job_id="bad-train", workflow_id="bad", num_gpus=2, duration_estimate_s=60,
                 depends_on=["bad-prepare"])
            post(job_id="bad-eval", workflow_id="bad", num_gpus=1, duration_estimate_s=30,
                 depends_on=["bad-train"])
            # the other workflow from a template whose stages run commands: prepare writes
            # the data train reads (found through its runtime_env)
            data = tmp_path / "data.txt"
            r = c.post("/v1/workflows", json={"run": "ok", "template": {
                "name": "two-step", "stages": [
                    {"name": "prepare", "num_gpus": 1, "duration_hint_s": 30,
                     "entrypoint": "python -c \"import os; open(os.environ['DATA'], 'w')"
                                   ".write('ready')\"",
                     "runtime_env": {"env_vars": {"DATA": str(data)}}},
                    {"name": "train", "num_gpus": 2, "duration_hint_s": 60,
                     "depends_on": ["prepare"],
                     "entrypoint": "python -c \"import os, sys; sys.exit(0 if open("
                                   "os.environ['DATA']).read() == 'ready' else 'no data')\"",
                     "runtime_env": {"env_vars": {"DATA": str(data)}}}]}})
            assert r.status_code == 201, r.text
            assert r.json()["jobs"] == ["ok-prepare", "ok-train"]
            view = until(lambda: (v := c.get("/v1/workflows/bad").json())["state"] == "failed"
                         and v, "the workflow with the failing stage ends", polls=6000)
            assert view["jobs"] == {"failed": 1, "cancelled": 2}
            prep = c.get("/v1/jobs/bad-prepare").json()
            assert prep["state"] == "failed" and prep["starts"] == 1
            for jid, parent in (("bad-train", "bad-prepare"), ("bad-eval", "bad-train")):
                j = c.get(f"/v1/jobs/{jid}").json()
                assert j["state"] == "cancelled" and j["first_start"] is None
                assert j["reason"] == f"depends on {parent}, which " + (
                    "failed" if parent == "bad-prepare" else "was cancelled")
                assert [e["event"] for e in c.get(f"/v1/jobs/{jid}/events").json()[
                    "events"]] == ["cancelled"]
            until(lambda: c.get("/v1/workflows/ok").json()["state"] == "succeeded",
                  "the other workflow succeeds", polls=6000)
            assert data.read_text() == "ready"  # train ran after prepare wrote it
            ok = {j: c.get(f"/v1/jobs/{j}/events").json()["events"]
                  for j in ("ok-prepare", "ok-train")}
            fin = {j: next(e["detail"] for e in ev if e["event"] == "finished")
                   for j, ev in ok.items()}
            assert fin["ok-train"]["began"] >= fin["ok-prepare"]["ended"]  # tasks' clocks
            started = {d["job_id"] for d in c.get("/v1/decisions").json()["decisions"]
                       if d["action"] == "start"}
            assert started == {"bad-prepare", "ok-prepare", "ok-train"}  # nothing else ran
    finally:
        srv.stop()
