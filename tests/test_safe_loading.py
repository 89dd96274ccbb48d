"""Loading a model or generator file never runs code (issue 15, section 1).

Every entry point that reads a model or generator is given crafted files whose payload,
if ever unpickled, writes a marker file and sets an environment variable; each must end
with a one-line error (exit code 2) and the payload must not have run. Files autoflow
wrote still load, and ``--trust-file`` (or ``autoflow models trust``) lets a file from
elsewhere load.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from autoflow.generators import card as gen_card
from hardening import assert_one_line_error, invoke

from autoflow import trust
from autoflow.errors import ConfigError

SMALL = "builtin:philly-mix-small"
PWNED = "AUTOFLOW_TEST_PWNED"


class Payload:
    """Unpickling this runs ``exec``: writes ``marker`` and sets ``$AUTOFLOW_TEST_PWNED``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        code = (f"import os, pathlib; pathlib.Path({self.marker!r}).write_text('ran'); "
                f"os.environ[{PWNED!r}] = '1'")
        return (exec, (code,))


@pytest.fixture
def marker(tmp_path, monkeypatch):
    m = tmp_path / "payload-ran"
    monkeypatch.delenv(PWNED, raising=False)
    yield m
    assert not m.exists(), "the payload ran"
    assert PWNED not in os.environ, "the payload ran"


def evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def evil_npz(marker: Path, members: dict[str, object]) -> bytes:
    """An npz whose members are object arrays holding the payload (a pickle inside)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in members:
            f = io.BytesIO()
            np.lib.format.write_array(f, np.array([Payload(marker)], dtype=object),
                                      allow_pickle=True)
            z.writestr(f"{name}.npy", f.getvalue())
    return buf.getvalue()


def evil_sb3_zip(marker: Path) -> bytes:
    """The shipped SB3 zip with a cloudpickle payload in its ``data`` entry."""
    from autoflow.agents.rl_policy import SLOT_SB3

    src = zipfile.ZipFile(SLOT_SB3)
    data = json.loads(src.read("data"))
    data["policy_class"][":serialized:"] = base64.b64encode(evil_pickle(marker)).decode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info in src.infolist():
            z.writestr(info, json.dumps(data) if info.filename == "data" else
                       src.read(info.filename))
    return buf.getvalue()


def test_the_payloads_do_run_when_unpickled(tmp_path, monkeypatch):
    """The crafted files are real payloads: unpickling them runs the code."""
    m = tmp_path / "ran"
    monkeypatch.delenv(PWNED, raising=False)
    pickle.loads(evil_pickle(m))
    assert m.exists() and os.environ.get(PWNED) == "1"
    m.unlink()
    with np.load(io.BytesIO(evil_npz(m, {"__meta__": 0})), allow_pickle=True) as z:
        z["__meta__"]
    assert m.exists()
    m.unlink()
    from sb3_contrib import MaskablePPO

    with contextlib.suppress(Exception):  # not a policy class: fails after it ran
        MaskablePPO.load(io.BytesIO(evil_sb3_zip(m)), device="cpu")
    assert m.exists()


# generators: `generate sample --model`, `train --workloads gen:` and `--validation gen:`

def _generator_files(tmp_path: Path, marker: Path) -> dict[str, Path]:
    files = {"pickle": evil_pickle(marker), "npz": evil_npz(marker, {"__meta__": 0}),
             "npz-arrays": evil_npz(marker, {"__meta__": 0, "chol": 0, "arrivals.rate": 0})}
    out = {}
    for name, data in files.items():
        p = tmp_path / f"{name}.gen"
        p.write_bytes(data)
        out[name] = p
    # the safe format with a valid description and an object array among its arrays
    from autoflow.generators import fit_generator

    from autoflow.traces.registry import load_workload

    good = tmp_path / "good.gen"
    fit_generator(load_workload(SMALL), "empirical").save(good)
    with np.load(good, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["chol"] = np.array([Payload(marker)], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # allow_pickle is on when writing: the payload is inside
    out["npz-valid-meta"] = tmp_path / "mixed.gen"
    out["npz-valid-meta"].write_bytes(buf.getvalue())
    return out


GEN_KINDS = ["pickle", "npz", "npz-arrays", "npz-valid-meta"]


@pytest.mark.parametrize("kind", GEN_KINDS)
def test_generate_sample_runs_no_payload(tmp_path, marker, kind):
    gen = _generator_files(tmp_path, marker)[kind]
    r = invoke("generate", "sample", "--model", gen, "-n", "10", "--out", tmp_path / "s.csv")
    line = assert_one_line_error(r, str(gen))
    if kind == "pickle":
        assert "refusing to unpickle" in line and "--trust-file" in line
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("flag", ["--workloads", "--validation"])
@pytest.mark.parametrize("kind", GEN_KINDS)
def test_train_gen_source_runs_no_payload(tmp_path, marker, kind, flag):
    gen = _generator_files(tmp_path, marker)[kind]
    args = ["train", "--workloads", f"gen:{gen}@philly-64", "--out", tmp_path / "a",
            "--timesteps", "0", "--imitation-episodes", "0", "--eval-episodes", "1"]
    if flag == "--validation":
        args[2] = SMALL
        args += ["--validation", f"gen:{gen}@philly-64"]
    r = invoke(*args)
    assert_one_line_error(r, str(gen))


def test_load_generator_refuses_an_untrusted_pickle_in_process(tmp_path, marker):
    from autoflow.generators import load_generator

    p = tmp_path / "g.pkl"
    p.write_bytes(evil_pickle(marker))
    with pytest.raises(trust.UntrustedFileError, match="refusing to unpickle"):
        load_generator(p)


# rl: an SB3 zip (bench, models export) and the safe export (tampered card or weights)

@pytest.mark.parametrize("card", [None, "forged-old-card", "forged-safe-card", "not-json"])
def test_bench_rl_zip_runs_no_payload(tmp_path, marker, card):
    z = tmp_path / "evil.zip"
    z.write_bytes(evil_sb3_zip(marker))
    if card == "forged-old-card":  # a card beside it vouches for nothing
        (tmp_path / "evil.json").write_text(json.dumps({"sha256": trust.sha256_file(z)}))
    elif card == "not-json":
        (tmp_path / "evil.json").write_bytes(evil_pickle(marker))
    elif card == "forged-safe-card":  # a safe card claiming the zip, weights missing
        (tmp_path / "evil.json").write_text(json.dumps(
            {"format": "autoflow-model/1", "sb3_zip": {"sha256": trust.sha256_file(z)},
             "sha256": "0" * 64, "weights": "evil.npz"}))
    r = invoke("bench", "--trace", SMALL, "--policies", f"fifo,rl:{z}", "--out",
               tmp_path / "b")
    line = assert_one_line_error(r, "evil")
    if card != "forged-safe-card":
        assert "refusing to unpickle" in line and "--trust-file" in line
    assert not (tmp_path / "b" / "results.json").exists()


def test_models_export_runs_no_payload(tmp_path, marker):
    z = tmp_path / "evil.zip"
    z.write_bytes(evil_sb3_zip(marker))
    assert_one_line_error(invoke("models", "export", z), "refusing to unpickle")
    assert not (tmp_path / "evil.npz").exists()


def _export(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shipped safe export in ``tmp_path``: (card, weights)."""
    from autoflow.agents.rl_policy import SLOT_MODEL, SLOT_WEIGHTS

    card, npz = tmp_path / "m.json", tmp_path / "m.npz"
    c = json.loads(SLOT_MODEL.read_text())
    c["weights"] = "m.npz"
    card.write_text(json.dumps(c))
    npz.write_bytes(SLOT_WEIGHTS.read_bytes())
    return card, npz


def _set_card(card: Path, **changes) -> None:
    c = json.loads(card.read_text())
    for k, v in changes.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    card.write_text(json.dumps(c))


