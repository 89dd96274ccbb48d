"""The model registry (``autoflow.loop.registry``) and ``autoflow models list|show|register|
promote|rollback``: on a real SQLite file and a real PostgreSQL database (``servicekit``)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from autoflow.agents.adaptive import CANDIDATES, Selector, export
from autoflow.agents.adaptive import load as load_adaptive
from autoflow.envs.workload_features import obs_size
from servicekit import pg_database
from sqlalchemy import insert, inspect
from test_base_install import _cli, _one_line_error
from typer.testing import CliRunner

from autoflow import trust
from autoflow.cli import app
from autoflow.errors import ConfigError
from autoflow.loop.registry import Registry, content_hash, default_files_dir
from autoflow.service import tables as t
from autoflow.service.db import MIGRATIONS, make_engine, migrate

PREDICTOR = Path(__file__).resolve().parents[1] / "autoflow" / "models" / "predictor-v1"
runner = CliRunner()


def adaptive_model(folder: Path, seed: int = 0, name: str = "m") -> Path:
    """A real adaptive model (card NAME.json + weights NAME.npz); its card's path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n, k = obs_size(len(CANDIDATES)), len(CANDIDATES)
    sel = Selector([(rng.normal(size=(n, 8)).astype(np.float32),
                     rng.normal(size=8).astype(np.float32)),
                    (rng.normal(size=(8, k)).astype(np.float32), np.zeros(k, np.float32))])
    export(sel, CANDIDATES, folder / name, {"trained_with": f"seed {seed}"})
    return folder / f"{name}.json"


def predictor_folder(tmp_path: Path) -> Path:
    dst = tmp_path / "predictor"
    shutil.copytree(PREDICTOR, dst)
    return dst


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/data/autoflow.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request, tmp_path):
    """A registry on a fresh SQLite file, or on a fresh PostgreSQL database (skipped only
    when no server is reachable and CI is unset)."""
    if request.param == "sqlite":
        reg = Registry(f"sqlite:///{tmp_path}/data/autoflow.db")
        yield reg
        reg.close()
        return
    with pg_database() as url:
        reg = Registry(url, tmp_path / "pg-files")
        yield reg
        reg.close()


# -- registering ------------------------------------------------------------------------------
def test_register_copies_files_and_is_idempotent(tmp_path, sqlite_url):
    card = adaptive_model(tmp_path / "src")
    reg = Registry(sqlite_url)
    assert reg.files_dir == (tmp_path / "data" / "models").resolve()  # beside the db file
    sha = reg.register(card, kind="adaptive", lineage={"window": [0, 3600], "parent": None},
                       metrics={"avg_jct": 12.5})
    assert sha == trust.sha256_file(card) == content_hash(card)
    stored = reg.files_dir / sha
    assert sorted(p.name for p in stored.iterdir()) == ["m.json", "m.npz"]
    assert (stored / "m.npz").read_bytes() == (tmp_path / "src" / "m.npz").read_bytes()
    assert not [p for p in reg.files_dir.iterdir() if p.name.startswith(".")]  # no temp left
    rec = reg.get(sha)
    assert rec["kind"] == "adaptive" and rec["name"] == "m"
    assert rec["files"] == str(stored / "m.json") and rec["aliases"] == []
    assert rec["lineage"] == {"window": [0, 3600], "parent": None}
    card_json = json.loads(card.read_text())
    assert rec["feature_schema"] == card_json["feature_schema"]
    # again, with other lineage: same hash, the first record kept, no second event
    again = reg.register(card, kind="adaptive", name="other", lineage={"window": [5, 6]},
                         metrics={"avg_jct": 1.0})
    assert again == sha
    assert reg.get(sha)["lineage"] == {"window": [0, 3600], "parent": None}
    assert reg.get(sha)["name"] == "m" and reg.get(sha)["metrics"] == {"avg_jct": 12.5}
    assert [e["action"] for e in reg.events(sha=sha)] == ["register"]
    assert len(reg.list()) == 1
    # the registry's copy loads, and only it is handed out
    selector, cands, _ = load_adaptive(reg.path_of(sha))
    assert cands == CANDIDATES and len(selector.layers) == 2
    # the source may go away: the registry keeps its own copy
    shutil.rmtree(tmp_path / "src")
    assert reg.path_of(sha) == stored / "m.json"
    reg.close()


