"""Load on the placement service (the figures in benchmarks/RESULTS.md, "Service load").

    python benchmarks/service_load.py [--policies fifo,las,rl] [--stores sqlite,postgresql]
        [--seconds 8] [--submitters 8] [--nodes 64] [--json out.json]

For each store and policy, a real ``autoflow serve`` (uvicorn, one process) on 127.0.0.1
with a fresh store and a cluster of ``--nodes`` 8-GPU nodes, and on the client side:

* ``--submitters`` threads that POST /v1/jobs as fast as the server answers (1-GPU jobs,
  each declaring a duration), each on one keep-alive connection;
* an executor: one thread long-polls ``GET /v1/decisions`` from its cursor and hands each
  ``start`` to a reporter thread that reports ``finished`` for everything started so far
  in one ``POST /v1/events`` (a batch), so capacity frees and the scheduler keeps placing.

Reported: acknowledged (201) submissions/s; placement answers/s (start decisions the
executor read); the latency of a submission (request to 201) and of a placement (201 to
the executor reading the job's start), p50 and p99; then a second run paced at half the
target rates (``--paced`` per second, open loop) for the latency there.

Separately, the engine in-process (no HTTP): jobs already in the store are admitted
(``--engine-jobs``), four threads report ``finished`` for what has started, in batches
(``Engine.report_many``, each batch durable before it returns); start decisions committed
per second.

The clients run on the same 2 cores as the server: what they spend is not the server's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql://postgres@127.0.0.1:5432/"
TARGET_SUBMIT = 500.0
TARGET_PLACE = {"rl": 300.0}  # heuristics: 1,000


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class Conn:
    """One keep-alive HTTP/1.1 connection (http.client: cheap on the client's side)."""

    def __init__(self, port: int, token: str):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        self.c.request(method, path, body=json.dumps(body) if body is not None else None,
                       headers=self.h)
        r = self.c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else {})


