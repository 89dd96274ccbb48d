"""An acknowledged job is never lost: ``autoflow serve`` (a real uvicorn subprocess) takes
submissions from several threads while an executor follows the decision feed; it is
killed with SIGKILL mid-stream, restarted on the same store, and every job that got a 201
is there (pending, running or succeeded), the decisions read before the kill read the
same, the executor resumes from its cursor (no decision number is reused), and the jobs
that were running keep their placement. With SQLite and with PostgreSQL."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from servicekit import Server, make_token, pg_database

SUBMITTERS = 6
KILL_AFTER = 240  # acknowledged submissions before the SIGKILL
PER_THREAD = 100  # more than enough: submitting goes on until the server is gone
NODES = [{"name": f"n{i}", "gpu_type": "a100", "gpus": 8} for i in range(8)]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
    else:
        with pg_database() as url:
            yield url


class Executor(threading.Thread):
    """Follows the decision feed from its cursor: reports ``started`` for each start and
    ``finished`` for every third job it started, so capacity frees and decisions flow."""

    def __init__(self, url: str, token: str, cursor: int = 0):
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=10)
        self.cursor = cursor
        self.seen: list[dict] = []
        self.finished: set[str] = set()
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                page = self.http.get("/v1/decisions", params={"after": self.cursor,
                                                              "wait": 1}).json()
                for d in page["decisions"]:
                    assert d["seq"] > self.cursor
                    self.seen.append(d)
                    self.cursor = d["seq"]
                    if d["action"] != "start":
                        continue
                    r = self.http.post(f"/v1/jobs/{d['job_id']}/events",
                                       json={"event": "started"})
                    r.raise_for_status()
                    if len(self.seen) % 3 == 0:
                        r = self.http.post(f"/v1/jobs/{d['job_id']}/events",
                                           json={"event": "finished"})
                        r.raise_for_status()
                        self.finished.add(d["job_id"])
        except (httpx.HTTPError, ValueError):
            return  # the server is gone
        finally:
            self.http.close()


def _submit(url: str, token: str, acked: list, lock: threading.Lock, n: int, k: int) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as http:
        for i in range(n):
            body = {"num_gpus": 1 + (i + k) % 4, "duration_estimate_s": 600 + 60 * (i % 7),
                    "user": f"u{k}"}
            try:
                r = http.post("/v1/jobs", json=body)
            except httpx.HTTPError:
                return  # killed: this one is unacknowledged (it may or may not exist)
            assert r.status_code == 201, r.text
            with lock:
                acked.append(r.json()["job_id"])


def _all(http: httpx.Client, path: str, key: str, cursor_key: str, **params) -> list[dict]:
    out, after = [], 0
    while True:
        page = http.get(path, params={**params, "after": after}).json()
        out += page[key]
        nxt = page[cursor_key]
        if not page[key] or nxt is None or nxt == after:
            return out
        after = nxt


def test_acknowledged_jobs_survive_sigkill(db, tmp_path):
    token = make_token(db)
    log = tmp_path / "serve.log"
    server = Server(db, log).start()
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                        timeout=30)
    try:
        assert http.post("/v1/clusters", json={"name": "lab", "nodes": NODES}).status_code \
            == 201
        executor = Executor(server.url, token)
        executor.start()
        acked: list[str] = []
        lock = threading.Lock()
        threads = [threading.Thread(target=_submit, daemon=True,
                                    args=(server.url, token, acked, lock, PER_THREAD, k))
                   for k in range(SUBMITTERS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 300
        while len(acked) < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.005)
        server.kill()  # SIGKILL, mid-stream: submissions and executor reports in flight
        killed_with = len(acked)
        for t in threads:
            t.join(30)
        executor.halt.set()
        executor.join(30)
        assert killed_with >= KILL_AFTER, f"only {killed_with} submissions acknowledged"
        assert len(acked) < SUBMITTERS * PER_THREAD, "the kill came after every submission"
        assert len(set(acked)) == len(acked)
        read_before = list(executor.seen)
        assert read_before, "the executor read no decision before the kill"

        # -- restart on the same store -----------------------------------------------------
        server = Server(db, log).start()
        http.close()
        http = httpx.Client(base_url=server.url,
                            headers={"Authorization": f"Bearer {token}"}, timeout=30)
        jobs = {j["job_id"]: j for j in _all(http, "/v1/jobs", "jobs", "next", limit=1000)}
        missing = [j for j in acked if j not in jobs]
        assert not missing, f"{len(missing)} acknowledged job(s) lost: {missing[:5]}"
        states = {jobs[j]["state"] for j in acked}
        assert states <= {"pending", "running", "succeeded"}, states
        for j in executor.finished:
            assert jobs[j]["state"] == "succeeded", jobs[j]

        # the decisions read before the kill read the same; numbers are never reused
        after = _all(http, "/v1/decisions", "decisions", "cursor")
        by_seq = {d["seq"]: d for d in after}
        assert [d["seq"] for d in after] == list(range(1, len(after) + 1))
        for d in read_before:
            assert by_seq[d["seq"]] == d

        # the jobs running at the kill keep their placement and get no second start
        last: dict[str, dict] = {}
        for d in read_before:
            last[d["job_id"]] = d
        running = {j: d for j, d in last.items()
                   if d["action"] == "start" and j not in executor.finished}
        assert running, "no job was running at the kill"
        for j, d in running.items():
            view = jobs[j]
            if view["state"] != "running":  # the executor's "finished" report was in flight
                assert view["state"] == "succeeded", view
                continue
            assert [n["node"] for n in view["placement"]["nodes"]] == \
                   [n["node"] for n in d["placement"]["nodes"]]
            assert [n["gpu_indices"] for n in view["placement"]["nodes"]] == \
                   [n["gpu_indices"] for n in d["placement"]["nodes"]]

        # the executor resumes from its cursor: only new decisions, none a restart of a
        # running job
        resumed = Executor(server.url, token, cursor=executor.cursor)
        page = http.get("/v1/decisions", params={"after": executor.cursor}).json()
        assert all(d["seq"] > executor.cursor for d in page["decisions"])
        starts_again = [d for d in page["decisions"] if d["action"] == "start"
                        and d["job_id"] in running and jobs[d["job_id"]]["state"] == "running"]
        assert not starts_again
        resumed.start()
        time.sleep(1.0)
        resumed.halt.set()
        resumed.join(30)
        assert all(d["seq"] > executor.cursor for d in resumed.seen)
        # the service runs on after the restart: a new job is accepted and placed
        new = http.post("/v1/jobs", json={"num_gpus": 1, "duration_estimate_s": 60})
        assert new.status_code == 201
        assert http.get(f"/v1/jobs/{new.json()['job_id']}").status_code == 200
    finally:
        http.close()
        server.stop()
