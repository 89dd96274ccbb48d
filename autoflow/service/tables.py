"""The service's tables (SQLAlchemy Core). Alembic migrations (``migrations/``) create and
evolve them; this module is what the code reads and writes through.

- ``meta``: key/value facts of the store (the clock's origin).
- ``clusters``, ``nodes``: what ``POST /v1/clusters`` registered; a node's state
  (``up``, ``cordoned``, ``draining``, ``failed``) and last heartbeat.
- ``jobs``: every job ever submitted, with its state (pending, running, succeeded,
  failed, cancelled), placement and the service it received (attained GPU-seconds,
  checkpointed progress), so that a restart rebuilds the scheduler exactly; its
  ``workflow_id`` (also in ``spec``) is a column of its own, indexed, to find a
  workflow's jobs.
- ``job_events``: every outcome an executor reported, kept (the self-optimizing loop
  learns from them).
- ``decisions``: every start / preempt the scheduler issued, with its explanation; the
  ``seq`` is the cursor executors long-poll with.
- ``tokens``: API tokens, stored as their SHA-256 only.
- ``policy_changes``: every switch of the serving policy.
- ``models``, ``model_aliases``, ``alias_events``: the model registry
  (``autoflow.loop.registry``): every model by content hash, its aliases (``champion``,
  ``challenger``, ``previous``, ...) and every change of them with its reason.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

meta = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

clusters = Table(
    "clusters", metadata,
    Column("name", String(200), primary_key=True),
    Column("created_at", Float, nullable=False),
)

nodes = Table(
    "nodes", metadata,
    Column("name", String(200), primary_key=True),
    Column("cluster", String(200), ForeignKey("clusters.name"), nullable=False),
    Column("seq", Integer, nullable=False),  # registration order: the scheduler's node index
    Column("gpu_type", String(100), nullable=False),
    Column("gpus", Integer, nullable=False),
    Column("cpu_milli", BigInteger, nullable=False),
    Column("memory_mib", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),  # up, cordoned, draining, failed
    Column("last_heartbeat", Float),
)

jobs = Table(
    "jobs", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # submission order
    Column("job_id", String(200), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("submit_time", Float, nullable=False),  # cluster seconds (the service clock)
    Column("spec", JSON, nullable=False),  # the job as submitted (no true duration)
    Column("user", String(200), nullable=False, default=""),
    Column("num_gpus", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("placement", JSON),  # [[node name, [gpu indices], milli, cpu, mem], ...]
    Column("start_time", Float),  # start of the current (or last) run segment
    Column("first_start", Float),
    Column("finish_time", Float),
    Column("attained", Float, nullable=False, default=0.0),  # GPU-seconds received
    Column("progress", Float, nullable=False, default=0.0),  # checkpointed work, seconds
    Column("run_seconds", Float, nullable=False, default=0.0),
    Column("starts", Integer, nullable=False, default=0),
    Column("preemptions", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),
    Column("reason", Text),  # why it ended, for failed and cancelled jobs
    Column("workflow_id", String(200)),  # spec's workflow_id (None: in no workflow)
)
Index("ix_jobs_state", jobs.c.state)
Index("ix_jobs_user", jobs.c.user)
Index("ix_jobs_workflow_id", jobs.c.workflow_id)  # GET/DELETE /v1/workflows/{id}

job_events = Table(
    "job_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(200), nullable=False),
    Column("event", String(16), nullable=False),
    Column("time", Float, nullable=False),  # cluster seconds
    Column("received_at", Float, nullable=False),  # wall clock (epoch seconds)
    Column("detail", JSON),
)
Index("ix_job_events_job", job_events.c.job_id)

decisions = Table(
    "decisions", metadata,
    Column("seq", Integer, primary_key=True),
    Column("action", String(16), nullable=False),
    Column("job_id", String(200), nullable=False),
    Column("placement", JSON),
    Column("explanation", JSON),
    Column("policy", String(200), nullable=False),
    Column("time", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

tokens = Table(
    "tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

policy_changes = Table(
    "policy_changes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("policy", String(500), nullable=False),
    Column("previous", String(500)),
    Column("model_sha256", String(64)),
    Column("token_name", String(200)),
    Column("time", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

# -- the model registry (autoflow.loop.registry) -------------------------------------------
models = Table(
    "models", metadata,
    Column("sha256", String(64), primary_key=True),  # of the card: it records the weights'
    Column("kind", String(32), nullable=False),  # adaptive, predictor, generator, ...
    Column("name", String(200), nullable=False),
    Column("path", String(500), nullable=False),  # the stored copy, under the files folder
    Column("feature_schema", Text),  # a hash of the feature schema it reads
    Column("lineage", JSON, nullable=False),  # data window, parent, command, commit, ...
    Column("metrics", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

model_aliases = Table(
    "model_aliases", metadata,
    Column("alias", String(32), primary_key=True),  # champion, challenger, previous, ...
    Column("sha256", String(64), ForeignKey("models.sha256"), nullable=False),
    Column("set_at", Float, nullable=False),
)

alias_events = Table(
    "alias_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alias", String(32)),  # None for a registration
    Column("sha256", String(64)),  # the model the event is about (None: alias removed)
    Column("previous_sha256", String(64)),  # what the alias pointed at before
    Column("action", String(16), nullable=False),  # register, promote, reject, rollback, set
    Column("reason", Text, nullable=False),
    Column("evidence", JSON),
    Column("at", Float, nullable=False),  # wall clock (epoch seconds)
)
Index("ix_alias_events_sha256", alias_events.c.sha256)
