"""The self-optimizing loop inside ``autoflow serve --self-optimize`` (issue 20): a real
server on 127.0.0.1 with the simulated executor closes windows of its own jobs' outcomes,
judges them in a child process (drift, the champion against the heuristics), trains and
compares a challenger, records the decision with its evidence in the registry, and shows
it on ``/v1/loop``, ``/metrics`` and the dashboard; a promotion from a window's files
swaps the serving policy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import httpx
import numpy as np
from modelkit import always, fixed_trainer
from servicekit import Server, make_token, until

from autoflow.loop import window_job
from autoflow.loop.registry import Registry

NODES = [{"name": "n0", "gpu_type": "a100", "gpus": 4, "cpu_milli": 64000,
          "memory_mib": 512000}]
WINDOW = 40


def _wave(c: httpx.Client, rng, k: int) -> None:
    """WINDOW jobs at once: heavy-tailed declared durations (the simulated executor runs
    each for its duration_estimate_s), mostly 1 GPU."""
    for i in range(WINDOW):
        d = float(np.clip(rng.lognormal(np.log(60.0), 1.5), 5.0, 3000.0))
        g = int(rng.choice([1, 1, 1, 2, 4]))
        r = c.post("/v1/jobs", json={"job_id": f"w{k}-{i}", "num_gpus": g,
                                     "duration_estimate_s": round(d, 1)})
        assert r.status_code == 201, r.text


def test_the_service_judges_windows_of_its_outcomes_and_follows_a_promotion(tmp_path):
    db = f"sqlite:///{tmp_path}/svc.db"
    reg = Registry(db)
    fifo = reg.register(always("fifo", tmp_path / "fifo"), kind="adaptive", name="fifo-only")
    reg.promote(fifo, reason="test: a champion that loses on heavy tails")
    reg.close()
    srv = Server(db, tmp_path / "serve.log", "--executor", "sim", "--time-scale", "2000",
                 "--self-optimize", "--self-optimize-interval", "0.2",
                 "--self-optimize-window", str(WINDOW)).start()
    try:
        h = {"Authorization": f"Bearer {make_token(db, 'admin')}"}
        c = httpx.Client(base_url=srv.url, headers=h, timeout=30)
        assert c.post("/v1/clusters", json={"name": "lab", "nodes": NODES}).status_code == 201
        assert fifo in c.get("/v1/policy").json()["policy"]
        rng = np.random.default_rng(7)

        def loop() -> dict:
            return c.get("/v1/loop").json()["loop"]

        judged = None
        for k in range(4):
            _wave(c, rng, k)
            until(lambda k=k: loop()["windows"] >= k + 1 and loop()["judging"] is None,
                  f"window {k} closed and judged", polls=6000, every=0.05)
            judged = next((w for w in loop()["recent"] if w.get("performance")), None)
            if judged is not None:
                break
        assert judged is not None, loop()
        assert c.get("/v1/loop").json()["enabled"]
        view = loop()
        assert view["window_jobs"] == WINDOW
        first = view["recent"][0]
        assert first["index"] == 0 and first["jobs"] == WINDOW
        # every job of a window is counted: outcomes, still unfinished, or dropped
        for w in view["recent"]:
            assert w["outcomes"] + w["censored"] + w["dropped"] == w["jobs"] == WINDOW
        # the fifo-only champion loses to a heuristic on heavy tails: a challenger is
        # trained from it, compared, and the verdict is in the registry with its evidence
        perf = judged["performance"]
        assert perf["ratio"] > 1.0 and perf["losing"], perf
        assert judged["retrained"] and judged["retrainings"]
        reg = Registry(db)
        # the trained challenger, and the champion pinned to the heuristic that beat it
        names = [e["name"] for e in judged["retrainings"]]
        assert names[0] == f"challenger of window {judged['index']}"
        assert names[1] == f"{perf['best']} pinned (window {judged['index']})", names
        for e in judged["retrainings"]:
            model = reg.get(e["challenger"])
            assert model["lineage"]["window_index"] == judged["index"]
            assert model["lineage"]["command"] == "autoflow serve --self-optimize"
            assert model["lineage"]["parent"] == fifo
            verdict = [v for v in reg.events(50, sha=e["challenger"])
                       if v["action"] in ("promote", "reject")]
            assert verdict and verdict[0]["evidence"]["cases"], verdict
            assert verdict[0]["action"] == ("promote" if e["promoted"] else "reject")
        assert reg.get(judged["retrainings"][1]["challenger"])["lineage"]["pinned"] == perf["best"]
        generators = [m for m in reg.list() if m["kind"] == "generator"]
        assert generators and generators[0]["lineage"]["window_index"] == judged["index"]

        won = [e["challenger"] for e in judged["retrainings"] if e["promoted"]]
        if won:  # the loop promoted one of its challengers (the pinned one, usually)
            new = won[0]
        else:  # none was better with confidence: the window's files promote a las-only
            # challenger (in place of training), as the child process would
            folder = tmp_path / "window-copy"
            shutil.copytree(tmp_path / "loop" / f"window-{judged['index']}", folder)
            (folder / "result.json").unlink()
            shutil.rmtree(folder / "retrain", ignore_errors=True)
            os.environ[window_job.DB_ENV] = db
            try:
                res = window_job.run(folder, trainer=fixed_trainer(always("las", tmp_path / "las")))
            finally:
                del os.environ[window_job.DB_ENV]
            assert res["promoted"], res["events"]
            new = res["promoted"]
        # the running service swaps to the promoted challenger, with the reason
        until(lambda: new in c.get("/v1/policy").json()["policy"],
              "the service serves the promoted challenger", polls=3000, every=0.05)
        hist = c.get("/v1/policy").json()["history"][0]
        assert hist["model_sha256"] == new and hist["token_name"] == "self-optimize"
        champ = c.get("/v1/loop").json()["champion"]
        assert champ["serving"] == new and champ["event"] == "promote"
        assert champ["reason"].startswith("challenger better")
        dash = c.get("/v1/dashboard").json()["self_optimize"]
        assert dash["champion"]["reason"] == champ["reason"]
        metrics = c.get("/metrics").text
        info = [x for x in metrics.splitlines() if x.startswith("autoflow_champion_info{")]
        assert info and new in info[0] and 'event="promote"' in info[0]
        windows_total = [x for x in metrics.splitlines()
                         if x.startswith("autoflow_loop_windows_total")]
        assert windows_total and float(windows_total[0].split()[-1]) >= 2
        reg.close()
        before = loop()
    finally:
        srv.stop()
    # a restart resumes: the windows judged, where the next one starts, the champion
    srv = Server(db, tmp_path / "serve2.log", "--executor", "sim", "--self-optimize",
                 "--self-optimize-interval", "0.2", "--self-optimize-window",
                 str(WINDOW)).start()
    try:
        c = httpx.Client(base_url=srv.url, headers=h, timeout=30)
        after = c.get("/v1/loop").json()
        assert after["loop"]["windows"] == before["windows"]
        assert after["loop"]["recent"] == before["recent"]
        assert (after["loop"]["next_window_starts_after_seq"]
                == before["next_window_starts_after_seq"])
        assert new in c.get("/v1/policy").json()["policy"]
    finally:
        srv.stop()


def test_a_registry_without_champion_gets_the_shipped_one(tmp_path):
    db = f"sqlite:///{tmp_path}/svc.db"
    srv = Server(db, tmp_path / "serve.log", "--self-optimize", "--self-optimize-interval",
                 "0.2").start()
    try:
        h = {"Authorization": f"Bearer {make_token(db, 'reader', 'r')}"}
        c = httpx.Client(base_url=srv.url, headers=h, timeout=30)
        until(lambda: c.get("/v1/loop").json()["champion"]["serving"], "a champion serves")
        champ = c.get("/v1/loop").json()["champion"]
        assert champ["event"] == "promote" and "initial champion" in champ["reason"]
        assert champ["serving"] in c.get("/v1/policy").json()["policy"]
    finally:
        srv.stop()


def test_self_optimize_window_is_checked(tmp_path):
    r = subprocess.run([sys.executable, "-m", "autoflow", "serve", "--db",
                        f"sqlite:///{tmp_path}/x.db", "--self-optimize",
                        "--self-optimize-window", "5"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 2 and "--self-optimize-window" in r.stderr
    assert "Traceback" not in r.stderr
