"""The durable store behind the service: every write is committed before it is answered.

One ``Store`` per service process, over SQLAlchemy Core (``tables``). A job that got a
201 is in the ``jobs`` table; a decision an executor can read is in ``decisions``; every
outcome an executor reported is in ``job_events``. On restart the engine rebuilds the
scheduler from ``nodes`` and the jobs that are pending or running.

A workflow has no table of its own: its jobs carry ``workflow_id`` and ``depends_on`` in
their ``spec``, and ``workflow_id`` also in an indexed column of its own, set from the
spec when the job is inserted (``workflow_jobs`` finds them by it); a run's jobs are
inserted in one transaction (``insert_jobs_awaited``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import AutoflowError
from . import tables as t
from .db import make_engine, migrate

ACTIVE = ("pending", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
STATES = (*ACTIVE, *TERMINAL)
SCOPES = ("admin", "executor", "submitter", "reader")
TOKEN_PREFIX = "af_"


class Conflict(AutoflowError):
    """A name that must be unique is taken (a job id, a node name)."""


log = logging.getLogger("autoflow.service")


class GroupCommit:
    """The store's one writer: work handed in from any thread is written in order, the
    work of every caller waiting at that moment in ONE transaction (one fsync on SQLite,
    one round trip of COMMIT on PostgreSQL), and each caller's future is resolved only
    after that transaction committed. If the transaction fails, its items are written
    again one per transaction, so that one bad item (a duplicate job id) fails alone.

    A caller that must answer only once its change is durable waits on the future
    (``Store.insert_job``: the 201 follows); the scheduling passes do not wait (their
    decisions become readable, and long-polls wake, when the commit is done)."""

    MAX_BATCH = 2000

    def __init__(self, engine):
        self.engine = engine
        self._items: list[tuple[Callable[[Connection], object], Future]] = []
        self._cv = threading.Condition()
        self._stop = False
        self._idle = True
        self._thread = threading.Thread(target=self._run, name="autoflow-writer",
                                        daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Connection], object]) -> Future:
        fut: Future = Future()
        with self._cv:
            if self._stop:
                raise AutoflowError("the store is closed")
            self._items.append((fn, fut))
            self._cv.notify_all()
        return fut

    def call(self, fn: Callable[[Connection], object]):
        return self.submit(fn).result()

    def drain(self) -> None:
        """Returns once everything handed in so far is written."""
        with self._cv:
            while self._items or not self._idle:
                self._cv.wait(1.0)

    def close(self) -> None:
        self.drain()
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._items and not self._stop:
                    self._idle = True
                    self._cv.notify_all()
                    self._cv.wait()
                if not self._items:
                    return
                batch = self._items[: self.MAX_BATCH]
                del self._items[: self.MAX_BATCH]
                self._idle = False
            self._write(batch)

    def _write(self, batch) -> None:
        try:
            results = []
            with self.engine.begin() as c:
                # rows handed in one by one for the same table (submissions) go in one
                # executemany (PostgreSQL: one pipeline, not one round trip a row)
                bulk: dict = {}
                for fn, _fut in batch:
                    spec = getattr(fn, "bulk_insert", None)
                    if spec is not None and len(batch) > 1:
                        bulk.setdefault(spec[0], []).append(spec[1])
                for table, rows in bulk.items():
                    c.execute(insert(table), rows)
                for fn, _fut in batch:
                    if bulk and getattr(fn, "bulk_insert", None) is not None:
                        results.append(None)
                    else:
                        results.append(fn(c))
        except Exception:  # noqa: BLE001 (each item again, alone: its own error)
            if len(batch) == 1:
                fn, fut = batch[0]
                try:
                    with self.engine.begin() as c:
                        r = fn(c)
                except Exception as e:  # noqa: BLE001 (handed to the caller)
                    fut.set_exception(e)
                else:
                    fut.set_result(r)
                return
            for item in batch:
                self._write([item])
            return
        for (_fn, fut), r in zip(batch, results, strict=True):
            fut.set_result(r)


def _job_values(row: dict) -> dict:
    """A job row as inserted: with its ``workflow_id`` column from its spec (every row
    has the key, so that rows inserted together form one multi-row INSERT)."""
    return {**row, "workflow_id": (row.get("spec") or {}).get("workflow_id") or None}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Store:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)
        self.origin = self._origin()
        self.writer = GroupCommit(self.engine)

    def close(self) -> None:
        self.writer.close()
        self.engine.dispose()

    def _origin(self) -> float:
        """Wall-clock epoch of cluster time 0, fixed when the store is created."""
        with self.engine.begin() as c:
            row = c.execute(select(t.meta.c.value).where(t.meta.c.key == "origin")).first()
            if row:
                return float(row[0])
            now = time.time()
            c.execute(insert(t.meta).values(key="origin", value=repr(now)))
            return now

    # -- clusters and nodes ---------------------------------------------------------
    def add_cluster(self, name: str, nodes: Sequence[dict]) -> None:
        now = time.time()
        try:
            with self.engine.begin() as c:
                if c.execute(select(t.clusters.c.name).where(t.clusters.c.name == name)).first():
                    raise Conflict(f"cluster {name!r} is registered already")
                taken = set(c.execute(select(t.nodes.c.name).where(
                    t.nodes.c.name.in_([n["name"] for n in nodes]))).scalars())
                if taken:
                    raise Conflict(f"node(s) {', '.join(sorted(taken))} registered already")
                seq = c.execute(select(func.coalesce(func.max(t.nodes.c.seq), -1))).scalar()
                c.execute(insert(t.clusters).values(name=name, created_at=now))
                c.execute(insert(t.nodes), [
                    {"name": n["name"], "cluster": name, "seq": seq + 1 + i,
                     "gpu_type": n["gpu_type"], "gpus": n["gpus"],
                     "cpu_milli": n.get("cpu_milli", 0), "memory_mib": n.get("memory_mib", 0),
                     "state": "up", "last_heartbeat": None} for i, n in enumerate(nodes)])
        except IntegrityError as e:  # a concurrent registration won
            raise Conflict(f"cluster {name!r} or one of its nodes is registered already") from e

    def nodes(self) -> list[dict]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(select(t.nodes).order_by(t.nodes.c.seq))]

    def set_node(self, name: str, **fields) -> None:
        with self.engine.begin() as c:
            c.execute(update(t.nodes).where(t.nodes.c.name == name).values(**fields))

    # -- jobs -------------------------------------------------------------------------
    def insert_job(self, row: dict) -> None:
        """Durable on return (the 201 follows): committed with whatever else is being
        written at the moment (group commit)."""
        self.inserted(row, self.insert_job_async(row))

    def insert_job_async(self, row: dict) -> Future:
        """The insert handed to the writer; its future resolves once it is committed
        (``inserted`` turns its outcome into the answer)."""
        values = _job_values(row)

        def write(c):
            return c.execute(insert(t.jobs), values)

        write.bulk_insert = (t.jobs, values)  # the writer may fold it into a multi-row INSERT
        return self.writer.submit(write)

    @staticmethod
    def inserted(row: dict, fut: Future) -> None:
        """Raises Conflict if the committed insert failed on a duplicate job id."""
        try:
            fut.result()
        except IntegrityError as e:
            raise Conflict(f"job {row['job_id']!r} exists already") from e

    async def insert_job_awaited(self, row: dict) -> None:
        """``insert_job`` for the event loop: awaits the commit without a thread."""
        fut = self.insert_job_async(row)
        try:
            await asyncio.wrap_future(fut)
        except IntegrityError as e:
            raise Conflict(f"job {row['job_id']!r} exists already") from e

    async def insert_jobs_awaited(self, rows: list[dict], what: str) -> None:
        """Several jobs (a workflow's run) in ONE transaction, all or none, awaited on the
        event loop: durable on return. Conflict (naming ``what``) if one id exists."""
        values = [_job_values(r) for r in rows]

        def write(c):
            return c.execute(insert(t.jobs), values)

        try:
            await asyncio.wrap_future(self.writer.submit(write))
        except IntegrityError as e:
            raise Conflict(f"{what}: a job of it exists already") from e

    def job_states(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Job id -> state, for those of ``job_ids`` that exist."""
        ids = list(dict.fromkeys(job_ids))
        out: dict[str, str] = {}
        with self.engine.connect() as c:
            for i in range(0, len(ids), 500):
                q = select(t.jobs.c.job_id, t.jobs.c.state).where(
                    t.jobs.c.job_id.in_(ids[i:i + 500]))
                out.update({jid: state for jid, state in c.execute(q)})
        return out

    def workflow_jobs(self, workflow_id: str, limit: int | None = None) -> list[dict]:
        """The jobs of a workflow (``workflow_id``: its indexed column), in submission
        order."""
        q = (select(t.jobs).where(t.jobs.c.workflow_id == workflow_id)
             .order_by(t.jobs.c.seq))
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def recent_workflows(self, scan: int = 5000) -> dict[str, float | None]:
        """The workflows of the latest ``scan`` jobs that are in one (newest by ``seq``),
        each with the latest ``finish_time`` among those jobs (None: none of them has
        ended): where the dashboard finds the workflows that ended last, reading at most
        ``scan`` rows however many jobs the store holds."""
        q = (select(t.jobs.c.workflow_id, t.jobs.c.finish_time)
             .where(t.jobs.c.workflow_id.is_not(None))
             .order_by(t.jobs.c.seq.desc()).limit(scan))
        out: dict[str, float | None] = {}
        with self.engine.connect() as c:
            for wid, finish in c.execute(q):
                last = out.get(wid)
                out[wid] = finish if last is None else (
                    last if finish is None else max(last, finish))
        return out

    def job(self, job_id: str) -> dict | None:
        with self.engine.connect() as c:
            r = c.execute(select(t.jobs).where(t.jobs.c.job_id == job_id)).first()
            return dict(r._mapping) if r else None

    def jobs(self, states: Iterable[str] = (), user: str | None = None,
             kind: str | None = None, after: int = 0, limit: int = 100) -> list[dict]:
        q = select(t.jobs).where(t.jobs.c.seq > after)
        states = list(states)
        if states:
            q = q.where(t.jobs.c.state.in_(states))
        if user is not None:
            q = q.where(t.jobs.c.user == user)
        if kind is not None:
            q = q.where(t.jobs.c.kind == kind)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q.order_by(t.jobs.c.seq).limit(limit))]

    def count_jobs(self) -> dict[str, int]:
        with self.engine.connect() as c:
            rows = c.execute(select(t.jobs.c.state, func.count()).group_by(t.jobs.c.state))
            return {s: n for s, n in rows}

    def completed_durations(self, limit: int = 10_000) -> list[dict]:
        """The latest succeeded jobs (spec and run time), oldest first: what the duration
        estimator learns from after a restart."""
        q = (select(t.jobs.c.spec, t.jobs.c.progress).where(t.jobs.c.state == "succeeded")
             .order_by(t.jobs.c.seq.desc()).limit(limit))
        with self.engine.connect() as c:
            return [{"spec": s, "duration": p} for s, p in reversed(c.execute(q).all())]

    # -- one transaction: decisions, job changes, events -----------------------------
    def commit(self, decisions: Sequence[dict] = (), jobs: Sequence[tuple[str, dict]] = (),
               events: Sequence[dict] = ()) -> None:
        """Decisions, job changes and events in one transaction; durable on return."""
        fut = self.commit_async(decisions, jobs, events)
        if fut is not None:
            fut.result()

    def commit_async(self, decisions: Sequence[dict] = (),
                     jobs: Sequence[tuple[str, dict]] = (),
                     events: Sequence[dict] = ()) -> Future | None:
        """As ``commit``, handed to the writer: the future is done once it is durable."""
        if not (decisions or jobs or events):
            return None
        decisions, events = list(decisions), list(events)
        by_keys: dict[tuple, list[dict]] = {}
        for job_id, fields in jobs:  # one executemany per set of columns (SET from the keys)
            by_keys.setdefault(tuple(sorted(fields)), []).append({**fields, "_id": job_id})

        def write(c: Connection) -> None:
            if decisions:
                c.execute(insert(t.decisions), decisions)
            for rows in by_keys.values():
                c.execute(update(t.jobs).where(t.jobs.c.job_id == bindparam("_id")), rows)
            if events:
                c.execute(insert(t.job_events), events)

        return self.writer.submit(write)

    def decisions_after(self, cursor: int, limit: int = 500) -> list[dict]:
        q = (select(t.decisions).where(t.decisions.c.seq > cursor)
             .order_by(t.decisions.c.seq).limit(limit))
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def last_decision(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.coalesce(func.max(t.decisions.c.seq), 0))).scalar())

    def events(self, job_id: str) -> list[dict]:
        q = select(t.job_events).where(t.job_events.c.job_id == job_id).order_by(
            t.job_events.c.id)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    # -- tokens -------------------------------------------------------------------------
    def create_token(self, name: str, scope: str) -> str:
        """A new random token (returned once; only its SHA-256 is stored)."""
        if scope not in SCOPES:
            raise AutoflowError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as c:
            c.execute(insert(t.tokens).values(name=name, scope=scope, sha256=token_hash(token),
                                              created_at=time.time(), revoked=False))
        return token

    def token(self, token: str) -> dict | None:
        """The live token's name and scope, or None."""
        q = select(t.tokens.c.name, t.tokens.c.scope).where(
            t.tokens.c.sha256 == token_hash(token), t.tokens.c.revoked.is_(False))
        with self.engine.connect() as c:
            r = c.execute(q).first()
            return dict(r._mapping) if r else None

    def tokens(self) -> list[dict]:
        q = select(t.tokens.c.id, t.tokens.c.name, t.tokens.c.scope, t.tokens.c.created_at,
                   t.tokens.c.revoked).order_by(t.tokens.c.id)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def revoke_token(self, name: str) -> int:
        with self.engine.begin() as c:
            return c.execute(update(t.tokens).where(t.tokens.c.name == name)
                             .values(revoked=True)).rowcount

    # -- policy -------------------------------------------------------------------------
    def record_policy(self, policy: str, previous: str | None, model_sha256: str | None,
                      token_name: str | None, at: float) -> None:
        with self.engine.begin() as c:
            c.execute(insert(t.policy_changes).values(
                policy=policy, previous=previous, model_sha256=model_sha256,
                token_name=token_name, time=at, created_at=time.time()))

    def policy_history(self, limit: int = 50) -> list[dict]:
        q = select(t.policy_changes).order_by(t.policy_changes.c.id.desc()).limit(limit)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]
