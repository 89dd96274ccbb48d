"""Issue 17: knobs that reshape a sampled workload on purpose (``generators/knobs.py``),
the flags of ``autoflow generate sample`` that set them, and the training source
``wide:SOURCE`` that draws them afresh per episode."""

from __future__ import annotations

import re

import numpy as np
import pytest
from autoflow.envs.samplers import make_sampler
from autoflow.generators import fit_generator
from autoflow.generators.knobs import Knobs, apply_knobs, cv, parse_gpu_mix, sweep_runs
from hardening import assert_one_line_error, invoke
from simdata import mixed_workload

from autoflow.errors import ConfigError
from autoflow.job import TRAINING
from autoflow.traces.registry import load_workload


@pytest.fixture(scope="module")
def base():
    return load_workload("builtin:philly-mix:5000", seed=1)  # CV of durations about 2


def _gaps(w) -> np.ndarray:
    return np.diff([j.submit_time for j in w])


def _run_share(w) -> float:
    """Share of consecutive pairs alike: same GPUs, share and kind, durations within a
    factor e**0.6 (three sigmas of a follower's spread)."""
    same = [(a.num_gpus, a.gpu_milli, a.kind) == (b.num_gpus, b.gpu_milli, b.kind)
            and abs(np.log(a.duration / b.duration)) < 0.6 for a, b in zip(w.jobs, w.jobs[1:])]
    return float(np.mean(same))


@pytest.mark.parametrize("target", [0.3, 0.5, 3.0, 4.0])
def test_duration_cv_hits_the_target_and_keeps_the_mean(base, target):
    d0 = base.durations()
    w = apply_knobs(base, Knobs(duration_cv=target), np.random.default_rng(0))
    d = w.durations()
    assert cv(d) == pytest.approx(target, rel=0.10)
    assert d.mean() == pytest.approx(d0.mean(), rel=1e-3)
    assert len(w) == len(base) and (d > 0).all()
    # a monotone stretch (ties only at the 1-s floor), nothing else changed, input intact
    assert (np.diff(d[np.argsort(d0)]) >= 0).all()
    assert [j.submit_time for j in w] == [j.submit_time for j in base]
    assert base.durations().tolist() == d0.tolist()


@pytest.mark.parametrize("b", [0.3, 3.0])
def test_burstiness_moves_the_gap_cv_and_keeps_the_rate(base, b):
    w = apply_knobs(base, Knobs(burstiness=b), np.random.default_rng(0))
    g0, g = _gaps(base), _gaps(w)
    assert cv(g0) == pytest.approx(1.0, abs=0.1)  # the built-in workload is Poisson
    assert (cv(g) < 0.6) if b < 1 else (cv(g) > 2.0)
    assert g.mean() == pytest.approx(g0.mean(), rel=0.10)  # mean rate within 10%
    assert [j.job_id for j in w] == [j.job_id for j in base]  # order kept
    assert w.jobs[0].submit_time == base.jobs[0].submit_time


def test_sweeps_make_runs_and_keep_the_job_count(base):
    w = apply_knobs(base, Knobs(sweep_share=0.5, sweep_len=5), np.random.default_rng(0))
    assert len(w) == len(base)
    assert sorted(j.job_id for j in w) == sorted(j.job_id for j in base)
    assert _run_share(base) < 0.15
    assert _run_share(w) > 0.45
    # followers copy the leader's user, GPU types, QoS and CPU: on a workload that has them
    m = mixed_workload(400, seed=2, span=400 * 3600.0)  # hourly arrivals: runs stay together
    s = apply_knobs(m, Knobs(sweep_share=0.5, sweep_len=5), np.random.default_rng(1))
    alike = [a.user == b.user and a.gpu_types == b.gpu_types and a.cpu_milli == b.cpu_milli
             for a, b in zip(s.jobs, s.jobs[1:])]
    assert np.mean(alike) > 0.4
    assert len(s) == 400