def _tamper(kind: str, card: Path, npz: Path, marker: Path) -> None:
    if kind == "object-array-weights":  # a pickle inside the npz, hash updated to match
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["start.w"] = np.array([Payload(marker)], dtype=object)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        npz.write_bytes(buf.getvalue())
        _set_card(card, sha256=trust.sha256_file(npz))
    elif kind == "pickle-as-weights":
        npz.write_bytes(evil_pickle(marker))
        _set_card(card, sha256=trust.sha256_file(npz))
    elif kind == "weights-changed":
        data = bytearray(npz.read_bytes())
        data[-100] ^= 1
        npz.write_bytes(bytes(data))
    elif kind == "wrong-shape":
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["job_enc.w1"] = arrays["job_enc.w1"][:, :3]
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        npz.write_bytes(buf.getvalue())
        _set_card(card, sha256=trust.sha256_file(npz))
    elif kind == "nan-weights":
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["wait.b"] = np.array([np.nan], dtype=np.float32)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        npz.write_bytes(buf.getvalue())
        _set_card(card, sha256=trust.sha256_file(npz))
    elif kind == "schema":
        _set_card(card, feature_schema="0123456789abcdef")
    elif kind == "dim":
        _set_card(card, network={"kind": "slot-policy", "dim": 10**9,
                                 "features": {"jobs": 1, "running": 1, "cluster": 1}})
    elif kind == "obs":
        _set_card(card, obs={"queue_slots": -1, "running_slots": 8, "head_slots": 4,
                             "preemption": True})
    elif kind == "estimator-path":  # a card may not name a predictor file to load
        _set_card(card, obs={**json.loads(card.read_text())["obs"], "estimator": "ssl=/tmp/x"})
    elif kind == "weights-path":
        _set_card(card, weights="../../etc/passwd")
    elif kind == "no-format":
        _set_card(card, format=None)
    elif kind == "not-json":
        card.write_bytes(evil_pickle(marker))
    elif kind == "card-list":
        card.write_text("[]")
    else:
        raise AssertionError(kind)


TAMPERS = ["object-array-weights", "pickle-as-weights", "weights-changed", "wrong-shape",
           "nan-weights", "schema", "dim", "obs", "estimator-path", "weights-path", "no-format", "not-json",
           "card-list"]


@pytest.mark.parametrize("entry", ["json", "npz"])
@pytest.mark.parametrize("kind", TAMPERS)
def test_rl_safe_export_tampered_is_refused(tmp_path, marker, kind, entry):
    card, npz = _export(tmp_path)
    _tamper(kind, card, npz, marker)
    target = card if entry == "json" else npz
    r = invoke("bench", "--trace", SMALL, "--policies", f"rl:{target}", "--out",
               tmp_path / "b")
    assert_one_line_error(r, "m.")
    assert not (tmp_path / "b" / "results.json").exists()


def test_rl_safe_export_copy_loads_and_decides_like_the_shipped_model(tmp_path):
    card, npz = _export(tmp_path)
    for target in (card, npz):
        r = invoke("bench", "--trace", SMALL, "--policies", f"fifo,rl,rl:{target}", "--out",
                   tmp_path / target.suffix[1:])
        assert r.exit_code == 0, r.output
        res = json.loads((tmp_path / target.suffix[1:] / "results.json").read_text())
        a, b = res["policies"]["rl"], res["policies"][f"rl:{target}"]
        for k in ("avg_jct", "p99_jct", "makespan", "preemptions"):
            assert a[k] == b[k], k


# the shipped model: the safe export decides as the SB3 zip it came from

def test_the_shipped_safe_model_decides_as_its_sb3_zip():
    from autoflow.agents.rl_policy import SLOT_SB3, RlPolicy
    from sb3_contrib import MaskablePPO

    from autoflow.cluster import load_cluster
    from autoflow.evaluate import evaluate
    from autoflow.placers import make_placer
    from autoflow.traces.registry import load_workload

    safe = RlPolicy(make_placer("best-fit"))
    assert safe.model is None  # nothing unpickled
    old = RlPolicy(make_placer("best-fit"),
                   model=MaskablePPO.load(str(SLOT_SB3), device="cpu"))
    w, c = load_workload(SMALL).shifted(), load_cluster("philly-64")
    a, b = evaluate(safe, w, c, seed=0).metrics, evaluate(old, w, c, seed=0).metrics
    assert a["avg_jct"] == b["avg_jct"] and a["makespan"] == b["makespan"]
    assert a["guard"] == b["guard"] and a["preemptions"] == b["preemptions"]


