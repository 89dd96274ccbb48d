"""Issue 15, section 2 (load part): ``--load`` on batch and tiny traces has a meaningful
definition, builds a bounded cluster, and refuses in one line what it cannot make
meaningful."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from hardening import assert_one_line_error, invoke

from autoflow import load as load_mod
from autoflow.cluster import load_cluster
from autoflow.errors import ClusterError
from autoflow.job import Job
from autoflow.limits import MAX_DURATION_S
from autoflow.load import TOLERANCE, fit_load, load_span, offered_load
from autoflow.traces import normalized
from autoflow.workload import Workload

DURATIONS = (60.0, 600.0, 3600.0, 36_000.0)


def batch(n: int = 1000) -> Workload:
    """``n`` jobs all submitted at t=0, of 1-8 GPUs and 1 minute to 10 hours."""
    rng = np.random.default_rng(0)
    return Workload([Job(f"b{i}", 0.0, float(rng.choice(DURATIONS)),
                         num_gpus=int(rng.choice([1, 1, 2, 4, 8]))) for i in range(n)])


def write(w: Workload, path) -> str:
    normalized.write(w, path)
    return f"csv:{path}"


def test_a_batch_trace_spans_its_longest_jobs_not_an_instant():
    w = batch()
    assert load_span(w) == 36_000.0  # the 99th percentile of the durations
    one = Workload([Job("a", 0.0, 3600.0, num_gpus=4)])
    assert load_span(one) == 3600.0
    assert offered_load(one, load_cluster("philly-64")) == pytest.approx(4 / 64)


def _fit_measuring_memory(w: Workload):
    """``fit_load`` at 0.9 on philly-64, and the peak bytes Python allocated meanwhile."""
    tracemalloc.start()
    try:
        fit = fit_load(load_cluster("philly-64"), w, 0.9)
        return fit, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_batch_trace_at_0_9_builds_a_bounded_cluster_that_queues():
    w = batch()
    fit, peak = _fit_measuring_memory(w)
    assert peak < 100 * 2**20  # bytes: about 10^8 GPUs were built before
    gpus_at_once = sum(j.num_gpus for j in w)
    # smaller than running every job at once (the load over the mean duration gave that)
    assert fit.spec.total_gpus < gpus_at_once / 2
    assert fit.method == "resize" and fit.workload is w
    work = sum(j.num_gpus * j.duration for j in w)
    assert fit.achieved == pytest.approx(work / (fit.spec.total_gpus * 36_000.0))
    assert abs(fit.achieved / 0.9 - 1) <= TOLERANCE


def test_bench_a_batch_trace_at_0_9_reports_a_truthful_load(tmp_path):
    trace = write(batch(200), tmp_path / "batch.csv")
    r = invoke("bench", "--trace", trace, "--load", "0.9", "--policies", "fifo",
               "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    setup = res["manifest"]["config"]["setups"][0]
    assert abs(setup["offered_load"] / 0.9 - 1) <= TOLERANCE
    fifo = res["policies"]["fifo"]
    assert fifo["avg_wait"] > 0  # the cluster is loaded: jobs queue
    # the GPU-time asked for over the cluster's during the makespan: at most the offered
    # load, as the makespan is at least the span
    assert 0.3 < fifo["gpu_allocation"] <= setup["offered_load"] + 1e-9


def test_a_one_job_trace_is_refused_with_a_load_resizing_reaches(tmp_path):
    trace = write(Workload([Job("a", 0.0, 3600.0)]), tmp_path / "one.csv")
    r = invoke("bench", "--trace", trace, "--load", "0.9", "--policies", "fifo",
               "--out", tmp_path / "o")
    assert_one_line_error(r, "same instant", "cannot be time-scaled", "try --load 0.125",
                          "no --load")
    assert not (tmp_path / "o" / "results.json").exists()
    r = invoke("bench", "--trace", trace, "--load", "0.125", "--policies", "fifo",
               "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    setup = res["manifest"]["config"]["setups"][0]
    assert setup["cluster"]["gpus"] == 8 and setup["offered_load"] == 0.125
    assert res["policies"]["fifo"]["gpu_allocation"] == pytest.approx(0.125)  # as reported


def test_a_batch_within_the_tolerance_keeps_its_whole_nodes():
    w = Workload([Job(str(i), 0.0, 100.0) for i in range(58)])  # 58 GPUs at once
    fit = fit_load(load_cluster("itp-8gpu"), w, 0.9)  # 64 GPUs: 0.906, 1% < off < 3%
    assert fit.spec.total_gpus == 64 and fit.method == "resize"
    assert fit.achieved == pytest.approx(58 / 64)


def test_a_duration_of_1e9_s_builds_a_bounded_cluster_or_is_refused(tmp_path):
    # in a batch of 100 jobs or fewer the longest job is the span: a 31-year job cannot
    # load a cluster of one node to 0.9, and resizing says what it reaches
    jobs = [Job("long", 0.0, MAX_DURATION_S)] + [Job(f"x{i}", 0.0, 600.0) for i in range(49)]
    trace = write(Workload(jobs), tmp_path / "long.csv")
    r = invoke("bench", "--trace", trace, "--load", "0.9", "--policies", "fifo",
               "--out", tmp_path / "o")
    assert_one_line_error(r, "the resized cluster (8 GPUs) gives 0.125", "same instant",
                          "try --load 0.125")
    # with arrivals, the long job lengthens the span through the mean duration (11.6 days): a
    # bounded cluster, in bounded memory and time, whose reported load is the achieved one
    w = Workload([Job("long", 0.0, MAX_DURATION_S)]
                 + [Job(f"x{i}", 100.0 * i, 600.0) for i in range(1, 1000)])
    fit, peak = _fit_measuring_memory(w)
    assert peak < 100 * 2**20 and fit.spec.total_gpus < 2000  # 1,008
    assert fit.achieved == pytest.approx(offered_load(fit.workload, fit.spec))
    assert abs(fit.achieved / 0.9 - 1) <= TOLERANCE


def test_the_cluster_load_builds_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(load_mod, "MAX_LOAD_GPUS", 64)
    trace = write(batch(200), tmp_path / "batch.csv")
    r = invoke("bench", "--trace", trace, "--load", "0.9", "--policies", "fifo",
               "--out", tmp_path / "o")
    line = assert_one_line_error(r, "--load 0.9", str(tmp_path / "batch.csv"),
                                 "would need a cluster of about", "more than the 64 GPUs")
    assert "nodes of philly-64" in line
    assert not (tmp_path / "o" / "results.json").exists()


def test_a_tiny_load_on_a_real_sized_trace_is_refused_by_the_cap():
    w = Workload([Job(str(i), 60.0 * i, 3600.0, num_gpus=8) for i in range(2000)])
    with pytest.raises(ClusterError, match=r"--load 1e-05: .* would need a cluster of about "
                                           r"[\d,]+ GPUs \([\d,]+ nodes of itp-8gpu\), more than "
                                           "the 100,000 GPUs and 100,000 nodes"):
        fit_load(load_cluster("itp-8gpu"), w, 1e-5)
