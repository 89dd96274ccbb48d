"""Issue 15, section 5: every policy is checked before the first simulation; a bench
that fails or is interrupted part-way keeps the runs that finished; an interrupted train
keeps its models, summary and manifest; saves are atomic."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from hardening import assert_one_line_error, invoke

import autoflow.bench as bench_mod
from autoflow import atomic, jsonsafe
from autoflow.bench import BenchConfig, run_bench
from autoflow.errors import AutoflowError, ConfigError, Interrupted

TRACE = "builtin:philly-mix-small:40"


class Boom(Exception):
    """A bug in a policy (a plain exception, not an AutoflowError)."""


@pytest.fixture
def runs(monkeypatch):
    """Records each simulation bench starts; ``fail[policy] = exc`` makes that run raise."""
    started: list[tuple[str, int]] = []
    fail: dict[str, BaseException] = {}
    real = bench_mod.evaluate

    def evaluate(name, workload, spec, config=None, *, seed=None):
        started.append((name, seed))
        if name in fail:
            raise fail[name]
        return real(name, workload, spec, config, seed=seed)

    monkeypatch.setattr(bench_mod, "evaluate", evaluate)
    return started, fail


@pytest.mark.parametrize("model,needle", [
    ("/nonexistent/missing.zip", "file not found"),
    ("DIR", "is a folder"),
    ("TEXT", "not a model file (not a zip archive"),
])
def test_a_bad_model_path_is_refused_before_any_run(tmp_path, runs, model, needle):
    if model == "DIR":
        model = str(tmp_path)
    elif model == "TEXT":
        (tmp_path / "m.zip").write_text("not a zip")
        model = str(tmp_path / "m.zip")
    out = tmp_path / "o"
    r = invoke("bench", "--trace", TRACE, "--policies", f"fifo,las,sjf,rl:{model}",
               "--out", out)
    assert_one_line_error(r, f"policy rl:{model}", needle)
    assert runs[0] == [] and not out.exists()  # nothing ran, no folder made
    with pytest.raises(ConfigError, match=re.escape(needle)):  # the library checks it too
        run_bench(BenchConfig(TRACE, ["fifo", "las", "sjf", f"rl:{model}"], str(out)))
    assert runs[0] == [] and not out.exists()


def test_an_unreadable_model_is_refused_before_any_run(tmp_path, runs):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    m = tmp_path / "m.zip"
    m.write_bytes(b"PK")
    m.chmod(0)
    r = invoke("bench", "--trace", TRACE, "--policies", f"fifo,rl:{m}", "--out", tmp_path / "o")
    assert_one_line_error(r, "cannot be read")
    assert runs[0] == []


def test_a_policy_with_a_bad_argument_is_refused_before_any_run(tmp_path, runs):
    r = invoke("bench", "--trace", TRACE, "--policies", "fifo,las,sjf:3", "--out", tmp_path / "o")
    assert_one_line_error(r, "policy sjf takes ssl or ssl=PATH (a predictor folder), got '3'")
    assert runs[0] == []


def test_a_run_that_fails_keeps_the_ones_that_finished(tmp_path, runs):
    started, fail = runs
    fail["sjf"] = Boom("boom")
    out = tmp_path / "o"
    r = invoke("bench", "--trace", TRACE, "--policies", "fifo,las,sjf,easy-backfill",
               "--seeds", "2", "--out", out)
    line = assert_one_line_error(r, "sjf (seed 0) failed: Boom: boom",
                                 "wrote the 2 of 8 runs that finished", "marked partial",
                                 alone=False)
    assert str(out / "results.json") in line
    assert started == [("fifo", 0), ("las", 0), ("sjf", 0)]  # nothing after the failure
    res = json.loads((out / "results.json").read_text())
    assert res["partial"] is True and res["status"] == "failed"
    assert set(res["policies"]) == {"fifo", "las"} and res["policies"]["fifo"]["seeds"] == 1
    assert res["policies"]["las"]["avg_jct_vs_fifo"] > 0
    assert res["stopped"]["policy"] == "sjf" and res["stopped"]["seed"] == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "failed" and man == res["manifest"]
    assert not (out / "jct_cdf.png").exists()


def test_an_autoflow_error_in_a_later_seed_keeps_the_first_seed(tmp_path, runs, monkeypatch):
    out = tmp_path / "o"
    real = bench_mod.prepare_fit

    def prepare_fit(trace, cluster, load, seed, skip_bad_rows=False):
        if seed == 1:
            raise AutoflowError("disk went away")
        return real(trace, cluster, load, seed, skip_bad_rows)

    monkeypatch.setattr(bench_mod, "prepare_fit", prepare_fit)
    with pytest.raises(AutoflowError, match=r"seed 1\) failed: disk went away; wrote the "
                                            r"2 of 4 runs"):
        run_bench(BenchConfig(TRACE, ["fifo", "las"], str(out), seeds=2))
    res = json.loads((out / "results.json").read_text())
    assert res["partial"] and {p["seeds"] for p in res["policies"].values()} == {1}


def test_an_interrupted_bench_keeps_what_finished(tmp_path, runs):
    fail = runs[1]
    fail["las"] = KeyboardInterrupt()
    out = tmp_path / "o"
    r = invoke("bench", "--trace", TRACE, "--policies", "fifo,sjf,las,easy-backfill",
               "--out", out)
    assert r.exit_code == 130, r.output
    assert "Traceback" not in r.output
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: during las (seed 0); wrote the 2 of 4 runs"), last
    res = json.loads((out / "results.json").read_text())
    assert res["partial"] is True and res["status"] == "interrupted"
    assert set(res["policies"]) == {"fifo", "sjf"}
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    # the library raises Interrupted, a KeyboardInterrupt that says what was kept
    with pytest.raises(Interrupted, match="wrote the 2 of 4 runs"):
        run_bench(BenchConfig(TRACE, ["fifo", "sjf", "las", "easy-backfill"],
                              str(tmp_path / "p")))


def test_an_interrupt_before_any_run_finished_writes_nothing(tmp_path, runs):
    runs[1]["fifo"] = KeyboardInterrupt()
    out = tmp_path / "o"
    r = invoke("bench", "--trace", TRACE, "--policies", "fifo,las", "--out", out)
    assert r.exit_code == 130 and "no run had finished; nothing written" in r.stderr
    assert list(out.iterdir()) == []


def test_a_complete_bench_says_complete(tmp_path):
    res = run_bench(BenchConfig(TRACE, ["fifo"], str(tmp_path / "o")))
    assert "partial" not in res and res["manifest"]["status"] == "complete"


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    jsonsafe.write(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left
    assert target.stat().st_mode & 0o777 == 0o666 & ~atomic._umask()

    def crash(fd):  # the disk fails, or Ctrl-C, after part of the data is written
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        jsonsafe.write(target, {"b": list(range(100_000))})
    assert json.loads(target.read_text()) == {"a": 1}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No "
                                                                                  "space")))
    with pytest.raises(OSError):
        atomic.write_text(tmp_path / "new.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_an_interrupted_train_keeps_its_model_summary_and_manifest(tmp_path, monkeypatch):
    sb3 = pytest.importorskip("sb3_contrib")
    real = sb3.MaskablePPO.learn

    def learn(self, total_timesteps, callback=None, **kw):  # Ctrl-C after 128 steps
        real(self, 128, callback=callback, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(sb3.MaskablePPO, "learn", learn)
    out = tmp_path / "agent"
    r = invoke("train", "--agent", "slots", "--workloads", "builtin:philly-mix-small",
               "--timesteps", "100000", "--out", out, "--imitation-episodes", "1",
               "--dagger-rounds", "0",
               "--eval-episodes", "1", "--eval-every", "64", "--n-envs", "1",
               "--jobs-min", "20", "--jobs-max", "30")
    assert r.exit_code == 130, r.output
    last = r.stderr.strip().splitlines()[-1]
    assert re.match(r"interrupted: during the learning, at step [\d,]+ of 100,000; wrote "
                    r".*best_model.zip", last), last
    for f in ("best_model.zip", "model.zip", "train_summary.json", "manifest.json",
              "eval_curve.png"):
        assert (out / f).exists(), f
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["interrupted"] is True and 128 <= summary["timesteps_done"] < 100_000
    assert summary["interrupted_during"] == "learning"
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


def test_a_train_interrupted_during_the_warm_start_keeps_its_summary_and_manifest(
        tmp_path, monkeypatch):
    pytest.importorskip("sb3_contrib")
    from autoflow.agents import imitation

    def clone(*a, **kw):  # Ctrl-C while behaviour cloning
        raise KeyboardInterrupt

    monkeypatch.setattr(imitation, "clone", clone)
    out = tmp_path / "agent"
    r = invoke("train", "--agent", "slots", "--workloads", "builtin:philly-mix-small",
               "--timesteps", "1000", "--out", out, "--imitation-episodes", "1",
               "--dagger-rounds", "0",
               "--eval-episodes", "1", "--n-envs", "1", "--jobs-min", "20", "--jobs-max", "30")
    assert r.exit_code == 130, r.output
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: during the warm start, at step 0 of 1,000; wrote "), last
    assert "best_model.zip" not in last  # no validation ran, so there is no best model
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["interrupted_during"] == "warm start" and summary["timesteps_done"] == 0
    assert summary["evaluations"] == [] and summary["best_vs_fifo"] is None
    assert (out / "model.zip").exists() and not (out / "eval_curve.png").exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


@pytest.mark.parametrize("phase", ["warm start", "learning"])
def test_an_interrupted_adaptive_train_keeps_its_model_summary_and_manifest(
        tmp_path, monkeypatch, phase):
    sb3 = pytest.importorskip("stable_baselines3")
    from autoflow.agents import train_adaptive

    if phase == "learning":
        real = sb3.PPO.learn

        def learn(self, total_timesteps, callback=None, **kw):  # Ctrl-C after 64 steps
            real(self, 64, callback=callback, **kw)
            raise KeyboardInterrupt

        monkeypatch.setattr(sb3.PPO, "learn", learn)
    else:
        def clone(*a, **kw):  # Ctrl-C while cloning the teacher
            raise KeyboardInterrupt

        monkeypatch.setattr(train_adaptive, "clone", clone)
    out = tmp_path / "agent"
    r = invoke("train", "--workloads", "builtin:philly-mix-small", "--timesteps", "100000",
               "--out", out, "--imitation-episodes", "2", "--eval-episodes", "1",
               "--eval-every", "32", "--n-envs", "1", "--jobs-min", "40", "--jobs-max", "50",
               "--eval-jobs", "60")
    assert r.exit_code == 130, r.output
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: during the {phase}, at step "), last
    for f in ("model.json", "model.npz", "train_summary.json", "manifest.json"):
        assert (out / f).exists(), f
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["interrupted"] is True and summary["interrupted_during"] == phase
    assert (phase == "learning") == (summary["timesteps_done"] >= 64)
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


def test_a_png_is_saved_atomically(tmp_path, monkeypatch):
    from autoflow import plots

    target = tmp_path / "jct_cdf.png"
    plots.jct_cdf({"fifo": np.array([1.0, 2.0, 3.0])}, target)
    old = target.read_bytes()
    assert old[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        plots.jct_cdf({"las": np.array([5.0, 9.0])}, target)
    assert target.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == [target.name]
