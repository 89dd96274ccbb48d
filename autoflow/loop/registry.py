"""The model registry: every model and predictor by content hash, with its feature schema,
lineage and metrics, and the aliases that name the ones in use: ``champion`` (served),
``challenger`` (under evaluation), ``previous`` (the champion before the last swap), and
any other name matching ``[a-z][a-z0-9_-]{0,31}`` (MLflow's model aliases are the anchor).

Where things are:

* the records are in the service's store (``autoflow.service.tables``: ``models``,
  ``model_aliases``, ``alias_events``), the same SQLite file or PostgreSQL database as
  ``autoflow serve``'s, whose migrations add these tables to a store that predates them;
* the files are copied into a folder beside it, one subfolder per model,
  ``FILES/<sha256>/``. ``FILES`` by default: ``models/`` beside the database file for a
  SQLite URL (``sqlite:///autoflow-data/autoflow.db`` -> ``autoflow-data/models``), and
  ``autoflow-data/models`` under the current folder for PostgreSQL (pass ``files_dir``
  on a machine that shares the database but not that folder).

What is registered, and its content hash: a model is a *card* (JSON) that records the
sha256 of its weights, so the card's own sha256 is the model's:

* an adaptive (or rl) model: ``NAME.json`` whose ``weights`` names ``NAME.npz`` beside it
  (``agents.adaptive.export``); stored as the two files;
* a predictor: a folder holding ``model.json`` (its ``weights`` names ``trees.json`` or
  ``model.pt``; ``predict.models``), or an encoder folder (``encoder.json`` +
  ``encoder.pt``); stored as a copy of the whole folder;
* a generator: ``NAME`` with its card ``NAME.card.json`` beside it (``generators.card``).

The weights' sha256 must match what the card records before anything is copied, and again
on the copy (which is written to a temporary folder and renamed into place, so a model's
folder is whole or absent). Models are loaded only from the registry's own copies
(``path_of``), whose card and weights are hashed again there: a copy changed since it was
registered is refused.

Every change of an alias is one transaction that also writes its event (``alias_events``:
action, reason, evidence): ``promote`` (``previous`` := the champion, ``champion`` := the
model, ``challenger`` dropped if it named it), ``reject`` (the champion stays; why the
challenger lost is kept), ``rollback`` (``champion`` and ``previous`` swap: a second
rollback undoes the first), ``set`` (any other alias). ``register`` events record where a
model came from.
"""

from __future__ import annotations

import builtins
import functools
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Self

from sqlalchemy import delete, false, insert, or_, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .. import jsonsafe
from ..errors import ConfigError
from ..service import tables as t
from ..service.db import make_engine, migrate
from .model_files import (
    Layout,
    card_schema,
    content_hash,
    copy_synced,
    fsync_dir,
    inspect_model,
    schema_hash,
    weights_problem,
)

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)
NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")  # alias names and kinds
HEX_RE = re.compile(r"[0-9a-f]+")
MIN_PREFIX = 8  # hex characters of a sha256 prefix that names a model
KINDS = ("adaptive", "predictor", "generator")  # checked against their card's format
KIND_FORMATS = {"adaptive": "autoflow-adaptive/1", "predictor": "autoflow-predictor/1",
                "generator": "autoflow-generator-card/1"}  # generators.card.CARD_FORMAT
ACTIONS = ("register", "promote", "reject", "rollback", "set")
DEFAULT_FILES = Path("autoflow-data") / "models"

log = logging.getLogger("autoflow.loop.registry")


def _json_value(value, field: str, *, obj: bool):
    if value is None:
        return {} if obj else None
    if obj and not isinstance(value, dict):
        raise ConfigError(f"{field}: must be a JSON object (a dict), got "
                          f"{type(value).__name__}")
    clean = jsonsafe.finite(value)
    try:
        json.dumps(clean, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{field}: not JSON ({e})") from None
    return clean


def _reason(reason) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigError("reason: say why (a change of alias is recorded with its reason)")
    return reason.strip()


def _check_alias(name) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"alias {name!r}: must match [a-z][a-z0-9_-]{{0,31}}")
    if len(name) >= MIN_PREFIX and HEX_RE.fullmatch(name):
        raise ConfigError(f"alias {name!r}: reads as a sha256 prefix; use a name with a "
                          f"letter past f")
    return name


def _alias_order(name: str):
    return (ALIASES.index(name) if name in ALIASES else len(ALIASES), name)