# -- stores --------------------------------------------------------------------------------
class FreshStore:
    def __init__(self, kind: str):
        self.kind = kind
        if kind == "sqlite":
            self.dir = tempfile.mkdtemp(prefix="af-load-")
            self.url = f"sqlite:///{self.dir}/load.db"
        else:
            import psycopg

            self.name = f"af_load_{uuid.uuid4().hex[:10]}"
            with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                                 autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{self.name}"')
            self.url = PG + self.name

    def drop(self) -> None:
        if self.kind == "sqlite":
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            import psycopg

            with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                                 autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, policy: str, port: int, log: Path) -> subprocess.Popen:
    fh = open(log, "ab")  # noqa: SIM115 (the server's log, kept with the process)
    proc = subprocess.Popen([sys.executable, "-m", "autoflow", "serve", "--db", url,
                             "--policy", policy, "--port", str(port), "--log-level", "warning"],
                            stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {log.read_text()[-2000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("serve not ready")


# -- one load run ----------------------------------------------------------------------------
class Executor:
    def __init__(self, port: int, token: str, cursor: int = 0, reporters: int = 1):
        self.port, self.token, self.cursor = port, token, cursor
        self.starts: dict[str, float] = {}  # job id -> when the executor read its start
        self.todo: queue.Queue = queue.Queue()
        self.halt = threading.Event()
        self.errors = 0
        self.threads = [threading.Thread(target=self._poll, daemon=True)]
        self.threads += [threading.Thread(target=self._report, daemon=True)
                         for _ in range(reporters)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.halt.set()
        for _ in self.threads:
            self.todo.put(None)
        for t in self.threads:
            t.join(10)

    def _poll(self) -> None:
        c = Conn(self.port, self.token)
        while not self.halt.is_set():
            _, page = c.call("GET", f"/v1/decisions?after={self.cursor}&wait=1&limit=5000")
            now = time.perf_counter()
            for d in page["decisions"]:
                if d["action"] == "start":
                    self.starts[d["job_id"]] = now
                    self.todo.put(d["job_id"])
            self.cursor = page["cursor"]

    def _report(self) -> None:
        """Reports what has finished in batches (``POST /v1/events``), as an executor
        that runs many jobs would: one request and one commit for all that finished."""
        c = Conn(self.port, self.token)
        while True:
            batch = [self.todo.get()]
            while len(batch) < 500:
                try:
                    batch.append(self.todo.get_nowait())
                except queue.Empty:
                    break
            jobs = [j for j in batch if j is not None]
            if jobs:
                status, body = c.call("POST", "/v1/events", {"events": [
                    {"job_id": j, "event": "finished"} for j in jobs]})
                if status != 200:
                    self.errors += len(jobs)
                else:
                    self.errors += sum(1 for r in body["results"] if "status" in r)
            if len(jobs) < len(batch):
                return


def submit_load(port: int, token: str, threads: int, seconds: float,
                rate: float | None) -> dict:
    """Closed loop (``rate`` None) or open loop at ``rate`` per second in all."""
    acked: dict[str, tuple[float, float]] = {}  # job id -> (sent, acknowledged)
    errors = [0]
    lock = threading.Lock()
    t0 = time.perf_counter()
    end = t0 + seconds

    def run(k: int) -> None:
        c = Conn(port, token)
        i = 0
        while True:
            if rate:
                due = t0 + (i * threads + k) / rate
                if due >= end:
                    return
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            elif time.perf_counter() >= end:
                return
            sent = time.perf_counter()
            status, body = c.call("POST", "/v1/jobs", {
                "num_gpus": 1, "duration_estimate_s": 60 + (i * 7 + k) % 3600,
                "user": f"u{k % 4}"})
            done = time.perf_counter()
            i += 1
            with lock:
                if status == 201:
                    acked[body["job_id"]] = (sent, done)
                else:
                    errors[0] += 1

    ts = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    return {"acked": acked, "errors": errors[0], "wall": wall}


def load_run(store_kind: str, policy: str, args) -> dict:
    store = FreshStore(store_kind)
    sys.path.insert(0, str(ROOT))
    from autoflow.service.store import Store

    s = Store(store.url)
    token = s.create_token("load", "admin")
    s.close()
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"af-load-{port}.log"
    proc = start_server(store.url, policy, port, log)
    out = {"store": store_kind, "policy": policy}
    try:
        c = Conn(port, token)
        status, _ = c.call("POST", "/v1/clusters", {"name": "lab", "nodes": [
            {"name": f"n{i}", "gpu_type": "a100", "gpus": 8} for i in range(args.nodes)]})
        assert status == 201
        cursor = 0
        clk = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:  # the server's CPU seconds so far (user + system)
            f = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / clk

        for label, rate in (("saturated", None), ("paced", args.paced)):
            ex = Executor(port, token, cursor)
            ex.start()
            c0 = cpu()
            r = submit_load(port, token, args.submitters, args.seconds, rate)
            time.sleep(1.5)  # the last placements
            ex.stop()
            served_cpu = cpu() - c0
            cursor = ex.cursor
            acked = r["acked"]
            lat = [(b - a) * 1000 for a, b in acked.values()]
            placed = [(ex.starts[j] - b) * 1000 for j, (_a, b) in acked.items()
                      if j in ex.starts]
            if not acked:
                raise RuntimeError(f"no submission acknowledged; server log {log}")
            first = min(a for a, _ in acked.values())
            in_window = [t for j, t in ex.starts.items() if j in acked]
            span = max(in_window) - first if in_window else float("nan")
            out[label] = {
                "submitted_per_s": len(acked) / r["wall"], "acked": len(acked),
                "errors": r["errors"] + ex.errors,
                "placed": len(in_window), "placed_per_s": len(in_window) / span,
                "submit_p50_ms": pct(lat, 0.5), "submit_p99_ms": pct(lat, 0.99),
                "place_p50_ms": pct(placed, 0.5), "place_p99_ms": pct(placed, 0.99),
                # server CPU per job (its submission, placement and finished report)
                "server_cpu_ms_per_job": served_cpu * 1000 / max(1, len(acked))}
            print(f"  {store_kind:10s} {policy:5s} {label:9s} "
                  + " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in out[label].items()), flush=True)
        out["backlog"] = drain_backlog(port, token, cursor, args.backlog, args.submitters)
        print(f"  {store_kind:10s} {policy:5s} backlog   "
              + " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in out["backlog"].items()), flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        store.drop()
    return out


def drain_backlog(port: int, token: str, cursor: int, n: int, threads: int) -> dict:
    """Placement answers/s over HTTP with a backlog: ``n`` jobs submitted with no executor
    running (the cluster fills, the rest wait; not timed), then the executor starts: it
    reads the starts, reports them finished in batches, and every freed GPU is placed
    again, until all ``n`` are placed. Rate: placements read per second from the
    executor's start."""
    ids: list[str] = []
    lock = threading.Lock()

    def run(k: int) -> None:
        c = Conn(port, token)
        for i in range(k, n, threads):
            status, body = c.call("POST", "/v1/jobs", {"num_gpus": 1,
                                                       "duration_estimate_s": 60 + i % 3600})
            if status == 201:
                with lock:
                    ids.append(body["job_id"])

    ts = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    want = set(ids)
    ex = Executor(port, token, cursor)
    t0 = time.perf_counter()
    ex.start()
    deadline = t0 + 600
    while sum(1 for j in list(ex.starts) if j in want) < len(want) and \
            time.perf_counter() < deadline:
        time.sleep(0.01)
    placed = [t for j, t in list(ex.starts.items()) if j in want]
    ex.stop()
    span = (max(placed) - t0) if placed else float("nan")
    return {"jobs": len(want), "placed": len(placed), "placed_per_s": len(placed) / span,
            "errors": ex.errors + n - len(want)}


# -- the engine in-process -------------------------------------------------------------------
def engine_run(store_kind: str, policy: str, jobs: int, nodes: int) -> dict:
    from autoflow.service.engine import Engine
    from autoflow.service.store import Store

    store = FreshStore(store_kind)
    try:
        s = Store(store.url)
        eng = Engine(s, policy)
        eng.add_cluster("lab", [{"name": f"n{i}", "gpu_type": "a100", "gpus": 8}
                                for i in range(nodes)])
        started: queue.Queue = queue.Queue()
        eng.on_decision.append(lambda d: started.put(d.job_id) if d.action == "start" else 0)
        eng.start()
        rows = [{"job_id": f"j{i}", "state": "pending", "submit_time": eng.clock.now(),
                 "spec": {"num_gpus": 1, "duration_estimate_s": 60 + (i * 7) % 3600},
                 "user": "", "num_gpus": 1, "kind": "training"} for i in range(jobs)]
        from sqlalchemy import insert

        from autoflow.service import tables

        s.writer.call(lambda c: c.execute(insert(tables.jobs), rows))  # stored: not timed

        def finisher() -> None:  # finished as soon as started, in batches: capacity frees
            while (job := started.get()) is not None:
                batch = [job]
                while len(batch) < 500:
                    try:
                        more = started.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        started.put(None)
                        break
                    batch.append(more)
                eng.report_many([{"job_id": j, "event": "finished"} for j in batch])

        finishers = [threading.Thread(target=finisher, daemon=True) for _ in range(4)]
        for f in finishers:
            f.start()
        t0 = time.perf_counter()
        for row in rows:  # admitted as the API does after the insert
            eng.admit(row)
        while eng.committed_seq < jobs:
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        for _ in finishers:
            started.put(None)
        for f in finishers:
            f.join(30)
        eng.stop()
        s.close()
        return {"store": store_kind, "policy": policy, "jobs": jobs,
                "decisions_per_s": jobs / wall, "wall_s": wall}
    finally:
        store.drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policies", default="fifo,las,rl")
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--submitters", type=int, default=8)
    ap.add_argument("--paced", type=float, default=TARGET_SUBMIT / 2,
                    help="submissions/s of the paced run (half the target)")
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--engine-jobs", type=int, default=3000)
    ap.add_argument("--backlog", type=int, default=3000,
                    help="jobs waiting when the placement-rate run starts")
    ap.add_argument("--only", choices=("all", "http", "engine"), default="all")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("AUTOFLOW_HOME", tempfile.mkdtemp(prefix="af-home-"))
    results: dict = {"http": [], "engine": []}
    stores = args.stores.split(",")
    policies = args.policies.split(",")
    if args.only in ("all", "engine"):
        print("engine in-process (no HTTP): start decisions committed per second")
        for st in stores:
            for p in policies:
                r = engine_run(st, p, args.engine_jobs, args.nodes)
                results["engine"].append(r)
                print(f"  {st:10s} {p:5s} {r['decisions_per_s']:8.0f}/s "
                      f"({r['jobs']} jobs in {r['wall_s']:.2f} s)", flush=True)
    if args.only in ("all", "http"):
        print(f"HTTP: {args.submitters} submitters, {args.seconds:g} s saturated, then "
              f"paced at {args.paced:g}/s")
        for st in stores:
            for p in policies:
                try:
                    results["http"].append(load_run(st, p, args))
                except Exception as e:  # noqa: BLE001 (reported; the other runs go on)
                    print(f"  {st:10s} {p:5s} FAILED: {type(e).__name__}: {e}", flush=True)
                    results["http"].append({"store": st, "policy": p, "error": repr(e)})
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