def test_register_a_predictor_folder_whole(tmp_path, sqlite_url):
    from autoflow.predict import models as pm

    folder = predictor_folder(tmp_path)
    reg = Registry(sqlite_url, tmp_path / "files")
    sha = reg.register(folder, kind="predictor", name="gbm-v1")
    assert sha == trust.sha256_file(folder / "model.json")
    stored = reg.path_of(sha)
    assert stored == (tmp_path / "files" / sha).resolve() and stored.is_dir()
    assert sorted(p.name for p in stored.iterdir()) == sorted(p.name for p in folder.iterdir())
    rec = reg.get(sha)
    assert rec["kind"] == "predictor" and rec["files"] == str(stored)
    assert rec["feature_schema"] and len(rec["feature_schema"]) == 16  # hash of the schema
    assert pm.load(stored).meta["kind"] == "gbm"  # the stored copy loads as a predictor
    reg.close()


def test_register_a_generator_by_its_file(tmp_path, sqlite_url):
    from autoflow.generators.generator import fit_generator, load_generator
    from simdata import mixed_workload

    gen = tmp_path / "g" / "window.npz"
    fit_generator(mixed_workload(), model="empirical", seed=0).save(gen)
    reg = Registry(sqlite_url)
    sha = reg.register(gen, kind="generator")
    assert sha == trust.sha256_file(gen.with_name("window.npz.card.json"))
    assert reg.register(gen.with_name("window.npz.card.json"), kind="generator") == sha
    stored = reg.path_of(sha)
    assert stored.name == "window.npz"
    assert load_generator(stored).model_name == "empirical"
    reg.close()


def test_tampered_weights_are_refused(tmp_path, sqlite_url):
    card = adaptive_model(tmp_path / "src")
    npz = card.with_suffix(".npz")
    data = npz.read_bytes()
    npz.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])  # one bit flipped
    reg = Registry(sqlite_url)
    with pytest.raises(ConfigError, match="m.npz does not match the sha256") as e:
        reg.register(card, kind="adaptive")
    assert str(card) in str(e.value) and "\n" not in str(e.value)
    folder = predictor_folder(tmp_path)
    (folder / "trees.json").write_text("{}")
    with pytest.raises(ConfigError, match="trees.json does not match"):
        reg.register(folder, kind="predictor")
    assert reg.list() == [] and reg.events() == []
    assert not reg.files_dir.exists() or not any(reg.files_dir.iterdir())
    reg.close()


def test_bad_input_is_one_line_naming_the_file_or_field(tmp_path, sqlite_url):
    reg = Registry(sqlite_url)
    card = adaptive_model(tmp_path / "src")
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "escape.json").write_text('{"weights": "../m.npz", "sha256": "' + "0" * 64
                                          + '"}')
    (tmp_path / "empty").mkdir()
    cases = [
        ({"path": tmp_path / "nothing.json", "kind": "adaptive"}, "nothing.json: no such file"),
        ({"path": tmp_path / "notes.json", "kind": "rl"}, "notes.json: not a model card"),
        ({"path": tmp_path / "bad.json", "kind": "rl"}, "bad.json: not a JSON model card"),
        ({"path": tmp_path / "escape.json", "kind": "rl"}, "must name a file beside it"),
        ({"path": tmp_path / "empty", "kind": "predictor"}, "holds neither"),
        ({"path": card, "kind": "predictor"}, "kind predictor needs an autoflow-predictor/1"),
        ({"path": card, "kind": "Bad Kind"}, "kind 'Bad Kind'"),
        ({"path": card, "kind": "adaptive", "lineage": ["x"]}, "lineage: must be a JSON object"),
        ({"path": card, "kind": "adaptive", "metrics": {"x": object()}}, "metrics: not JSON"),
    ]
    for kwargs, needle in cases:
        path = kwargs.pop("path")
        with pytest.raises(ConfigError) as e:
            reg.register(path, **kwargs)
        assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert reg.list() == []
    reg.close()


def test_a_stored_copy_changed_later_is_refused(tmp_path, sqlite_url):
    reg = Registry(sqlite_url)
    a = reg.register(adaptive_model(tmp_path / "a", seed=1), kind="adaptive")
    b = reg.register(adaptive_model(tmp_path / "b", seed=2), kind="adaptive")
    npz = reg.files_dir / a / "m.npz"
    npz.write_bytes(npz.read_bytes() + b"more")
    with pytest.raises(ConfigError, match="changed since it was registered"):
        reg.path_of(a)
    with pytest.raises(ConfigError, match="changed since it was registered"):
        reg.promote(a, reason="would serve a changed file")
    assert reg.alias("champion") is None  # nothing moved
    card = reg.files_dir / b / "m.json"
    card.write_text(card.read_text().replace("seed 2", "seed 9"))
    with pytest.raises(ConfigError, match=f"model {b[:12]}.*changed since it was registered"):
        reg.path_of(b)
    shutil.rmtree(reg.files_dir / b)
    with pytest.raises(ConfigError, match="stored copy is missing"):
        reg.path_of(b)
    reg.close()


