"""Helpers for the service tests: a real PostgreSQL database per test, a real
``autoflow serve`` subprocess on a free port, and an admin token for either."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432


def pg_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def pg_database():
    """A fresh PostgreSQL database (unique name), dropped afterwards; its URL. Skips only
    when no server is reachable and ``CI`` is unset (in CI a missing server fails)."""
    if not pg_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"CI: no PostgreSQL server on {PG_HOST}:{PG_PORT}")
        pytest.skip(f"no PostgreSQL server on {PG_HOST}:{PG_PORT}")
    import psycopg

    name = f"autoflow_test_{uuid.uuid4().hex[:12]}"
    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def until(cond, what: str, polls: int = 2000, every: float = 0.02):
    """Polls ``cond`` (the scheduler and the store's writer run on their own threads) and
    returns its first true value; fails naming ``what`` if it never comes (a hang guard
    bounding the loop, not a speed test)."""
    for _ in range(polls):
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"never happened: {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_token(db: str, scope: str = "admin", name: str = "test") -> str:
    """A token created the way an operator does (``autoflow tokens create``)."""
    out = subprocess.run([sys.executable, "-m", "autoflow", "tokens", "create", "--scope",
                          scope, "--name", name, "--db", db], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip().splitlines()[-1]


class Server:
    """``autoflow serve`` as a subprocess on 127.0.0.1 (uvicorn, the real thing)."""

    def __init__(self, db: str, log: Path, *args: str, port: int | None = None):
        self.db = db
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.args = args
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Server:
        self._fh = open(self.log, "ab")  # noqa: SIM115 (closed in stop/kill)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autoflow", "serve", "--db", self.db, "--port",
             str(self.port), "--log-level", "warning", *self.args],
            stdout=self._fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"autoflow serve exited {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"autoflow serve not ready in {timeout}s: "
                           f"{self.log.read_text(errors='replace')[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._fh.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._fh.close()
