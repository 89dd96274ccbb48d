"""A built-in demo inference replica: a small torch model behind an HTTP server, so that
starting replicas (and the delay from a request for one to its being ready, against a
start-up SLO) can be measured on real processes, as ``train_loop`` does for training:

    python -m autoflow.demo.inference_replica --ready-file PATH [--port 0] \\
        [--load-time 0.5] [--seed 0] [--serve-for SECONDS]

It binds ``127.0.0.1:PORT`` first (``--port 0``: any free port) and says so on stderr,
then loads its model: an MLP whose weights are drawn from ``--seed`` (so replicas with
one seed answer alike), after sleeping ``--load-time`` seconds to stand for reading real
weights. While it loads, ``GET /healthz`` and ``POST /predict`` answer 503. Once loaded,
``GET /healthz`` answers 200 and ``POST /predict`` with ``{"inputs": [[16 numbers],
...]}`` answers ``{"outputs": [[4 numbers], ...]}``; a bad request gets a 4xx with a
one-line JSON ``{"error": ...}``, never a traceback. Then it writes ``PATH`` (atomically:
a reader sees the whole file or none) as JSON ``{"port", "pid", "host", "started_at",
"ready_at"}`` (``time.time()`` seconds). It serves until ``SIGTERM`` or ``SIGINT``
(status ``stopped``, also while loading) or for ``--serve-for`` seconds after it is
ready (status ``done``), and exits 0 printing its status as one JSON line on stdout.

``start_delay`` and ``slo_met`` read a ready file against the time the replica was asked
for.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FEATURES, HIDDEN, OUTPUTS = 16, 32, 4
HOST = "127.0.0.1"
MAX_BODY = 1 << 20  # bytes a /predict request may carry
MAX_BATCH = 1024  # inputs a /predict request may carry
_SLICE_S = 0.05  # seconds between looks for a stop request


def build_model(seed: int):
    """The replica's model: its weights are drawn from ``seed`` alone."""
    import torch

    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, HIDDEN), torch.nn.Tanh(),
                                torch.nn.Linear(HIDDEN, OUTPUTS))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