# -- aliases ----------------------------------------------------------------------------------
def _three(reg: Registry, tmp_path: Path) -> tuple[str, str, str]:
    return tuple(reg.register(adaptive_model(tmp_path / f"s{i}", seed=i), kind="adaptive",
                              lineage={"seed": i}) for i in range(3))


def test_promote_moves_champion_and_previous_in_one_step(registry, tmp_path):
    reg = registry
    a, b, _c = _three(reg, tmp_path)
    first = reg.promote(a, reason="first champion")
    assert first["sha256"] == a and first["aliases"] == ["champion"]
    assert reg.alias("previous") is None
    reg.set_alias("challenger", b, reason="trained on the last day")
    evidence = {"paired_runs": 8, "jct_ratio": 0.91, "p_value": 0.01}
    rec = reg.promote("challenger", reason="beats the champion", evidence=evidence)
    assert rec["sha256"] == b and rec["aliases"] == ["champion"]  # challenger dropped
    assert reg.aliases() == {"champion": b, "previous": a}
    assert reg.get("previous")["aliases"] == ["previous"]
    ev = reg.events(limit=1)[0]
    assert ev["action"] == "promote" and ev["alias"] == "champion"
    assert (ev["sha256"], ev["previous_sha256"]) == (b, a)
    assert ev["reason"] == "beats the champion" and ev["evidence"] == evidence
    with pytest.raises(ConfigError, match="is the champion already"):
        reg.promote(b, reason="again")
    with pytest.raises(ConfigError, match="reason"):
        reg.promote(a, reason="  ")
    assert reg.aliases() == {"champion": b, "previous": a}


def test_reject_keeps_the_champion_and_records_why(registry, tmp_path):
    reg = registry
    a, b, _c = _three(reg, tmp_path)
    reg.promote(a, reason="first")
    reg.set_alias("challenger", b, reason="candidate")
    evidence = {"jct_ratio": 1.07, "verdict": "worse on 6 of 8 windows"}
    ev = reg.reject("challenger", reason="slower than the champion", evidence=evidence)
    assert ev["action"] == "reject" and (ev["sha256"], ev["previous_sha256"]) == (b, a)
    assert reg.alias("champion")["sha256"] == a
    got = reg.events(sha=b)
    assert [e["action"] for e in got] == ["reject", "set", "register"]
    assert got[0]["evidence"] == evidence and got[0]["reason"] == "slower than the champion"
    with pytest.raises(ConfigError, match="is the champion"):
        reg.reject(a, reason="no")


def test_rollback_twice_returns_to_the_start(registry, tmp_path):
    reg = registry
    a, b, _c = _three(reg, tmp_path)
    with pytest.raises(ConfigError, match="no previous champion"):
        reg.rollback(reason="nothing to go back to")
    reg.promote(a, reason="first")
    with pytest.raises(ConfigError, match="no previous champion"):
        reg.rollback(reason="still nothing")
    reg.promote(b, reason="second")
    start = reg.aliases()
    back = reg.rollback(reason="regressed in production")
    assert back["sha256"] == a and reg.aliases() == {"champion": a, "previous": b}
    again = reg.rollback(reason="the regression was the cluster, not the model")
    assert again["sha256"] == b and reg.aliases() == start
    rb = [e for e in reg.events() if e["action"] == "rollback"]
    assert [(e["sha256"], e["previous_sha256"]) for e in rb] == [(b, a), (a, b)]
    assert rb[1]["reason"] == "regressed in production"


def test_concurrent_promotions_are_serialized(registry, tmp_path):
    """Two promotions at once: one wins, and the other's champion becomes previous
    (neither reads a champion the other already replaced)."""
    reg = registry
    a, b, c = _three(reg, tmp_path)
    reg.promote(a, reason="first")
    other = Registry(reg.url, reg.files_dir)  # a second process, in effect
    errors = []

    def promote(r, sha):
        try:
            r.promote(sha, reason=f"promote {sha[:8]}")
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=promote, args=(reg, b)),
               threading.Thread(target=promote, args=(other, c))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    other.close()
    assert not errors
    final = reg.aliases()
    assert {final["champion"], final["previous"]} == {b, c}
    promotes = [e for e in reg.events() if e["action"] == "promote"]
    assert promotes[0]["previous_sha256"] == promotes[1]["sha256"]  # a chain, no fork


