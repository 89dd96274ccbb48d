"""Drift detection over windows of job outcomes (autoflow.loop.drift, issue 20)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from autoflow.errors import ConfigError
from autoflow.job import Job
from autoflow.loop.drift import (
    DriftConfig,
    categorical_test,
    chi2_sf,
    detect,
    gpu_class,
    jensen_shannon,
    ks_p_value,
    ks_statistic,
    load_test,
    numeric_test,
    performance_signal,
    wasserstein,
    window_stats,
)

GPU_SIZES = (1, 2, 4, 8)
GPU_PROBS = (0.55, 0.2, 0.15, 0.1)


def _log10_durations(rng, n, median_s=600.0, sigma=1.5):
    return np.log10(median_s) + rng.normal(0.0, sigma / math.log(10), n)


def _jobs(rng, n, *, start=0.0, rate_per_h=60.0, median_s=600.0, sigma=1.5,
          gpu_probs=GPU_PROBS, prefix="j"):
    """n jobs arriving as a Poisson process from ``start``, log-normal durations; returns
    (jobs, end of span)."""
    submits = start + np.cumsum(rng.exponential(3600.0 / rate_per_h, n))
    durations = median_s * np.exp(rng.normal(0.0, sigma, n))
    sizes = rng.choice(GPU_SIZES, n, p=gpu_probs)
    jobs = [Job(f"{prefix}{i}", float(t), float(d), num_gpus=int(g))
            for i, (t, d, g) in enumerate(zip(submits, durations, sizes, strict=True))]
    return jobs, float(submits[-1]) + 1.0


def _classes(rng, n, probs=GPU_PROBS):
    return [str(g) for g in rng.choice(GPU_SIZES, n, p=probs)]


# ---- same distribution: no drift --------------------------------------------------------------

def test_same_distribution_small_samples_rarely_alarm():
    """KS and chi-squared at p < 0.05 on 40 pairs from one distribution: the false alarms
    stay near 5 % (more than 8 of 40 has a probability under 1e-3)."""
    cfg = DriftConfig()
    ks_alarms = chi_alarms = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        num = numeric_test(_log10_durations(rng, 300), _log10_durations(rng, 250), cfg)
        cat = categorical_test(_classes(rng, 300), _classes(rng, 250), cfg)
        assert (num.method, cat.method) == ("ks", "chi2")
        assert num.status in ("stable", "drift") and cat.status in ("stable", "drift")
        ks_alarms += num.drift
        chi_alarms += cat.drift
    assert ks_alarms <= 8
    assert chi_alarms <= 8


def test_same_distribution_large_samples_no_drift():
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        num = numeric_test(_log10_durations(rng, 5000), _log10_durations(rng, 4000))
        cat = categorical_test(_classes(rng, 5000), _classes(rng, 4000))
        assert (num.method, num.status, num.p_value) == ("wasserstein", "stable", None)
        assert (cat.method, cat.status) == ("jensenshannon", "stable")
        assert num.statistic < 0.05 and cat.statistic < 0.05


# ---- durations ---------------------------------------------------------------------------------

def test_shifted_lognormal_drifts_with_both_methods():
    rng = np.random.default_rng(7)
    small = numeric_test(_log10_durations(rng, 200), _log10_durations(rng, 200, median_s=1800))
    assert (small.method, small.status, small.drift) == ("ks", "drift", True)
    assert small.p_value < 1e-4 and small.threshold == 0.05
    large = numeric_test(_log10_durations(rng, 3000), _log10_durations(rng, 3000, median_s=1800))
    assert (large.method, large.status) == ("wasserstein", "drift")
    # log10(3) over the std of log10 durations (1.5 / ln 10)
    assert large.statistic == pytest.approx(math.log10(3) / (1.5 / math.log(10)), rel=0.15)


def test_method_switches_above_size_switch():
    rng = np.random.default_rng(3)
    cur = _log10_durations(rng, 400, median_s=1800)
    at = numeric_test(_log10_durations(rng, 1000), cur)
    above = numeric_test(_log10_durations(rng, 1001), cur)
    assert (at.method, above.method) == ("ks", "wasserstein")
    assert at.drift and above.drift
    cfg = DriftConfig(size_switch=100)
    assert numeric_test(_log10_durations(rng, 100), cur, cfg).method == "ks"
    assert numeric_test(_log10_durations(rng, 101), cur, cfg).method == "wasserstein"
    assert categorical_test(["1", "2", "4"] * 34, ["1"] * 60, cfg).method == "jensenshannon"
    assert categorical_test(["1", "2", "4"] * 33, ["1"] * 60, cfg).method == "chi2"


# ---- GPU mix -----------------------------------------------------------------------------------

def test_changed_gpu_mix_drifts():
    rng = np.random.default_rng(11)
    shifted = (0.25, 0.2, 0.25, 0.3)  # many more 4- and 8-GPU jobs
    small = categorical_test(_classes(rng, 400), _classes(rng, 400, shifted))
    assert (small.method, small.status) == ("chi2", "drift")
    large = categorical_test(_classes(rng, 4000), _classes(rng, 4000, shifted))
    assert (large.method, large.status) == ("jensenshannon", "drift")


def test_categories_in_one_window_only():
    ref = ["1"] * 70 + ["2"] * 30 + ["4"] * 20
    cur = ["1"] * 65 + ["2"] * 35 + ["4"] * 18 + ["9+"] * 2  # a class the reference lacks
    r = categorical_test(ref, cur)
    assert r.method == "chi2" and math.isfinite(r.statistic) and r.status == "stable"
    new = categorical_test(ref, ["9+"] * 60 + ["1"] * 60)
    assert new.status == "drift" and new.p_value < 1e-10
    gone = categorical_test(ref + ["8"] * 40, ["1"] * 70 + ["2"] * 30 + ["4"] * 20)
    assert math.isfinite(gone.statistic) and gone.status == "drift"
    # disjoint categories are as far apart as Jensen-Shannon goes (base 2: 1)
    disjoint = categorical_test(["1"] * 1500, ["8"] * 100)
    assert disjoint.method == "jensenshannon"
    assert disjoint.statistic == pytest.approx(1.0) and disjoint.drift


def test_two_categories_use_the_z_test():
    ref = ["1"] * 120 + ["share"] * 80
    same = categorical_test(ref, ["1"] * 61 + ["share"] * 39)
    moved = categorical_test(ref, ["1"] * 30 + ["share"] * 70)
    assert (same.method, same.status) == ("z", "stable")
    assert (moved.method, moved.status) == ("z", "drift")
    one = categorical_test(["1"] * 60, ["1"] * 70)  # a single category in both windows
    assert (one.status, one.statistic, one.p_value) == ("stable", 0.0, 1.0)


# ---- arrivals and load -------------------------------------------------------------------------

@pytest.mark.parametrize("n", [300, 2500])
def test_doubled_arrival_rate_drifts(n):
    rng = np.random.default_rng(5)
    ref, ref_end = _jobs(rng, n, rate_per_h=60.0)
    cur, cur_end = _jobs(rng, n, start=ref_end, rate_per_h=120.0, prefix="c")
    report = detect(ref, cur, ref_span=(0.0, ref_end), cur_span=(ref_end, cur_end),
                    capacity_gpus=400.0)
    arrival = report.feature("arrival")
    assert arrival.status == "drift"
    assert arrival.method == ("ks" if n - 1 <= 1000 else "wasserstein")
    assert report.feature("duration").status == "stable"
    assert report.feature("gpu_mix").status == "stable"
    rates = (report.windows["reference"]["arrival_rate_per_hour"],
             report.windows["current"]["arrival_rate_per_hour"])
    assert rates[1] / rates[0] == pytest.approx(2.0, rel=0.2)
    assert "arrival" in report.drifted and report.drift_detected


def test_same_distribution_is_stable_on_every_feature():
    # sigma 0.5 and 1000 jobs: the offered load's sampling noise stays well inside 1.25
    # (heavier tails need larger windows, see the module docstring)
    rng = np.random.default_rng(8)
    ref, ref_end = _jobs(rng, 1000, sigma=0.5)
    cur, cur_end = _jobs(rng, 1000, start=ref_end, sigma=0.5, prefix="c")
    report = detect(ref, cur, ref_span=(0.0, ref_end), cur_span=(ref_end, cur_end),
                    capacity_gpus=200.0)
    assert [f.status for f in report.features] == ["stable"] * 4
    assert not report.drift_detected and report.drifted == []


@pytest.mark.parametrize(("cur_load", "drift"), [
    (1.3, True), (1 / 1.3, True), (1.2, False), (1 / 1.2, False), (1.25, False), (1.0, False)])
def test_load_ratio_both_directions(cur_load, drift):
    r = load_test(1.0, cur_load, 100, 100)
    assert (r.method, r.drift, r.status) == ("ratio", drift, "drift" if drift else "stable")
    assert r.statistic == pytest.approx(cur_load) and r.threshold == 1.25


def test_load_with_zero_reference():
    assert load_test(0.0, 0.0, 60, 60).status == "stable"
    r = load_test(0.0, 0.5, 60, 60)
    assert r.drift and r.statistic == math.inf
    assert r.to_dict()["statistic"] is None  # JSON-safe


def test_load_drifts_through_detect_when_jobs_run_longer():
    rng = np.random.default_rng(21)
    ref, ref_end = _jobs(rng, 1000, sigma=0.5)
    cur, cur_end = _jobs(rng, 1000, start=ref_end, median_s=1200.0, sigma=0.5, prefix="c")
    report = detect(ref, cur, ref_span=(0.0, ref_end), cur_span=(ref_end, cur_end),
                    capacity_gpus=100.0)
    load = report.feature("load")
    assert load.status == "drift" and load.statistic > 1.25
    ratio = report.windows["current"]["offered_load"] / report.windows["reference"]["offered_load"]
    assert load.statistic == pytest.approx(ratio)
    # and the other way round
    back = detect(cur, ref, ref_span=(ref_end, cur_end), cur_span=(0.0, ref_end),
                  capacity_gpus=100.0)
    assert back.feature("load").status == "drift" and back.feature("load").statistic < 0.8


# ---- insufficient samples, constants, empties --------------------------------------------------

def test_insufficient_samples_never_drift():
    cfg = DriftConfig(min_rows=50)
    few = numeric_test(np.zeros(49), np.full(500, 100.0), cfg)
    assert (few.status, few.drift, few.p_value, few.n_ref, few.n_cur) == (
        "insufficient", False, None, 49, 500)
    assert math.isnan(few.statistic) and few.to_dict()["statistic"] is None
    assert numeric_test(np.zeros(500), [], cfg).status == "insufficient"
    assert numeric_test([], [], cfg).status == "insufficient"
    assert categorical_test(["1"] * 500, ["8"] * 49, cfg).status == "insufficient"
    assert categorical_test([], [], cfg).status == "insufficient"
    assert load_test(1.0, 100.0, 49, 500, cfg).status == "insufficient"
    assert numeric_test(np.zeros(50), np.full(50, 100.0), cfg).status == "drift"


def test_detect_on_small_windows_is_all_insufficient():
    rng = np.random.default_rng(2)
    ref, ref_end = _jobs(rng, 20)
    cur, cur_end = _jobs(rng, 20, start=ref_end, rate_per_h=600.0, median_s=1e5, prefix="c")
    report = detect(ref, cur, ref_span=(0.0, ref_end), cur_span=(ref_end, cur_end),
                    capacity_gpus=8.0)
    assert [f.status for f in report.features] == ["insufficient"] * 4
    assert not report.drift_detected
    empty = detect([], [], ref_span=(0.0, 10.0), cur_span=(10.0, 20.0), capacity_gpus=8.0)
    assert [f.status for f in empty.features] == ["insufficient"] * 4
    assert empty.windows["current"]["jobs"] == 0


def test_constant_values():
    same = numeric_test(np.full(80, 3.0), np.full(90, 3.0))
    assert (same.method, same.statistic, same.p_value, same.status) == ("ks", 0.0, 1.0, "stable")
    moved = numeric_test(np.full(80, 3.0), np.full(90, 3.5))
    assert moved.status == "drift" and moved.statistic == 1.0
    big_same = numeric_test(np.full(2000, 3.0), np.full(100, 3.0))
    assert (big_same.method, big_same.statistic, big_same.status) == ("wasserstein", 0.0, "stable")
    big_moved = numeric_test(np.full(2000, 3.0), np.full(100, 3.01))
    # the std of a constant reference is floored at 0.001: 0.01 / 0.001
    assert big_moved.statistic == pytest.approx(10.0) and big_moved.drift


def test_non_finite_values_are_refused():
    with pytest.raises(ValueError, match="finite"):
        numeric_test(np.r_[np.zeros(60), np.nan], np.zeros(60))


# ---- detect on jobs ----------------------------------------------------------------------------

def test_detect_counts_unknown_durations_without_testing_them():
    rng = np.random.default_rng(13)
    ref, ref_end = _jobs(rng, 200)
    cur, cur_end = _jobs(rng, 200, start=ref_end, prefix="c")
    for j in cur[::4]:  # a quarter still running: duration unknown
        j.duration = None
    outside = [Job("early", -5.0, 10.0), Job("late", cur_end + 1.0, 10.0)]
    report = detect(ref + outside, cur + outside, ref_span=(0.0, ref_end),
                    cur_span=(ref_end, cur_end), capacity_gpus=100.0)
    w = report.windows["current"]
    assert (w["jobs"], w["with_duration"], w["unknown_duration"]) == (200, 150, 50)
    assert report.windows["reference"]["jobs"] == 200
    assert report.feature("duration").n_cur == 150
    assert report.feature("gpu_mix").n_cur == 200
    assert report.feature("arrival").n_cur == 199
    assert report.feature("load").n_cur == 150
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert [f["feature"] for f in json.loads(text)["features"]] == [
        "duration", "gpu_mix", "arrival", "load"]


def test_window_stats_by_hand():
    jobs = [Job("a", 0.0, 100.0, num_gpus=2), Job("b", 10.0, 0.5, num_gpus=1, gpu_milli=500),
            Job("c", 40.0, None, num_gpus=8), Job("d", 50.0, 1000.0, num_gpus=0),
            Job("e", 100.0, 10.0)]  # submitted at the window's end: outside
    s = window_stats(jobs, 0.0, 100.0, capacity_gpus=4.0)
    assert (s["jobs"], s["with_duration"], s["unknown_duration"]) == (4, 3, 1)
    assert s["log10_duration"].tolist() == pytest.approx([2.0, 0.0, 3.0])  # 0.5 s counts as 1 s
    assert s["gpu_class"] == ["2", "share", "5-8", "0"]
    assert s["gaps"].tolist() == [10.0, 30.0, 10.0]
    assert s["offered_load"] == pytest.approx((100 * 2 + 0.5 * 0.5) / (4.0 * 100.0))
    assert s["arrival_rate_per_hour"] == pytest.approx(4 / 100 * 3600)
    with pytest.raises(ConfigError, match="capacity_gpus"):
        window_stats(jobs, 0.0, 100.0, capacity_gpus=0.0)
    with pytest.raises(ConfigError, match="start < end"):
        window_stats(jobs, 100.0, 100.0, capacity_gpus=4.0)


@pytest.mark.parametrize(("gpus", "milli", "label"), [
    (0, 1000, "0"), (1, 250, "share"), (1, 1000, "1"), (2, 1000, "2"), (3, 1000, "3-4"),
    (4, 1000, "3-4"), (8, 1000, "5-8"), (16, 1000, "9+")])
def test_gpu_class(gpus, milli, label):
    assert gpu_class(Job("x", 0.0, 1.0, num_gpus=gpus, gpu_milli=milli)) == label


def test_min_drifted_counts_features():
    # twice the arrivals of the same jobs: twice the offered load too
    rng = np.random.default_rng(5)
    ref, ref_end = _jobs(rng, 1000, sigma=0.5)
    cur, cur_end = _jobs(rng, 1000, start=ref_end, rate_per_h=120.0, sigma=0.5, prefix="c")
    spans = {"ref_span": (0.0, ref_end), "cur_span": (ref_end, cur_end), "capacity_gpus": 400.0}
    two = detect(ref, cur, **spans, cfg=DriftConfig(min_drifted=2))
    assert two.drift_detected and two.drifted == ["arrival", "load"]
    assert two.feature("load").statistic == pytest.approx(2.0, rel=0.15)
    assert not detect(ref, cur, **spans, cfg=DriftConfig(min_drifted=3)).drift_detected


# ---- performance signal ------------------------------------------------------------------------

def test_performance_signal():
    heur = {"fifo": 900.0, "sjf": 500.0, "las": 520.0}
    losing = performance_signal(600.0, heur)
    assert (losing["losing"], losing["best"], losing["margin"]) == (True, "sjf", 0.05)
    assert losing["ratio"] == pytest.approx(1.2)
    assert not performance_signal(520.0, heur)["losing"]  # within 5 % of sjf
    assert not performance_signal(400.0, heur)["losing"]
    assert performance_signal(520.0, heur, DriftConfig(performance_margin=0.0))["losing"]


@pytest.mark.parametrize(("live", "heur", "match"), [
    (500.0, {}, "no heuristic"), (math.nan, {"sjf": 1.0}, "champion"),
    (0.0, {"sjf": 1.0}, "champion"), (500.0, {"sjf": math.inf}, "sjf"),
    (500.0, {"sjf": -1.0}, "sjf")])
def test_performance_signal_bad_inputs(live, heur, match):
    with pytest.raises(ConfigError, match=match):
        performance_signal(live, heur)


# ---- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value"), [
    ("min_rows", 0), ("min_rows", 1), ("min_rows", 2.5), ("size_switch", 0),
    ("p_value", 0.0), ("p_value", 1.0), ("p_value", math.nan), ("distance", 0.0),
    ("load_ratio", 1.0), ("load_ratio", math.inf), ("performance_margin", -0.1),
    ("min_drifted", 0), ("min_drifted", 5), ("min_drifted", True)])
def test_config_errors_name_the_field(name, value):
    with pytest.raises(ConfigError, match=f"drift {name} must"):
        DriftConfig(**{name: value})


def test_config_defaults_are_evidentlys():
    cfg = DriftConfig()
    assert (cfg.size_switch, cfg.p_value, cfg.distance) == (1000, 0.05, 0.1)


# ---- against scipy -----------------------------------------------------------------------------

def test_statistics_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    distance = pytest.importorskip("scipy.spatial.distance")
    rng = np.random.default_rng(17)
    for n, m, shift in [(50, 50, 0.0), (60, 97, 0.3), (300, 200, 0.1), (9, 7, 0.5)]:
        a, b = rng.normal(size=n), rng.normal(shift, size=m)
        if n < 10:  # ties
            a, b = np.round(a, 1), np.round(b, 1)
        d, d_int = ks_statistic(a, b)
        ref = stats.ks_2samp(a, b)
        assert d == pytest.approx(ref.statistic, abs=1e-12)
        assert ks_p_value(n, m, d_int) == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)
        assert wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12)
    a, b = rng.normal(size=12000), rng.normal(0.03, size=11000)  # asymptotic above 10,000
    d, d_int = ks_statistic(a, b)
    assert ks_p_value(12000, 11000, d_int) == pytest.approx(stats.ks_2samp(a, b).pvalue,
                                                            abs=0.01)
    for dof in range(1, 8):
        for x in (0.01, 1.0, 7.5, 40.0):
            assert chi2_sf(x, dof) == pytest.approx(stats.chi2.sf(x, dof), rel=1e-10, abs=1e-300)
    p, q = np.array([3.0, 0.0, 5.0, 1.0]), np.array([0.0, 2.0, 5.0, 4.0])
    assert jensen_shannon(p, q) == pytest.approx(distance.jensenshannon(p, q, base=2), rel=1e-12)


def test_categorical_tests_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    ref = ["1"] * 70 + ["2"] * 30 + ["4"] * 20
    cur = ["1"] * 40 + ["2"] * 35 + ["4"] * 18 + ["9+"] * 7
    r = categorical_test(ref, cur)
    table = [[70, 30, 20, 0], [40, 35, 18, 7]]
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert (r.statistic, r.p_value) == (pytest.approx(chi2), pytest.approx(p))
    z = categorical_test(["1"] * 120 + ["share"] * 80, ["1"] * 50 + ["share"] * 60)
    chi2, p, _, _ = stats.chi2_contingency([[120, 80], [50, 60]], correction=False)
    assert z.statistic ** 2 == pytest.approx(chi2) and z.p_value == pytest.approx(p)