class BadRequest(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_inputs(body: bytes) -> list[list[float]]:
    """The ``inputs`` of a /predict body; ``BadRequest`` (one line) if it has none."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(400, f"body is not JSON ({type(e).__name__})") from None
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise BadRequest(400, 'body must be a JSON object {"inputs": [[...], ...]}')
    inputs = doc["inputs"]
    if not isinstance(inputs, list):
        raise BadRequest(400, "inputs must be a list of rows")
    if len(inputs) > MAX_BATCH:
        raise BadRequest(413, f"at most {MAX_BATCH} inputs a request, got {len(inputs)}")
    for i, row in enumerate(inputs):
        if not isinstance(row, list) or len(row) != FEATURES:
            raise BadRequest(400, f"inputs[{i}] must be a list of {FEATURES} numbers")
        for x in row:
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                raise BadRequest(400, f"inputs[{i}] must hold finite numbers, got "
                                      f"{json.dumps(x)[:40]}")
    return inputs


class Replica:
    """The server's state: the model once loaded, and how many predictions it served."""

    def __init__(self) -> None:
        self.model = None
        self.requests = 0
        self.lock = threading.Lock()

    def predict(self, inputs: list[list[float]]) -> list[list[float]]:
        import torch

        x = torch.tensor(inputs, dtype=torch.float32).reshape(len(inputs), FEATURES)
        with torch.inference_mode():
            y = self.model(x)
        with self.lock:
            self.requests += 1
        return y.tolist()


def _handler(replica: Replica) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "autoflow-replica/1"

        def log_message(self, format: str, *args: Any) -> None:  # http.server's name
            pass  # no line per request on stderr

        def _send(self, status: int, doc: dict) -> None:
            data = (json.dumps(doc) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": " ".join(str(message).split())})

        def do_GET(self) -> None:  # http.server's naming
            if self.path == "/healthz":
                if replica.model is None:
                    self._send(503, {"status": "loading"})
                else:
                    self._send(200, {"status": "ready"})
            elif self.path == "/predict":
                self._error(405, "use POST /predict")
            else:
                self._error(404, f"no such path: {self.path[:80]}")

        def do_POST(self) -> None:  # http.server's naming
            if self.path != "/predict":
                if self.path == "/healthz":
                    self._error(405, "use GET /healthz")
                else:
                    self._error(404, f"no such path: {self.path[:80]}")
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._error(411, "a Content-Length header is required")
                return
            if not 0 <= length <= MAX_BODY:
                self.close_connection = True  # the body is not read
                self._error(413, f"body must be at most {MAX_BODY} bytes, got {length}")
                return
            body = self.rfile.read(length)
            if replica.model is None:
                self._error(503, "model is loading")
                return
            try:
                inputs = parse_inputs(body)
                self._send(200, {"outputs": replica.predict(inputs)})
            except BadRequest as e:
                self._error(e.status, str(e))
            except Exception as e:  # noqa: BLE001 - a bug answers 500, not a traceback
                self._error(500, f"{type(e).__name__}: {e}")

    return Handler


def _write_ready(path: Path, doc: dict) -> None:
    from autoflow import atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(doc) + "\n")


def read_ready_file(ready_file: str | Path) -> dict:
    """The ready file's contents. A missing file (the replica is not ready) is
    ``FileNotFoundError``; a file that is not a ready file is a ``ValueError`` naming
    it."""
    p = Path(ready_file)
    text = p.read_text()
    try:
        doc = json.loads(text)
        ready_at = float(doc["ready_at"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{p}: not a replica's ready file ({type(e).__name__}: {e})") from None
    if not math.isfinite(ready_at):
        raise ValueError(f"{p}: ready_at must be a finite time, got {doc['ready_at']!r}")
    return doc


def start_delay(submitted_at: float, ready_file: str | Path) -> float:
    """Seconds from ``submitted_at`` (when the replica was asked for, ``time.time()``)
    to its being ready. A ready file older than ``submitted_at`` belongs to an earlier
    replica and is a ``ValueError``."""
    if not math.isfinite(submitted_at):
        raise ValueError(f"submitted_at must be a finite time, got {submitted_at!r}")
    ready_at = float(read_ready_file(ready_file)["ready_at"])
    if ready_at < submitted_at:
        raise ValueError(f"{ready_file}: ready at {ready_at:.3f}, before the replica was "
                         f"asked for at {submitted_at:.3f} (a stale ready file?)")
    return ready_at - submitted_at


def slo_met(submitted_at: float, ready_file: str | Path, slo_s: float) -> bool:
    """Whether the replica was ready within ``slo_s`` seconds of ``submitted_at``."""
    if not (math.isfinite(slo_s) and slo_s >= 0):
        raise ValueError(f"slo_s must be a finite number >= 0, got {slo_s!r}")
    return start_delay(submitted_at, ready_file) <= slo_s


def main(argv: list[str] | None = None) -> int:
    started_at = time.time()
    asked: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: asked.append(signum))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    job_dir = os.environ.get("AUTOFLOW_CHECKPOINT_DIR")  # set for a job run by autoflow
    ap.add_argument("--ready-file", required=job_dir is None,
                    default=None if job_dir is None else os.path.join(job_dir, "ready.json"),
                    help="default: $AUTOFLOW_CHECKPOINT_DIR/ready.json (set when autoflow "
                    "runs the job)")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (default)")
    ap.add_argument("--load-time", type=float, default=0.5,
                    help="seconds loading the model takes at least (default 0.5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--serve-for", type=float, default=None,
                    help="seconds to serve once ready (default: until SIGTERM)")
    args = ap.parse_args(argv)
    for name in ("load_time", "serve_for"):
        v = getattr(args, name)
        if v is not None and not (math.isfinite(v) and v >= 0):
            ap.error(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v}")
    if not 0 <= args.port <= 65535:
        ap.error(f"--port must be 0..65535, got {args.port}")

    replica = Replica()
    try:
        server = ThreadingHTTPServer((HOST, args.port), _handler(replica))
    except OSError as e:
        print(f"error: cannot listen on {HOST}:{args.port}: {e}", file=sys.stderr)
        return 2
    server.daemon_threads = True
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    print(f"listening on {HOST}:{port} (loading)", file=sys.stderr, flush=True)
    status, ready_at = "stopped", None
    try:
        deadline = time.monotonic() + args.load_time  # stands in for reading weights
        while not asked and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(_SLICE_S, left))
        if not asked:
            replica.model = build_model(args.seed)
            ready_at = time.time()
            _write_ready(Path(args.ready_file), {"port": port, "pid": os.getpid(),
                                                 "host": HOST, "started_at": started_at,
                                                 "ready_at": ready_at})
            end = math.inf if args.serve_for is None else time.monotonic() + args.serve_for
            while not asked and (left := end - time.monotonic()) > 0:
                time.sleep(min(_SLICE_S, left))
            if not asked:
                status = "done"
    except OSError as e:  # the ready file cannot be written
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        server.shutdown()
        server.server_close()
    print(json.dumps({"status": status, "port": port, "seed": args.seed,
                      "requests": replica.requests, "started_at": started_at,
                      "ready_at": ready_at, "ended_at": time.time()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