def test_refs_alias_full_hash_prefix_and_ambiguous(registry, tmp_path):
    reg = registry
    a, b, _c = _three(reg, tmp_path)
    reg.promote(a, reason="first")
    assert reg.get("champion")["sha256"] == a
    assert reg.get(a)["sha256"] == a and reg.get(a.upper())["sha256"] == a
    assert reg.get(b[:8])["sha256"] == b and reg.get(b[:20])["sha256"] == b
    assert reg.get(b[:7]) is None  # too short to name a model
    assert reg.get("f" * 64) is None and reg.get("nosuchalias") is None
    # two models whose hashes share a prefix
    with reg.engine.begin() as conn:
        for tail in ("1", "2"):
            conn.execute(insert(t.models).values(
                sha256="abcdef01" + tail * 56, kind="adaptive", name=tail,
                path="abcdef01" + tail * 56, lineage={}, metrics={}, created_at=0.0))
    with pytest.raises(ConfigError, match="ambiguous, 2 models"):
        reg.get("abcdef01")
    assert reg.get("abcdef011")["name"] == "1"
    with pytest.raises(ConfigError, match="not in the registry"):
        reg.path_of("nosuchalias")
    with pytest.raises(ConfigError, match="not in the registry"):
        reg.promote("0123456789", reason="x")


def test_other_aliases(registry, tmp_path):
    reg = registry
    a, b, _c = _three(reg, tmp_path)
    rec = reg.set_alias("canary-1", b, reason="10% of the traffic")
    assert rec["aliases"] == ["canary-1"] and reg.alias("canary-1")["sha256"] == b
    assert reg.set_alias("canary-1", None, reason="done") is None
    assert reg.alias("canary-1") is None
    for bad in ("Champion!", "9lives", "abcdef0123", "x" * 33):
        with pytest.raises(ConfigError, match="alias"):
            reg.set_alias(bad, a, reason="x")
    for managed in ("champion", "previous"):
        with pytest.raises(ConfigError, match="moved only by promote and rollback"):
            reg.set_alias(managed, a, reason="x")
    sets = [e for e in reg.events() if e["action"] == "set"]
    assert [(e["sha256"], e["previous_sha256"]) for e in sets] == [(None, b), (b, None)]
    listed = reg.list()
    assert listed[0]["sha256"] == _c  # newest first
    assert all("aliases" in r and "files" in r for r in listed)