@pytest.mark.parametrize("share,mean_len", [(0.2, 5), (0.5, 3), (0.3, 10), (0.6, 2)])
def test_sweep_runs_have_the_share_and_mean_length(share, mean_len):
    runs = sweep_runs(5000, share, mean_len, np.random.default_rng(0))
    followers = np.array([k for _, k in runs])
    assert followers.sum() == round(share * 5000) and (followers >= 1).all()
    starts = [s for s, _ in runs]
    assert starts == sorted(starts) and all(s + k < 5000 for s, k in runs)
    assert all(a + 1 + k <= b for (a, k), b in zip(runs, starts[1:]))  # no overlap
    if share * mean_len / (mean_len - 1) <= 1:  # enough leaders: lengths as asked
        assert (followers + 1).mean() == pytest.approx(mean_len, rel=0.1)


def test_gpu_mix_frequencies(base):
    mix = {1: 0.6, 2: 0.1, 4: 0.2, 8: 0.1}
    w = apply_knobs(base, Knobs(gpu_mix=mix), np.random.default_rng(0))
    trained = [j for j in w if j.kind == TRAINING and j.num_gpus > 0]
    assert len(trained) > 3000
    counts = np.array([j.num_gpus for j in trained])
    for g, p in mix.items():
        assert abs((counts == g).mean() - p) < 0.03, g
    assert all(j.gpu_milli == 1000 for j in trained if j.num_gpus > 1)
    # inference jobs keep their GPUs
    assert [j.num_gpus for j in w if j.kind != TRAINING] == \
        [j.num_gpus for j in base if j.kind != TRAINING]


def test_load_scale_divides_the_times(base):
    w = apply_knobs(base, Knobs(load_scale=2.0), np.random.default_rng(0))
    assert w.span == pytest.approx(base.span / 2)
    assert w.durations().tolist() == base.durations().tolist()


def test_same_seed_same_output_other_seed_other(base):
    k = Knobs(duration_cv=0.6, burstiness=2.0, sweep_share=0.3, sweep_len=4,
              gpu_mix={1: 0.5, 8: 0.5})
    a, b, c = (apply_knobs(base.head(500), k, np.random.default_rng(s)) for s in (7, 7, 8))
    assert a.jobs == b.jobs
    assert a.jobs != c.jobs
    assert cv(a.durations()) == pytest.approx(0.6, rel=0.1)


