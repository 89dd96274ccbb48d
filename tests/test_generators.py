"""Workload generators: fit and sample every model, the fallback, conditions, arrivals,
the report, round trips through bench and the environment, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from autoflow.generators import fit_generator, load_generator
from autoflow.generators import models as models_mod
from autoflow.generators.arrivals import ArrivalModel
from autoflow.generators.conditions import parse_condition
from autoflow.generators.empirical import EmpiricalCopula
from autoflow.generators.sdv_models import sdv_available
from simdata import mixed_workload
from typer.testing import CliRunner

from autoflow.cli import app
from autoflow.errors import ConfigError
from autoflow.traces import normalized
from autoflow.traces.registry import load_workload

runner = CliRunner()
needs_sdv = pytest.mark.skipif(not sdv_available(), reason="SDV (the synth extra) not installed")


@pytest.fixture(scope="module")
def real():
    return mixed_workload(400, seed=3, span=86400.0 * 2)


@pytest.fixture(scope="module")
def trace_csv(tmp_path_factory, real):
    p = tmp_path_factory.mktemp("gen") / "real.csv"
    normalized.write(real, p)
    return p


@pytest.mark.parametrize("model", [
    "empirical", pytest.param("copula", marks=needs_sdv), pytest.param("ctgan", marks=needs_sdv),
    pytest.param("tvae", marks=needs_sdv)])
def test_fit_and_sample_each_model(real, model):
    gen = fit_generator(real, model, seed=0, epochs=2)
    assert gen.model_name == model and gen.table["used"] == len(real)
    w = gen.sample(300, seed=1)
    assert len(w) == 300
    real_gpus = {j.num_gpus for j in real}
    assert {j.num_gpus for j in w} <= real_gpus
    assert all(j.duration > 0 and j.kind in ("training", "inference") for j in w)
    times = [j.submit_time for j in w]
    assert times == sorted(times)
    if model in ("empirical", "copula"):  # quantile-mapped marginals stay in the real range
        d = np.array([j.duration for j in real])
        s = np.array([j.duration for j in w])
        assert s.min() >= d.min() - 1e-6 and s.max() <= d.max() + 1e-6


def test_same_seed_same_workload_other_seed_other(real):
    gen = fit_generator(real, "empirical", seed=0)
    a, b, c = gen.sample(200, seed=7), gen.sample(200, seed=7), gen.sample(200, seed=8)
    assert [(j.submit_time, j.duration, j.num_gpus) for j in a] == \
        [(j.submit_time, j.duration, j.num_gpus) for j in b]
    assert [j.duration for j in a] != [j.duration for j in c]


@needs_sdv
def test_sdv_copula_is_seeded(real):
    gen = fit_generator(real, "copula", seed=0)
    assert [j.duration for j in gen.sample(100, seed=4)] == \
        [j.duration for j in gen.sample(100, seed=4)]


def test_copula_falls_back_to_empirical_without_sdv(monkeypatch, real):
    monkeypatch.setattr(models_mod, "sdv_available", lambda: False)
    with pytest.warns(UserWarning, match="SDV is not installed"):
        m = models_mod.make_model("copula")
    assert isinstance(m, EmpiricalCopula)
    monkeypatch.setattr("autoflow.generators.sdv_models.sdv_available", lambda: False)
    with pytest.raises(ConfigError, match="synth"):
        models_mod.make_model("ctgan")


def test_empirical_keeps_marginals(real):
    gen = fit_generator(real, "empirical", seed=0)
    w = gen.sample(20_000, seed=2)
    d, s = np.array([j.duration for j in real]), np.array([j.duration for j in w])
    for q in (50, 90):
        assert np.percentile(s, q) == pytest.approx(np.percentile(d, q), rel=0.15)
    for g in {j.num_gpus for j in real}:
        share_r = np.mean([j.num_gpus == g for j in real])
        share_s = np.mean([j.num_gpus == g for j in w])
        assert abs(share_r - share_s) < 0.03


def test_conditions(real):
    gen = fit_generator(real, "empirical", seed=0)
    only = gen.sample(150, seed=1, conditions=[parse_condition("kind=inference")])
    assert all(j.kind == "inference" for j in only)
    more = gen.sample(200, seed=1, conditions=[parse_condition("num_gpus>=2@0.5")])
    assert sum(j.num_gpus >= 2 for j in more) == 100
    with pytest.raises(ConfigError, match="unknown column"):
        parse_condition("colour=red")
    with pytest.raises(ConfigError, match="too rare"):
        gen.sample(10, seed=1, conditions=[parse_condition("num_gpus>=1000")])


def test_arrivals_keep_the_profile_and_scale_the_load():
    rng = np.random.default_rng(0)
    p = np.r_[np.full(12, 1.0), np.full(12, 3.0)]
    hours = rng.choice(24, size=20_000, p=p / p.sum())  # busy afternoons
    days = rng.integers(0, 14, size=20_000)
    t = np.sort(days * 86400.0 + hours * 3600.0 + rng.random(20_000) * 3600.0)
    m = ArrivalModel().fit(t)
    s1 = m.sample(20_000, np.random.default_rng(1))
    s2 = m.sample(20_000, np.random.default_rng(1), load_scale=2.0)
    def prof(x):
        return np.bincount((np.mod(x, 86400) // 3600).astype(int), minlength=24)
    assert np.corrcoef(prof(t), prof(s1))[0, 1] > 0.9
    assert (s2[-1] - s2[0]) == pytest.approx((s1[-1] - s1[0]) / 2, rel=0.15)
    with pytest.raises(ConfigError):
        m.sample(0, np.random.default_rng(1))


def test_cli_fit_sample_report_then_bench(tmp_path, trace_csv):
    gen, syn, rep = tmp_path / "g.gen", tmp_path / "syn.csv", tmp_path / "report"
    r = runner.invoke(app, ["generate", "fit", "--trace", f"csv:{trace_csv}", "--model",
                            "empirical", "--out", str(gen)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["generate", "sample", "--model", str(gen), "-n", "250", "--seed", "3",
                            "--load-scale", "1.5", "--out", str(syn)])
    assert r.exit_code == 0, r.output
    assert len(load_workload(f"csv:{syn}")) == 250
    r = runner.invoke(app, ["generate", "report", "--real", f"csv:{trace_csv}", "--synthetic",
                            str(syn), "--out", str(rep)])
    assert r.exit_code == 0, r.output
    data = json.loads((rep / "report.json").read_text())
    for key in ("sdv_quality_score", "ks", "durations", "gaps", "gpu_counts", "kinds", "hourly",
                "bar"):
        assert key in data, key
    assert set(data["durations"]["real"]) == {"p50", "p90", "p99", "max"}
    assert len(data["hourly"]["synthetic"]) == 24
    for png in ("durations.png", "gpu_counts.png", "hourly.png"):
        assert (rep / png).stat().st_size > 0
    b = runner.invoke(app, ["bench", "--trace", f"csv:{syn}", "--cluster", "hetero-mix",
                            "--policies", "fifo,las",
                            "--out", str(tmp_path / "bench")])
    assert b.exit_code == 0, b.output


def test_the_environment_draws_episodes_from_a_generator(tmp_path, real):
    pytest.importorskip("gymnasium", reason="the environment needs the rl extra")
    from autoflow.envs.cluster_env import ClusterSchedulingEnv

    path = tmp_path / "g.gen"
    fit_generator(real, "empirical", seed=0).save(path)
    env = ClusterSchedulingEnv(workloads=f"gen:{path}", jobs=(40, 60))
    _, info = env.reset(seed=0)
    assert 40 <= info["jobs"] <= 60
    _, _, done, _, _ = env.step(int(np.flatnonzero(env.action_masks())[0]))
    assert not done or info["jobs"] > 0


def test_bad_input(tmp_path, trace_csv):
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(normalized.COLUMNS) + "\n")
    r = runner.invoke(app, ["generate", "fit", "--trace", f"csv:{empty}", "--out",
                            str(tmp_path / "x.gen")])
    assert r.exit_code == 2 and "empty.csv" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(normalized.COLUMNS) + "\nj1,0,soon,1,1000,,training,,0,0,u,\n")
    r = runner.invoke(app, ["generate", "fit", "--trace", f"csv:{bad}", "--out",
                            str(tmp_path / "x.gen")])
    assert r.exit_code == 2 and "duration" in r.output and "bad.csv" in r.output
    r = runner.invoke(app, ["generate", "fit", "--trace", f"csv:{trace_csv}", "--model", "gpt",
                            "--out", str(tmp_path / "x.gen")])
    assert r.exit_code == 2 and "unknown generator model" in r.output
    gen = tmp_path / "g.gen"
    fit_generator(load_workload(f"csv:{trace_csv}"), "empirical").save(gen)
    r = runner.invoke(app, ["generate", "sample", "--model", str(gen), "-n", "0", "--out",
                            str(tmp_path / "s.csv")])
    assert r.exit_code == 2 and "-n must be at least 1" in r.output
    notgen = tmp_path / "not.gen"
    notgen.write_text("hello")
    with pytest.raises(ConfigError, match="refusing to unpickle"):
        load_generator(notgen)  # not the safe format: a pickle, and not one autoflow wrote
    from autoflow import trust

    trust.allow(notgen)  # --trust-file
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_generator(notgen)


def test_report_with_pandas_string_columns(real):
    """pandas 3 stores text as ``str``, not ``object``: the report's KS over categories
    must not depend on which (pandas 2 is switched to pandas 3's inference here)."""
    import pandas as pd
    from autoflow.generators.report import fidelity

    syn = fit_generator(real, "empirical", seed=0).sample(300, seed=1)
    base = fidelity(real, syn)["ks"]
    if pd.__version__.split(".")[0] >= "3":
        strings = fidelity(real, syn)["ks"]
    else:
        with pd.option_context("future.infer_string", True):
            strings = fidelity(real, syn)["ks"]
    assert strings == base
    assert set(base) >= {"kind", "shape", "qos", "user", "log_duration"}
    assert all(0.0 <= v <= 1.0 for v in base.values())


def test_normal_functions_without_scipy():
    """The normal CDF, its inverse and the KS statistic are numpy code (the base install
    has no scipy); they agree with Python's math.erfc and NormalDist, and with scipy where
    present."""
    import math
    from statistics import NormalDist

    from autoflow.generators.normal import ks_statistic, ndtr, ndtri

    nd = NormalDist()
    x = np.array([-37.0, -12.0, -8.5, -3.0, -1.0, -0.3, 0.0, 0.7, 1.0, 2.5, 8.0, 40.0])
    want = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x])
    assert np.allclose(ndtr(x), want, rtol=1e-12, atol=0)  # Cephes: 2e-13 at -37
    p = np.array([1e-300, 1e-20, 1e-9, 0.001, 0.02425, 0.2, 0.5, 0.7, 0.97575, 1 - 1e-9])
    assert np.allclose(ndtri(p), [nd.inv_cdf(v) for v in p], rtol=1e-12, atol=1e-15)
    assert ndtri(0.0) == -np.inf and ndtri(1.0) == np.inf and np.isnan(ndtri(1.5))
    assert np.isnan(ndtr(np.nan)) and ndtr(np.inf) == 1.0 and ndtr(-np.inf) == 0.0
    a, b = np.array([1, 1, 2, 2, 3.0]), np.array([1, 2, 2, 2, 5, 5.0])
    assert ks_statistic(a, b) == pytest.approx(1 / 3)
    try:
        from scipy.special import ndtr as s_ndtr
        from scipy.special import ndtri as s_ndtri
        from scipy.stats import ks_2samp
    except ImportError:
        return
    rng = np.random.default_rng(0)
    z, u = rng.standard_normal(10_000) * 3, rng.random(10_000)
    assert np.allclose(ndtr(z), s_ndtr(z), rtol=1e-13, atol=0)
    assert np.allclose(ndtri(u), s_ndtri(u), rtol=1e-10, atol=1e-14)
    c, d = rng.standard_normal(300), rng.standard_normal(500) + 0.2
    assert ks_statistic(c, d) == pytest.approx(ks_2samp(c, d).statistic, abs=1e-12)
