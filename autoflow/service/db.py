"""The store's database: an engine for ``--db URL`` and its schema brought up to date.

SQLite is the embedded default (``sqlite:///autoflow-data/autoflow.db``): journal in WAL
mode, ``synchronous=FULL`` (a commit is on disk before the service answers), a busy
timeout so that readers and the writer wait for each other instead of failing.
PostgreSQL by URL (``postgresql://user@host/db``, driven by psycopg 3). The schema is
Alembic's (``migrations/``): ``migrate`` upgrades any store to the head revision at start.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from ..errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created. Bad URLs are ConfigErrors."""
    try:
        u = make_url(url)
    except ArgumentError as e:
        raise ConfigError(f"--db {url}: not a database URL ({e})") from e
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend in ("postgresql", "postgres"):
        if u.drivername in ("postgresql", "postgres"):
            u = u.set(drivername="postgresql+psycopg")
        return create_engine(u, pool_size=10, max_overflow=20, pool_pre_ping=True)
    raise ConfigError(f"--db {url}: unsupported database {backend!r} (use sqlite:///PATH or "
                      f"postgresql://USER@HOST/DB)")


def migrate(engine: Engine) -> None:
    """Brings the schema to Alembic's head revision (creates it on an empty database)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as e:
        why = " ".join(str(e.orig).split())  # the driver's message, on one line
        raise ConfigError(f"database {engine.url.render_as_string(hide_password=True)}: "
                          f"cannot be reached or written ({why})") from e
    except SQLAlchemyError as e:
        raise ConfigError(f"database {engine.url.render_as_string(hide_password=True)}: "
                          f"migration failed ({e})") from e