def default_files_dir(url: str) -> Path:
    """``models/`` beside a SQLite database file; ``autoflow-data/models`` otherwise."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:" \
            and not u.database.startswith("file:"):
        return (Path(u.database).expanduser().parent / "models").resolve()
    return DEFAULT_FILES.resolve()


def _db_errors(fn):
    """A database that fails under a call is one ConfigError naming it."""
    @functools.wraps(fn)
    def wrapped(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except SQLAlchemyError as e:
            why = " ".join(str(getattr(e, "orig", None) or e).split())
            raise ConfigError(f"database {self.where}: {why}") from e
    return wrapped


class Registry:
    """The registry in the store at ``store_url`` (migrated on open), its files under
    ``files_dir`` (see the module docstring for the default)."""

    def __init__(self, store_url: str, files_dir: str | Path | None = None):
        self.url = store_url
        self.engine = make_engine(store_url)
        self.where = self.engine.url.render_as_string(hide_password=True)
        migrate(self.engine)
        self.files_dir = (Path(files_dir).expanduser().resolve() if files_dir is not None
                          else default_files_dir(store_url))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- registering ------------------------------------------------------------------------
    @_db_errors
    def register(self, path: str | Path, *, kind: str, name: str | None = None,
                 lineage: dict | None = None, metrics: dict | None = None,
                 feature_schema: str | dict | list | None = None) -> str:
        """Copies the model at ``path`` into the registry and records it; its sha256.
        The same content again returns the same hash and changes nothing (the first
        record, lineage and metrics included, is kept)."""
        if not isinstance(kind, str) or not NAME_RE.fullmatch(kind):
            raise ConfigError(f"kind {kind!r}: must match [a-z][a-z0-9_-]{{0,31}} (adaptive, "
                              f"predictor, generator, ...)")
        src = Path(path).expanduser()
        lay = inspect_model(src)
        card_path = lay.root / lay.card_name
        fmt = KIND_FORMATS.get(kind)
        if fmt and lay.card.get("format") != fmt:
            raise ConfigError(f"{card_path}: kind {kind} needs an {fmt} card, this one's "
                              f"format is {lay.card.get('format')!r}")
        if kind == "predictor" and not lay.folder:
            raise ConfigError(f"{src}: a predictor is registered by its folder (the one "
                              f"holding model.json)")
        problem = weights_problem(lay)
        if problem:
            raise ConfigError(f"{card_path}: {problem}: not registered")
        lineage = _json_value(lineage, "lineage", obj=True)
        metrics = _json_value(metrics, "metrics", obj=True)
        if feature_schema is None:
            schema = card_schema(lay.card)
        elif isinstance(feature_schema, str):
            schema = feature_schema
        else:
            schema = schema_hash(_json_value(feature_schema, "feature_schema", obj=False))
        if name is None:
            name = src.resolve().name if lay.folder else Path(lay.load_name or src).stem
        if not isinstance(name, str) or not name.strip() or len(name) > 200 \
                or any(ch in name for ch in "\r\n"):
            raise ConfigError(f"name {name!r}: must be one line of 1 to 200 characters")
        sha = lay.card_sha
        if self._row(sha) is not None:
            log.info("model %s is registered already: the first record is kept", sha[:12])
            return sha
        self._store_files(lay, sha, src)
        rel = sha if lay.folder else f"{sha}/{lay.load_name}"
        source = str(src.resolve())
        now = time.time()
        try:
            with self.engine.begin() as c:
                c.execute(insert(t.models).values(
                    sha256=sha, kind=kind, name=name.strip(), path=rel, feature_schema=schema,
                    lineage=lineage, metrics=metrics, created_at=now))
                c.execute(insert(t.alias_events).values(
                    alias=None, sha256=sha, previous_sha256=None, action="register",
                    reason=f"registered from {source}",
                    evidence={"source": source, "kind": kind}, at=now))
        except IntegrityError:
            if self._row(sha) is not None:  # registered at the same moment elsewhere
                return sha
            raise
        log.info("registered %s %s %s from %s", kind, name, sha[:12], source)
        return sha

    def _store_files(self, lay: Layout, sha: str, src: Path) -> None:
        """``files_dir/<sha>/``: written to a temporary folder, verified, renamed."""
        final = self.files_dir / sha
        try:
            self.files_dir.mkdir(parents=True, exist_ok=True)
            if final.exists() and self._intact(final, lay, sha):
                return  # left by an attempt whose record was not written
            tmp = Path(tempfile.mkdtemp(prefix=f".incoming-{sha[:12]}-", dir=self.files_dir))
        except OSError as e:
            raise ConfigError(f"{self.files_dir}: cannot write the registry's files: "
                              f"{e.strerror or e}") from None
        try:
            if lay.folder:
                shutil.copytree(lay.root, tmp, dirs_exist_ok=True, copy_function=copy_synced)
            else:
                for n in (lay.weights_name, lay.card_name):
                    copy_synced(lay.root / n, tmp / n)
            if not self._intact(tmp, lay, sha):  # the copy is what is kept: verify it
                raise ConfigError(f"{src}: changed while it was being registered: not "
                                  f"registered")
            fsync_dir(tmp)
            if final.exists():  # not intact (checked above) and not registered
                shutil.rmtree(final)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final.exists() and self._intact(final, lay, sha)):
                    raise  # not one written by a concurrent registration
            fsync_dir(self.files_dir)
        except OSError as e:
            raise ConfigError(f"{self.files_dir}: cannot copy {src} there: "
                              f"{e.strerror or e}") from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _intact(folder: Path, lay: Layout, sha: str) -> bool:
        try:
            stored = inspect_model(folder / lay.load_name if lay.load_name else folder)
        except ConfigError:
            return False
        return stored.card_sha == sha and weights_problem(stored) is None

    # -- reading ----------------------------------------------------------------------------
    def _row(self, sha: str) -> dict | None:
        with self.engine.connect() as c:
            r = c.execute(select(t.models).where(t.models.c.sha256 == sha)).first()
        return dict(r._mapping) if r else None

    def _resolve(self, c, ref) -> str | None:
        if not isinstance(ref, str) or not ref.strip():
            return None
        ref = ref.strip()
        got = c.execute(select(t.model_aliases.c.sha256)
                        .where(t.model_aliases.c.alias == ref)).scalar()
        if got:
            return got
        r = ref.lower()
        if not HEX_RE.fullmatch(r) or len(r) < MIN_PREFIX or len(r) > 64:
            return None
        if len(r) == 64:
            return c.execute(select(t.models.c.sha256)
                             .where(t.models.c.sha256 == r)).scalar()
        hits = c.execute(select(t.models.c.sha256)
                         .where(t.models.c.sha256.like(r + "%"))).scalars().all()
        if len(hits) > 1:
            raise ConfigError(f"model {ref!r}: ambiguous, {len(hits)} models' sha256 start "
                              f"with it; give more characters")
        return hits[0] if hits else None

    def _require(self, c, ref) -> str:
        sha = self._resolve(c, ref)
        if sha is None:
            raise ConfigError(f"model {ref!r}: not in the registry (name a model by an "
                              f"alias, its sha256 or a prefix of at least {MIN_PREFIX} hex "
                              f"characters)")
        return sha

    def _alias_sha(self, c, name: str) -> str | None:
        return c.execute(select(t.model_aliases.c.sha256)
                         .where(t.model_aliases.c.alias == name)).scalar()

    def _record(self, c, sha: str) -> dict:
        d = dict(c.execute(select(t.models).where(t.models.c.sha256 == sha)).one()._mapping)
        d["aliases"] = sorted(c.execute(select(t.model_aliases.c.alias)
                                        .where(t.model_aliases.c.sha256 == sha)).scalars(),
                              key=_alias_order)
        d["files"] = str(self.files_dir / d["path"])
        return d

    @_db_errors
    def get(self, ref: str) -> dict | None:
        """The model an alias, sha256 or unique prefix (>= 8 hex characters) names: its
        columns, ``aliases`` and ``files`` (the stored card, file or folder); None if
        none. An ambiguous prefix is a ConfigError."""
        with self.engine.connect() as c:
            sha = self._resolve(c, ref)
            return self._record(c, sha) if sha else None

    @_db_errors
    def list(self) -> list[dict]:
        """Every model, newest first, each with its aliases and files."""
        with self.engine.connect() as c:
            aliases: dict[str, list[str]] = {}
            for a, s in c.execute(select(t.model_aliases.c.alias, t.model_aliases.c.sha256)):
                aliases.setdefault(s, []).append(a)
            out = []
            for r in c.execute(select(t.models).order_by(t.models.c.created_at.desc(),
                                                         t.models.c.sha256)):
                d = dict(r._mapping)
                d["aliases"] = sorted(aliases.get(d["sha256"], []), key=_alias_order)
                d["files"] = str(self.files_dir / d["path"])
                out.append(d)
        return out

    @_db_errors
    def alias(self, name: str) -> dict | None:
        """The model the alias names (None if it is not set)."""
        with self.engine.connect() as c:
            sha = self._alias_sha(c, name)
            return self._record(c, sha) if sha else None

    @_db_errors
    def aliases(self) -> dict[str, str]:
        """Every alias and the sha256 it names."""
        with self.engine.connect() as c:
            return dict(c.execute(select(t.model_aliases.c.alias, t.model_aliases.c.sha256)
                                  .order_by(t.model_aliases.c.alias)).all())

    @_db_errors
    def events(self, limit: int = 100, sha: str | None = None) -> builtins.list[dict]:
        """The newest ``limit`` events, newest first; with ``sha`` (any ref) those about
        that model (as the subject or as what an alias named before)."""
        if type(limit) is not int or limit < 1:
            raise ConfigError(f"limit: must be a positive integer, got {limit!r}")
        with self.engine.connect() as c:
            q = select(t.alias_events).order_by(t.alias_events.c.id.desc()).limit(limit)
            if sha is not None:
                s = self._require(c, sha)
                q = q.where(or_(t.alias_events.c.sha256 == s,
                                t.alias_events.c.previous_sha256 == s))
            return [dict(r._mapping) for r in c.execute(q)]

    @_db_errors
    def path_of(self, ref: str) -> Path:
        """The registry's stored copy of the model (its card file, or its folder for a
        predictor; a generator's file), with card and weights hashed again: a copy
        changed since it was registered is a ConfigError."""
        with self.engine.connect() as c:
            sha = self._require(c, ref)
            row = dict(c.execute(select(t.models).where(t.models.c.sha256 == sha))
                       .one()._mapping)
        return self._verified(row)

    def _verified(self, row: dict) -> Path:
        sha, rel = row["sha256"], row["path"]
        if Path(rel).is_absolute() or ".." in Path(rel).parts or Path(rel).parts[:1] != (sha,):
            raise ConfigError(f"model {sha[:12]}: its record names {rel!r}, not a path "
                              f"under the registry's files")
        p = self.files_dir / rel
        what = f"model {sha[:12]} ({p})"
        if not p.exists():
            raise ConfigError(f"{what}: its stored copy is missing (files folder "
                              f"{self.files_dir})")
        try:
            lay = inspect_model(p)
        except ConfigError as e:
            raise ConfigError(f"{what}: changed since it was registered ({e})") from None
        if lay.card_sha != sha:
            raise ConfigError(f"{what}: changed since it was registered (its card's sha256 "
                              f"is now {lay.card_sha[:12]}…): refusing to load it")
        problem = weights_problem(lay)
        if problem:
            raise ConfigError(f"{what}: changed since it was registered ({problem}): "
                              f"refusing to load it")
        return p

    # -- aliases ----------------------------------------------------------------------------
    def _serialize(self, c) -> None:
        """Alias changes run one at a time: the transaction takes the write lock before it
        reads what the aliases name."""
        if c.dialect.name == "postgresql":
            c.execute(text("LOCK TABLE model_aliases IN SHARE ROW EXCLUSIVE MODE"))
        else:  # SQLite: a write (of nothing) begins the write transaction
            c.execute(update(t.model_aliases).where(false()).values(set_at=0.0))

    def _put(self, c, alias: str, sha: str | None, now: float) -> None:
        if sha is None:
            c.execute(delete(t.model_aliases).where(t.model_aliases.c.alias == alias))
            return
        n = c.execute(update(t.model_aliases).where(t.model_aliases.c.alias == alias)
                      .values(sha256=sha, set_at=now)).rowcount
        if not n:
            c.execute(insert(t.model_aliases).values(alias=alias, sha256=sha, set_at=now))

    def _event(self, c, action: str, alias: str | None, sha: str | None, prev: str | None,
               reason: str, evidence, now: float) -> dict:
        row = {"alias": alias, "sha256": sha, "previous_sha256": prev, "action": action,
               "reason": reason, "evidence": evidence, "at": now}
        eid = c.execute(insert(t.alias_events).values(**row)).inserted_primary_key[0]
        return {"id": eid, **row}

    def _verified_sha(self, c, sha: str) -> None:
        self._verified(dict(c.execute(select(t.models).where(t.models.c.sha256 == sha))
                            .one()._mapping))

    @_db_errors
    def promote(self, sha: str, *, reason: str, evidence=None) -> dict:
        """In one transaction: ``previous`` := the champion (if any), ``champion`` := the
        model (any ref), ``challenger`` dropped if it named it, and a ``promote`` event
        with the reason and evidence. The new champion's record. Its stored copy is
        verified first."""
        reason = _reason(reason)
        evidence = _json_value(evidence, "evidence", obj=False)
        with self.engine.begin() as c:
            self._serialize(c)
            new = self._require(c, sha)
            champ = self._alias_sha(c, CHAMPION)
            if champ == new:
                raise ConfigError(f"model {new[:12]} is the champion already")
            self._verified_sha(c, new)
            now = time.time()
            if champ:
                self._put(c, PREVIOUS, champ, now)
            self._put(c, CHAMPION, new, now)
            c.execute(delete(t.model_aliases).where(t.model_aliases.c.alias == CHALLENGER,
                                                    t.model_aliases.c.sha256 == new))
            self._event(c, "promote", CHAMPION, new, champ, reason, evidence, now)
            rec = self._record(c, new)
        log.info("promoted %s to champion (previous %s): %s", new[:12],
                 champ[:12] if champ else None, reason)
        return rec

    @_db_errors
    def reject(self, sha: str, *, reason: str, evidence=None) -> dict:
        """Records why the model (any ref; a challenger) was not promoted: a ``reject``
        event with the evidence. The champion stays, and no alias moves. The event."""
        reason = _reason(reason)
        evidence = _json_value(evidence, "evidence", obj=False)
        with self.engine.begin() as c:
            self._serialize(c)
            target = self._require(c, sha)
            champ = self._alias_sha(c, CHAMPION)
            if target == champ:
                raise ConfigError(f"model {target[:12]} is the champion: reject a "
                                  f"challenger, or roll the champion back")
            ev = self._event(c, "reject", CHAMPION, target, champ, reason, evidence,
                             time.time())
        log.info("rejected %s (champion %s stays): %s", target[:12],
                 champ[:12] if champ else None, reason)
        return ev

    @_db_errors
    def rollback(self, *, reason: str, evidence=None) -> dict:
        """``champion`` := ``previous`` and ``previous`` := the old champion (so a second
        rollback undoes the first), with a ``rollback`` event. The new champion's record;
        a ConfigError if there is no previous champion."""
        reason = _reason(reason)
        evidence = _json_value(evidence, "evidence", obj=False)
        with self.engine.begin() as c:
            self._serialize(c)
            prev = self._alias_sha(c, PREVIOUS)
            if not prev:
                raise ConfigError("no previous champion to roll back to (the alias "
                                  "'previous' is not set)")
            champ = self._alias_sha(c, CHAMPION)
            self._verified_sha(c, prev)
            now = time.time()
            self._put(c, CHAMPION, prev, now)
            self._put(c, PREVIOUS, champ, now)
            self._event(c, "rollback", CHAMPION, prev, champ, reason, evidence, now)
            rec = self._record(c, prev)
        log.info("rolled back to %s (from %s): %s", prev[:12],
                 champ[:12] if champ else None, reason)
        return rec

    @_db_errors
    def set_alias(self, name: str, sha: str | None, *, reason: str, evidence=None
                  ) -> dict | None:
        """Points the alias at the model (any ref), or removes it (``sha`` None), with a
        ``set`` event. ``champion`` and ``previous`` move only by promote and rollback.
        The model's record (None when removed)."""
        _check_alias(name)
        if name in (CHAMPION, PREVIOUS):
            raise ConfigError(f"alias {name!r}: moved only by promote and rollback (so that "
                              f"every swap and its reason are recorded)")
        reason = _reason(reason)
        evidence = _json_value(evidence, "evidence", obj=False)
        with self.engine.begin() as c:
            self._serialize(c)
            target = self._require(c, sha) if sha is not None else None
            old = self._alias_sha(c, name)
            now = time.time()
            self._put(c, name, target, now)
            self._event(c, "set", name, target, old, reason, evidence, now)
            return self._record(c, target) if target else None


__all__ = ["ALIASES", "CHALLENGER", "CHAMPION", "PREVIOUS", "Registry", "content_hash",
           "default_files_dir"]
