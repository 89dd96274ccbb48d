"""The durable store behind the service: every write is committed before it is answered.

One ``Store`` per service process, over SQLAlchemy Core (``tables``). A job that got a
201 is in the ``jobs`` table; a decision an executor can read is in ``decisions``; every
outcome an executor reported is in ``job_events``. On restart the engine rebuilds the
scheduler from ``nodes`` and the jobs that are pending or running.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable, Sequence

from sqlalchemy import func, insert, select, update
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


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Store:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)
        self.origin = self._origin()

    def close(self) -> None:
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
        """Durable on return (the 201 follows)."""
        try:
            with self.engine.begin() as c:
                c.execute(insert(t.jobs).values(**row))
        except IntegrityError as e:
            raise Conflict(f"job {row['job_id']!r} exists already") from e

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
        if not (decisions or jobs or events):
            return
        with self.engine.begin() as c:
            if decisions:
                c.execute(insert(t.decisions), list(decisions))
            for job_id, fields in jobs:
                c.execute(update(t.jobs).where(t.jobs.c.job_id == job_id).values(**fields))
            if events:
                c.execute(insert(t.job_events), list(events))

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