@pytest.mark.parametrize("kwargs,needle", [
    ({"duration_cv": 0.0}, "--duration-cv must be > 0.05 and <= 10"),
    ({"duration_cv": float("nan")}, "--duration-cv"),
    ({"burstiness": 11}, "--burstiness must be > 0.05 and <= 10"),
    ({"sweep_share": 1.5}, "--sweep-share must be >= 0 and <= 1"),
    ({"sweep_share": 0.2, "sweep_len": 0.5}, "--sweep-len must be >= 1 and <= 1,000"),
    ({"load_scale": 0}, "--load-scale"),
    ({"gpu_mix": {1: 0.5, 2: 0.2}}, "sum to 1"),
    ({"gpu_mix": {0: 1.0}}, "'0:1.0': the GPU count"),
    ({"gpu_mix": {1: 1.5, 2: -0.5}}, "'2:-0.5': the probability"),
])
def test_knobs_are_checked(kwargs, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        Knobs(**kwargs)


@pytest.mark.parametrize("text,needle", [
    ("1:0.6,2:0.1,4:0.2,8:0.2", "sum to 1"), ("1:0.5,x", "'x' is not GPUS:PROBABILITY"),
    ("1:0.5,1.5:0.5", "'1.5:0.5'"), ("1:1.2,2:-0.2", "'2:-0.2'"),
    ("1:0.5,1:0.5", "named twice"), ("0:1", "'0:1'"), ("1:nan", "'1:nan'"),
])
def test_gpu_mix_syntax(text, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        parse_gpu_mix(text)


def test_gpu_mix_parses():
    assert parse_gpu_mix(" 8:0.1, 1:0.6,2:0.1,4:0.2") == {1: 0.6, 2: 0.1, 4: 0.2, 8: 0.1}


@pytest.fixture(scope="module")
def gen_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("knobs") / "g.gen"
    fit_generator(mixed_workload(400, seed=3, span=86400.0 * 2), "empirical", seed=0).save(path)
    return path


def test_cli_sample_applies_the_knobs(tmp_path, gen_file):
    knobs = ["--duration-cv", "0.5", "--burstiness", "2", "--sweep-share", "0.3",
             "--sweep-len", "4", "--gpu-mix", "1:0.6,2:0.1,4:0.2,8:0.1"]
    outs = [tmp_path / f"{k}.csv" for k in "abc"]
    for out, seed in zip(outs, (4, 4, 5)):
        r = invoke("generate", "sample", "--model", gen_file, "-n", "2000", "--seed", seed,
                   *knobs, "--out", out)
        assert r.exit_code == 0, r.output
        assert "shaped by cv=0.5,burst=2,sweep=0.3x4" in " ".join(r.output.split())
    a = load_workload(f"csv:{outs[0]}")
    assert len(a) == 2000
    assert cv(a.durations()) == pytest.approx(0.5, rel=0.1)
    assert cv(_gaps(a)) > 1.3
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert outs[0].read_bytes() != outs[2].read_bytes()
    plain = tmp_path / "plain.csv"
    assert invoke("generate", "sample", "--model", gen_file, "-n", "2000", "--seed", "4",
                  "--out", plain).exit_code == 0
    assert cv(load_workload(f"csv:{plain}").durations()) > 1.0  # lognormal sigma 1.2


@pytest.mark.parametrize("flag,value,needle", [
    ("--duration-cv", "0", "> 0.05 and <= 10"), ("--duration-cv", "nan", "finite"),
    ("--burstiness", "20", "<= 10"), ("--burstiness", "-1", "> 0.05"),
    ("--sweep-share", "1.5", "<= 1"), ("--sweep-share", "-0.1", ">= 0"),
    ("--sweep-len", "0", ">= 1"), ("--gpu-mix", "1:0.5,3:x", "'3:x'"),
    ("--gpu-mix", "1:0.5,2:0.2", "sum to 1"), ("--gpu-mix", "1:1.5,2:-0.5", "'2:-0.5'"),
])
def test_cli_refuses_bad_knobs(tmp_path, gen_file, flag, value, needle):
    r = invoke("generate", "sample", "--model", gen_file, "-n", "10",
               "--out", tmp_path / "o" / "s.csv", "--sweep-share", "0.1", flag, value)
    assert_one_line_error(r, flag, needle)
    assert not (tmp_path / "o").exists()  # refused before anything was made


def test_cli_sweep_len_needs_sweep_share(tmp_path, gen_file):
    r = invoke("generate", "sample", "--model", gen_file, "-n", "10",
               "--out", tmp_path / "s.csv", "--sweep-len", "4")
    assert_one_line_error(r, "--sweep-len needs --sweep-share")


def test_wide_source_varies_the_cv_and_is_reproducible():
    sampler = make_sampler("wide:builtin:philly-mix-small")
    assert sampler.samplers[0].cluster.name == "philly-64"  # the inner source's default
    cvs, labels = [], []
    for seed in range(20):
        w, spec = sampler.sample(np.random.default_rng(seed))
        assert w.source.startswith("wide[cv=") and w.source.endswith(
            tuple(f"builtin:philly-mix-small:{n}" for n in range(150, 401)))
        assert 150 <= len(w) <= 400 and spec.total_gpus > 0
        target = float(re.search(r"cv=([0-9.]+)", w.source).group(1))
        assert cv(w.durations()) == pytest.approx(target, rel=0.1)
        cvs.append(cv(w.durations()))
        labels.append(w.source)
    assert sum(c < 0.8 for c in cvs) >= 2 and sum(c > 1.5 for c in cvs) >= 2, cvs
    assert any("mix=base" in s for s in labels) and any("mix=1:" in s for s in labels)
    again, _ = sampler.sample(np.random.default_rng(3))
    first, _ = make_sampler("wide:builtin:philly-mix-small").sample(np.random.default_rng(3))
    assert again.jobs == first.jobs and again.source == first.source == labels[3]


def test_wide_source_keeps_the_cluster_and_refuses_nesting():
    assert make_sampler("wide:builtin:shared-gpu").samplers[0].cluster.name == "hetero-mix"
    assert make_sampler("wide:builtin:philly-mix@itp-8gpu").samplers[0].cluster.name == \
        "itp-8gpu"
    for bad in ("wide:", "wide", "wide:wide:builtin:philly-mix"):
        with pytest.raises(ConfigError, match="wide:SOURCE"):
            make_sampler(bad)