# -- the store ---------------------------------------------------------------------------------
def _alembic_cfg(conn):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def test_the_migration_adds_the_tables_to_an_existing_store(tmp_path, sqlite_url):
    from alembic import command

    from autoflow.service.store import Store

    engine = make_engine(sqlite_url)
    with engine.begin() as conn:  # a store as the service left it before the registry
        command.upgrade(_alembic_cfg(conn), "0001")
    with engine.begin() as conn:
        conn.execute(insert(t.clusters).values(name="c1", created_at=1.0))
    assert "models" not in inspect(engine).get_table_names()
    reg = Registry(sqlite_url)
    assert {"models", "model_aliases", "alias_events"} <= set(
        inspect(engine).get_table_names())
    sha = reg.register(adaptive_model(tmp_path / "m"), kind="adaptive")
    reg.promote(sha, reason="first")
    store = Store(sqlite_url)  # the service on the same store, beside the registry
    assert store.nodes() == [] and store.origin > 0
    store.close()
    with engine.connect() as conn:
        assert conn.execute(t.clusters.select()).first().name == "c1"  # nothing lost
    assert reg.alias("champion")["sha256"] == sha
    reg.close()
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migrations_match_the_tables(backend, tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def check(url):
        engine = make_engine(url)
        migrate(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
        engine.dispose()
        assert diff == []

    if backend == "sqlite":
        check(f"sqlite:///{tmp_path}/m.db")
    else:
        with pg_database() as url:
            check(url)


def test_default_files_folder():
    assert default_files_dir("sqlite:///autoflow-data/autoflow.db") == (
        Path("autoflow-data/models").resolve())
    assert default_files_dir("sqlite:////srv/af/store.db") == Path("/srv/af/models")
    assert default_files_dir("postgresql://u@h/db") == Path("autoflow-data/models").resolve()


# -- the CLI -----------------------------------------------------------------------------------
def _ok(args):
    r = runner.invoke(app, ["models", *args])
    assert r.exit_code == 0, r.output
    return r


def _error(args, *needles):
    r = runner.invoke(app, ["models", *args])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_cli_end_to_end_on_sqlite(tmp_path):
    db = f"sqlite:///{tmp_path}/store/autoflow.db"
    card = adaptive_model(tmp_path / "src", seed=4)
    folder = predictor_folder(tmp_path)
    flags = ["--db", db]
    r = _ok(["register", str(card), "--kind", "adaptive", "--lineage",
             '{"window": "2026-11-01/2026-11-08", "commit": "abc123"}', "--metrics",
             '{"avg_jct": 812.5}', *flags])
    a = trust.sha256_file(card)
    assert f"registered {a}" in r.output
    assert "already registered" in _ok(["register", str(card), "--kind", "adaptive",
                                        *flags]).output
    p = trust.sha256_file(folder / "model.json")
    _ok(["register", str(folder), "--kind", "predictor", "--name", "gbm", *flags])
    assert (tmp_path / "store" / "models" / p / "trees.json").is_file()
    rows = json.loads(_ok(["list", "--json", *flags]).stdout)
    assert [x["sha256"] for x in rows] == [p, a]
    assert rows[1]["lineage"]["commit"] == "abc123" and rows[1]["metrics"] == {"avg_jct": 812.5}
    table = _ok(["list", *flags]).output
    assert a[:12] in table and p[:12] in table and "predictor" in table
    r = _ok(["promote", a[:10], "--reason", "first champion", *flags])
    assert f"champion: {a[:12]}" in r.output and "previous: -" in r.output
    r = _ok(["promote", p, "--reason", "try the predictor", *flags])
    assert f"champion: {p[:12]}" in r.output and f"previous: {a[:12]}" in r.output
    shown = json.loads(_ok(["show", "champion", "--json", *flags]).stdout)
    assert shown["model"]["sha256"] == p and shown["model"]["aliases"] == ["champion"]
    assert [e["action"] for e in shown["events"]] == ["promote", "register"]
    assert shown["events"][0]["reason"] == "try the predictor"
    text = _ok(["show", "previous", *flags]).output
    assert "abc123" in text and "first champion" in text and "promote" in text
    r = _ok(["rollback", "--reason", "predictor regressed", *flags])
    assert f"champion: {a[:12]}" in r.output and f"previous: {p[:12]}" in r.output
    rows = json.loads(_ok(["list", "--json", *flags]).stdout)
    assert {x["sha256"]: x["aliases"] for x in rows} == {a: ["champion"], p: ["previous"]}
    # errors: one line each, nothing changed
    _error(["show", "deadbeef00", *flags], "model 'deadbeef00': not in the registry")
    _error(["promote", "nosuch", "--reason", "x", *flags], "not in the registry")
    _error(["promote", "champion", "--reason", "x", *flags], "is the champion already")
    _error(["register", str(tmp_path / "missing.json"), "--kind", "adaptive", *flags],
           "missing.json: no such file")
    _error(["register", str(card), "--kind", "adaptive", "--lineage", "[1]", *flags],
           "--lineage: must be a JSON object")
    _error(["list", "--db", "mysql://x/y"], "unsupported database")
    fresh = ["--db", f"sqlite:///{tmp_path}/other/autoflow.db"]
    _error(["rollback", "--reason", "x", *fresh], "no previous champion to roll back to")
    assert {x["sha256"]: x["aliases"] for x in json.loads(
        _ok(["list", "--json", *flags]).stdout)} == {a: ["champion"], p: ["previous"]}


def test_cli_tampered_and_changed_files(tmp_path):
    db = ["--db", f"sqlite:///{tmp_path}/autoflow.db", "--files", str(tmp_path / "files")]
    card = adaptive_model(tmp_path / "src")
    npz = card.with_suffix(".npz")
    good = npz.read_bytes()
    npz.write_bytes(good + b"x")
    _error(["register", str(card), "--kind", "adaptive", *db], "m.npz does not match")
    npz.write_bytes(good)
    _ok(["register", str(card), "--kind", "adaptive", *db])
    sha = trust.sha256_file(card)
    stored = tmp_path / "files" / sha / "m.npz"
    stored.write_bytes(good + b"x")
    _error(["promote", sha, "--reason", "x", *db], "changed since it was registered")


def test_the_registry_commands_name_the_serve_extra(tmp_path):
    for args in (["models", "list", "--db", f"sqlite:///{tmp_path}/a.db"],
                 ["models", "rollback", "--reason", "x", "--db", f"sqlite:///{tmp_path}/a.db"]):
        _one_line_error(_cli(*args, cwd=tmp_path), "pip install 'autoflow[serve]'")
    assert not (tmp_path / "a.db").exists()
