"""``--load RHO``: offered load, resizing, time-scaling, and what bench records."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from autoflow.bench import BenchConfig, run_bench
from autoflow.cli import app
from autoflow.cluster import ClusterSpec, Node, load_cluster, scale_to_load
from autoflow.errors import ClusterError
from autoflow.feasibility import fits_now
from autoflow.job import Job
from autoflow.load import TOLERANCE, fit_load, load_span, offered_load, time_scaled
from autoflow.policies import make_policy
from autoflow.sim.simulator import Simulator
from autoflow.state import ClusterState
from autoflow.traces import normalized
from autoflow.workload import Workload


def by_hand(w: Workload, spec: ClusterSpec) -> float:
    """Offered load written out: GPU-time over GPUs x (submit spread + mean duration)."""
    gpu_time = sum(j.num_gpus * j.gpu_milli / 1000 * j.duration for j in w)
    spread = max(j.submit_time for j in w) - min(j.submit_time for j in w)
    mean_d = sum(j.duration for j in w) / len(w.jobs)
    return gpu_time / (spec.total_gpus * (spread + mean_d))


def wide_gang(width: int = 32) -> Workload:
    """100 one-GPU jobs over ~3 hours and one gang of ``width`` GPUs: at low loads the
    cluster cannot shrink below the gang."""
    jobs = [Job(str(i), i * 100.0, 1000.0) for i in range(100)]
    jobs.append(Job("wide", 50.0, 10.0, num_gpus=width))
    return Workload(jobs)


def runs_everything(w: Workload, spec: ClusterSpec) -> bool:
    st = ClusterState(spec)
    return all(fits_now(st, st.compile(j)) for j in w)


@pytest.mark.parametrize("rho", [0.5, 0.9, 1.1])
def test_a_wide_gang_is_time_scaled_to_the_target(rho):
    w = wide_gang()
    assert scale_to_load(load_cluster("itp-8gpu"), w, rho).total_gpus == 32  # resizing alone
    fit = fit_load(load_cluster("itp-8gpu"), w, rho)
    assert fit.spec.total_gpus == 32 and runs_everything(w, fit.spec)
    assert fit.method == "resize+time-scale" and fit.time_scale < 1  # compressed
    assert abs(by_hand(fit.workload, fit.spec) / rho - 1) <= TOLERANCE
    assert fit.achieved == pytest.approx(by_hand(fit.workload, fit.spec))
    assert fit.resized_load == pytest.approx(by_hand(w, fit.spec))
    # the same jobs, durations and order; only the submit times change: scaled from the
    # first, in whole seconds as the trace's are
    assert [(j.job_id, j.duration) for j in fit.workload] == [(j.job_id, j.duration) for j in w]
    assert [j.submit_time for j in fit.workload] == [round(j.submit_time * fit.time_scale)
                                                     for j in w]


def test_two_loads_give_two_achieved_loads():
    w = wide_gang(64)  # resizing alone gives the same 64 GPUs for both
    a, b = (fit_load(load_cluster("itp-8gpu"), w, rho) for rho in (0.9, 1.1))
    assert a.spec.total_gpus == b.spec.total_gpus == 64
    assert a.achieved == pytest.approx(0.9, rel=TOLERANCE)
    assert b.achieved == pytest.approx(1.1, rel=TOLERANCE)


def test_a_tiny_trace_that_would_need_less_than_a_node():
    w = Workload([Job(str(i), i * 28800.0, 600.0) for i in range(30)])  # 10 days, 5 GPU-hours
    fit = fit_load(load_cluster("itp-8gpu"), w, 0.9)
    assert len(fit.spec.nodes) == 1
    assert fit.method == "resize+time-scale" and fit.time_scale < 0.01
    assert by_hand(fit.workload, fit.spec) == pytest.approx(0.9, rel=TOLERANCE)


def test_resizing_alone_is_kept_when_it_is_within_one_percent():
    w = Workload([Job(str(i), i * 100.0, 800.0) for i in range(1000)])  # 8 GPUs busy
    fit = fit_load(load_cluster("itp-8gpu"), w, 8 * 100_000 / (8 * 1000 * 100) * 0.999)
    assert fit.method == "resize" and fit.time_scale == 1.0 and fit.workload is w
    assert fit.spec.total_gpus == 8


def typed_cluster() -> ClusterSpec:
    """Type B is rare (16 of 116 nodes); one B node only has the CPU for an 8-GPU B job
    wanting 50 cores, and other 8-GPU B nodes lack it."""
    def group(name, n, gpu_type, gpus, cpu, mem):
        return [Node(f"{name}-{i}", gpu_type, gpus, cpu, mem) for i in range(n)]
    return ClusterSpec("rare-b", group("a", 100, "A", 8, 64_000, 0)
                       + group("b4", 10, "B", 4, 32_000, 100_000)
                       + group("b8lo", 5, "B", 8, 16_000, 500_000)
                       + group("b8hi", 1, "B", 8, 96_000, 500_000))


def typed_workload() -> Workload:
    jobs = [Job(str(i), 60.0 * i, 1000.0) for i in range(200)]
    # "x" runs on two idle 4-GPU B nodes while no B node has 8 GPUs (a gang over nodes
    # needs no CPU test there); a B node with 8 GPUs added for "z" (memory) makes "x" a
    # one-node job, which only the 96-core node can host
    jobs += [Job("x", 30.0, 500.0, num_gpus=8, gpu_types=("B",), cpu_milli=50_000),
             Job("z", 90.0, 500.0, num_gpus=1, gpu_types=("B",), memory_mib=200_000)]
    return Workload(jobs)


@pytest.mark.parametrize("how", ["scale_to_load", "fit_load"])
def test_a_typed_8_gpu_job_keeps_a_node_it_can_run_on(how):
    w, spec = typed_workload(), typed_cluster()
    small = (scale_to_load(spec, w, 0.9) if how == "scale_to_load"
             else fit_load(spec, w, 0.9).spec)
    assert len(small.nodes) < 20
    assert runs_everything(w, small)
    assert any(n.gpu_type == "B" and n.gpus == 8 and n.cpu_milli >= 50_000 for n in small.nodes)
    result = Simulator(w, small, make_policy("fifo")).run()  # raised "can never run" before
    assert sum(js.finish is not None for js in result.jobs) == len(w)


def test_a_heterogeneous_cluster_keeps_its_gpu_type_mix():
    spec = ClusterSpec("mix", [Node(f"a{i}", "A", 8) for i in range(60)]
                       + [Node(f"b{i}", "B", 2) for i in range(100)]
                       + [Node(f"c{i}", "C", 4) for i in range(20)])
    w = Workload([Job(str(i), i * 100.0, 100.0) for i in range(500)])  # about 1 GPU busy

    def shares(s: ClusterSpec) -> Counter:
        c = Counter()
        for n in s.nodes:
            c[n.gpu_type] += n.gpus / s.total_gpus
        return c

    full, bare = shares(spec), scale_to_load(spec, w, 0.9)
    assert len(bare.nodes) == 1  # resizing alone: one node, one type
    fit = fit_load(spec, w, 0.9)
    got = shares(fit.spec)
    assert 0.5 * sum(abs(full[t] - got[t]) for t in full) <= 0.10 and fit.mix_tolerance == 0.10
    assert fit.spec.total_gpus < spec.total_gpus / 4  # still much smaller than the full one
    assert fit.achieved == pytest.approx(0.9, rel=TOLERANCE)
    # a homogeneous cluster has no such floor
    assert fit_load(load_cluster("itp-8gpu"), w, 0.9).spec.total_gpus == 8
    # a workload too small to load the mix-keeping cluster even if submitted all at once
    # (20 one-GPU jobs): the target wins over the mix
    few = Workload([Job(str(i), i * 1000.0, 100.0) for i in range(20)])
    fit = fit_load(spec, few, 0.9)
    assert fit.mix_tolerance is None and len(fit.spec.nodes) == 1
    assert by_hand(fit.workload, fit.spec) == pytest.approx(0.9, rel=TOLERANCE)


def test_load_span_is_the_submit_spread_plus_the_mean_duration():
    w = Workload([Job("a", 10.0, 100.0), Job("b", 50.0, 300.0), Job("c", 30.0, 200.0)])
    assert load_span(w) == 40.0 + 200.0
    batch = Workload([Job(str(i), 0.0, 100.0) for i in range(16)])
    assert load_span(batch) == 100.0  # all at once: a span, not 1 s
    # a batch spans its 99th-percentile duration (its longest job, for 100 jobs or fewer)
    assert load_span(Workload([Job("a", 5.0, 100.0), Job("b", 5.0, 300.0)])) == 300.0
    assert offered_load(batch, load_cluster("philly-64")) == pytest.approx(16 / 64)
    assert fit_load(load_cluster("itp-8gpu"), batch, 1.0).spec.total_gpus == 16


def test_time_scaled_keeps_the_first_submission_and_the_jobs():
    w = Workload([Job("a", 100.0, 5.0), Job("b", 110.0, 6.0), Job("c", 140.0, 7.0)])
    s = time_scaled(w, 0.5)
    assert [j.submit_time for j in s] == [100.0, 105.0, 120.0]
    assert [j.duration for j in s] == [5.0, 6.0, 7.0] and [j.submit_time for j in w][1] == 110.0
    assert [j.submit_time for j in time_scaled(w, 0.33)] == [100.0, 103.0, 113.0]  # whole s
    assert time_scaled(w, 0.33, whole_seconds=False)[2].submit_time == pytest.approx(113.2)
    w2 = Workload([Job("a", 0.0, 5.0), Job("b", 0.5, 6.0)])  # not whole seconds: not rounded
    assert time_scaled(w2, 0.5)[1].submit_time == 0.25
    with pytest.raises(ValueError):
        time_scaled(w, 0)


def test_an_unreachable_load_is_a_clear_error():
    batch = Workload([Job(str(i), 0.0, 100.0) for i in range(10)])  # 10 GPUs busy at once
    with pytest.raises(ClusterError, match=r"--load 1 cannot be reached within ±3%.*same "
                                           "instant"):
        fit_load(load_cluster("itp-8gpu"), batch, 1.0)  # 8 or 16 GPUs: 1.25 or 0.63
    gang = Workload([Job("a", 0.0, 100.0), Job("b", 10.0, 100.0),
                     Job("wide", 20.0, 1.0, num_gpus=64)])
    with pytest.raises(ClusterError, match="even with the arrivals compressed toward one "
                                           "instant the load would only approach 0.0616"):
        fit_load(load_cluster("itp-8gpu"), gang, 0.9)
    with pytest.raises(ClusterError, match="must be > 0"):
        fit_load(load_cluster("itp-8gpu"), gang, 0)


def write_csv(w: Workload, path) -> str:
    normalized.write(w, path)
    return f"csv:{path}"


def test_bench_records_the_method_and_the_achieved_load(tmp_path):
    trace = write_csv(wide_gang(), tmp_path / "w.csv")
    res = run_bench(BenchConfig(trace=trace, policies=["fifo"], out=str(tmp_path / "o"),
                                cluster="itp-8gpu", load=0.9))
    s = res["manifest"]["config"]["setups"][0]
    assert s["load_method"] == "resize+time-scale" and s["target_load"] == 0.9
    assert abs(s["offered_load"] / 0.9 - 1) <= TOLERANCE and 0 < s["time_scale"] < 1
    assert s["resized_load"] < 0.9 and s["cluster"]["gpus"] == 32
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["config"]["setups"] == [s]
    res = run_bench(BenchConfig(trace=trace, policies=["fifo"], out=str(tmp_path / "p"),
                                cluster="itp-8gpu"))
    s = res["manifest"]["config"]["setups"][0]
    assert s["load_method"] == "none" and s["target_load"] is None and s["time_scale"] == 1.0
    assert s["offered_load"] == pytest.approx(by_hand(wide_gang(), load_cluster("itp-8gpu")),
                                              abs=1e-4)


def test_bench_fails_in_one_line_when_the_load_cannot_be_reached(tmp_path):
    batch = Workload([Job(str(i), 0.0, 100.0) for i in range(10)])
    trace = write_csv(batch, tmp_path / "batch.csv")
    r = CliRunner().invoke(app, ["bench", "--trace", trace, "--cluster", "itp-8gpu", "--load",
                                 "1.0", "--policies", "fifo", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert "cannot be reached within ±3%" in r.output and "Traceback" not in r.output