# positive: what autoflow wrote loads; --trust-file and `models trust` work

def _benign_sb3_zip(path: Path) -> None:
    from autoflow.agents.rl_policy import SLOT_SB3
    from sb3_contrib import MaskablePPO

    MaskablePPO.load(str(SLOT_SB3), device="cpu").save(path, include=["autoflow_obs"])


def test_an_sb3_zip_from_elsewhere_needs_trust_file_then_exports(tmp_path):
    z = tmp_path / "other.zip"
    _benign_sb3_zip(z)
    r = invoke("bench", "--trace", SMALL, "--policies", f"rl:{z}", "--out", tmp_path / "b")
    assert_one_line_error(r, "refusing to unpickle", "--trust-file")
    r = invoke("bench", "--trace", SMALL, "--policies", f"rl:{z}", "--out", tmp_path / "b",
               "--trust-file", z)
    assert r.exit_code == 0, r.output
    trust.forget_allowed()
    assert_one_line_error(invoke("models", "export", z), "refusing to unpickle")
    r = invoke("models", "export", z, "--trust-file", z)
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "other.json").read_text())
    assert card["sb3_zip"]["sha256"] == trust.sha256_file(z)
    assert card["sha256"] == trust.sha256_file(tmp_path / "other.npz")
    trust.forget_allowed()  # rl:other.zip now loads its safe export: no trust needed
    r = invoke("bench", "--trace", SMALL, "--policies", f"rl:{z}", "--out", tmp_path / "c")
    assert r.exit_code == 0, r.output


def test_models_trust_records_a_file(tmp_path):
    z = tmp_path / "other.zip"
    _benign_sb3_zip(z)
    r = invoke("models", "trust", z)
    assert r.exit_code == 0, r.output
    assert trust.sha256_file(z) in trust.recorded_hashes()
    r = invoke("bench", "--trace", SMALL, "--policies", f"rl:{z}", "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output


def test_trust_file_must_exist(tmp_path):
    r = invoke("bench", "--trace", SMALL, "--policies", "fifo", "--out", tmp_path / "b",
               "--trust-file", tmp_path / "nope.zip")
    assert_one_line_error(r, "--trust-file", "nope.zip")


def test_a_pickled_generator_loads_when_recorded_or_trusted(tmp_path, monkeypatch):
    """A pickled generator (what SDV models are saved as) loads on the account that wrote
    it; elsewhere (another registry) only with --trust-file."""
    from autoflow.generators import fit_generator, load_generator
    from autoflow.generators.generator import FittedGenerator

    from autoflow.traces.registry import load_workload

    gen = fit_generator(load_workload(SMALL), "empirical")
    p = tmp_path / "g.pkl"
    data = pickle.dumps(gen)
    p.write_bytes(data)
    with pytest.raises(ConfigError, match="refusing to unpickle"):
        load_generator(p)
    trust.record(p, trust.sha256_bytes(data), "generator")  # as FittedGenerator.save does
    assert isinstance(load_generator(p), FittedGenerator)
    monkeypatch.setenv("AUTOFLOW_HOME", str(tmp_path / "elsewhere"))
    r = invoke("generate", "sample", "--model", p, "-n", "20", "--out", tmp_path / "s.csv")
    assert_one_line_error(r, "refusing to unpickle", "--trust-file")
    r = invoke("generate", "sample", "--model", p, "-n", "20", "--out", tmp_path / "s.csv",
               "--trust-file", p)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.csv").exists()


def test_generators_autoflow_writes_load(tmp_path):
    """``empirical`` is written as the safe npz (no registry needed); the same samples."""
    from autoflow.generators import fit_generator, load_generator

    from autoflow.traces.registry import load_workload

    gen = fit_generator(load_workload(SMALL), "empirical", seed=1)
    p = tmp_path / "g.pkl"  # the name does not matter: the content says the format
    gen.save(p)
    assert p.read_bytes()[:4] == b"PK\x03\x04"
    assert trust.recorded_hashes() == trust.shipped_hashes()  # nothing to record
    card = json.loads((tmp_path / "g.pkl.card.json").read_text())
    assert card["sha256"] == trust.sha256_file(p) and card["file_format"] == "autoflow-generator-npz/1"
    assert card["schema_sha256"] == gen_card.schema_hash()
    assert card["generator"]["model"] == "empirical" and card["generator"]["seed"] == 1
    back = load_generator(p)
    a, b = gen.sample(200, seed=5), back.sample(200, seed=5)
    assert [dataclasses.asdict(j) for j in a.jobs] == [dataclasses.asdict(j) for j in b.jobs]
    r = invoke("train", "--workloads", f"gen:{p}@philly-64", "--out", tmp_path / "a",
               "--timesteps", "0", "--imitation-episodes", "0", "--eval-episodes", "1",
               "--jobs-min", "20", "--jobs-max", "30", "--n-envs", "1")
    assert r.exit_code == 0, r.output


def test_a_generator_that_does_not_match_its_card_is_refused(tmp_path):
    """The card beside a generator holds its content and table-schema hashes: a file
    changed after it was written, or fitted on another table schema, does not load."""
    from autoflow.generators import fit_generator, load_generator

    from autoflow.traces.registry import load_workload

    p = tmp_path / "g.gen"
    fit_generator(load_workload(SMALL), "empirical").save(p)
    cp = tmp_path / "g.gen.card.json"
    good = cp.read_text()
    card = json.loads(good)
    card["schema_sha256"] = "0" * 16
    cp.write_text(json.dumps(card))
    r = invoke("generate", "sample", "--model", p, "-n", "20", "--out", tmp_path / "s.csv")
    assert_one_line_error(r, "g.gen", "table schema 0000000000000000", "fit it again")
    cp.write_text(good)
    other = tmp_path / "h.gen"  # another generator's file under this card
    fit_generator(load_workload(SMALL), "empirical", seed=9).save(other)
    p.write_bytes(other.read_bytes())
    with pytest.raises(ConfigError, match="does not match the sha256 in its card"):
        load_generator(p)
    cp.write_text("{not json")
    with pytest.raises(ConfigError, match="card g.gen.card.json is not JSON"):
        load_generator(p)
    cp.unlink()  # no card: the safe file still loads (it runs no code)
    assert load_generator(p).seed == 9


def test_an_sdv_generator_is_recorded_when_written(tmp_path):
    pytest.importorskip("sdv")
    from autoflow.generators import load_generator

    p = tmp_path / "copula.pkl"
    r = invoke("generate", "fit", "--trace", SMALL, "--model", "copula", "--out", p)
    assert r.exit_code == 0, r.output
    assert p.read_bytes()[:1] == b"\x80"  # a pickle
    assert trust.sha256_file(p) in trust.recorded_hashes()
    assert json.loads((tmp_path / "copula.pkl.card.json").read_text())["sha256"] == \
        trust.sha256_file(p)
    assert load_generator(p).model_name == "copula"
    p.write_bytes(p.read_bytes() + b"\n")  # changed after it was written: not recorded
    with pytest.raises(ConfigError, match="refusing to unpickle"):
        load_generator(p)


def test_the_registry_lives_under_autoflow_home(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOFLOW_HOME", str(tmp_path / "h"))
    assert trust.registry_path() == tmp_path / "h" / "trusted.json"
    f = tmp_path / "x"
    f.write_bytes(b"x")
    assert trust.record(f, trust.sha256_file(f), "test")
    reg = json.loads(trust.registry_path().read_text())
    assert reg["format"] == "autoflow-trusted/1" and trust.sha256_file(f) in reg["files"]
    monkeypatch.delenv("AUTOFLOW_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert trust.registry_path() == tmp_path / "xdg" / "autoflow" / "trusted.json"
