"""Workflow metrics of ``autoflow.metrics.summarize`` (and ``autoflow bench``) against
values worked out by hand on tiny pipelines."""

from __future__ import annotations

import json
import math
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from autoflow import bench as bench_mod
from autoflow.cli import app
from autoflow.cluster import ClusterSpec, Node
from autoflow.evaluate import evaluate
from autoflow.job import INFERENCE, Job
from autoflow.metrics import summarize
from autoflow.policies import make_policy
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.traces import normalized
from autoflow.workload import Workload

BASE_KEYS = {"avg_jct", "p50_jct", "p99_jct", "avg_wait", "p99_wait", "avg_bounded_slowdown",
             "makespan", "gpu_allocation", "fragmentation", "slo_violations",
             "inference_jobs", "preemptions", "node_failures", "jobs", "wall_s", "oracle"}
WORKFLOW_KEYS = {"workflows", "avg_wct", "p50_wct", "p99_wct", "avg_stage_wait",
                 "p99_stage_wait", "stage_wait", "serving_stages", "serving_slo_violations",
                 "dropped_workflows", "dropped_jobs"}


def two_gpus() -> ClusterSpec:
    return ClusterSpec("hand", [Node("n", "V100", 2)])


def two_pipelines() -> list[Job]:
    """One node of 2 GPUs, FIFO:
      w1: p1 (prepare, CPU only, 100 s) -> t1 (train, 2 GPUs, 500 s) -> s1 (serve, 1000 s),
          every stage submitted at 0;
      x:  training, 2 GPUs, submit 50, 300 s: runs [50, 350], so t1 (eligible at 100)
          starts at 350;
      w2: p2 (prepare, CPU only, 50 s) -> s2 (serve, 200 s), submitted at 900;
      y:  training, 1 GPU, submit 920, 400 s: takes the GPU s1 leaves free, [920, 1320].
    Timeline:
      p1 [0, 100]  t1 [350, 850] (eligible 100: waits 250)  s1 [850, 1850] (waits 0)
      p2 [900, 950]  s2 [1320, 1520] (eligible 950: waits 370 > its 60 s SLO)"""
    return [
        Job("p1", 0, 100.0, num_gpus=0, workflow_id="w1", group="pipe/prepare"),
        Job("t1", 0, 500.0, num_gpus=2, workflow_id="w1", depends_on=("p1",),
            group="pipe/train"),
        Job("s1", 0, 1000.0, kind=INFERENCE, slo_s=60.0, workflow_id="w1",
            depends_on=("t1",)),
        Job("x", 50, 300.0, num_gpus=2),
        Job("p2", 900, 50.0, num_gpus=0, workflow_id="w2", group="pipe/prepare"),
        Job("s2", 900, 200.0, kind=INFERENCE, slo_s=60.0, workflow_id="w2",
            depends_on=("p2",)),
        Job("y", 920, 400.0),
    ]


def test_workflow_metrics_by_hand():
    ev = evaluate("fifo", Workload(two_pipelines()), two_gpus())
    starts = {js.job.job_id: (js.first_start, js.finish) for js in ev.result.jobs}
    assert starts == {"p1": (0, 100), "t1": (350, 850), "s1": (850, 1850), "x": (50, 350),
                      "p2": (900, 950), "s2": (1320, 1520), "y": (920, 1320)}
    m = ev.metrics
    assert set(m) == BASE_KEYS | WORKFLOW_KEYS
    assert m["workflows"] == 2
    # WCT: w1 last finish 1850 - first submit 0; w2 1520 - 900 = 620
    assert m["avg_wct"] == pytest.approx((1850 + 620) / 2)
    assert m["p50_wct"] == pytest.approx((1850 + 620) / 2)
    assert m["p99_wct"] == pytest.approx(620 + 0.99 * 1230)
    # stage waits from eligibility: p1 0, t1 350 - 100, s1 0, p2 0, s2 1320 - 950
    assert m["avg_stage_wait"] == pytest.approx((0 + 250 + 0 + 0 + 370) / 5)  # 124
    assert m["p99_stage_wait"] == pytest.approx(250 + 0.96 * 120)  # sorted 0 0 0 250 370
    # by group; the serving stages have none and go under their kind
    assert m["stage_wait"] == pytest.approx({"pipe/prepare": 0.0, "pipe/train": 250.0,
                                             "inference": (0 + 370) / 2})
    # s1 starts the instant t1 finishes (delay 0 from eligibility, 850 from submission):
    # met; s2 waited 370 s after p2 finished: missed
    assert m["serving_stages"] == 2 and m["serving_slo_violations"] == 1
    assert m["inference_jobs"] == 2 and m["slo_violations"] == 1  # s2 only, not s1
    assert m["dropped_jobs"] == 0 and m["dropped_workflows"] == 0
    # the figures that were there before keep their meaning: JCT from submission
    assert m["jobs"] == 7 and m["makespan"] == pytest.approx(1850.0)
    jct = {"p1": 100, "t1": 850, "s1": 1850, "x": 300, "p2": 50, "s2": 620, "y": 400}
    assert m["avg_jct"] == pytest.approx(sum(jct.values()) / 7)


def test_no_workflows_no_new_keys_and_dependency_slo_from_eligibility():
    # One GPU, FIFO. b is an inference job that depends on a (no workflow id):
    #   a: training, 300 s -> [0, 300];  b: submitted at 0, eligible at 300, starts 300:
    #   its start delay is 0 (300 from submission), so no SLO miss.
    #   c: inference without dependencies, submit 400, starts at once: met;
    #   d: inference, SLO 60, submit 410, waits for c (500 s) -> starts 900: missed.
    jobs = [Job("a", 0, 300.0), Job("b", 0, 100.0, kind=INFERENCE, slo_s=60.0,
                                     depends_on=("a",)),
            Job("c", 400, 500.0, kind=INFERENCE, slo_s=60.0),
            Job("d", 410, 10.0, kind=INFERENCE, slo_s=60.0)]
    ev = evaluate("fifo", Workload(jobs), ClusterSpec("hand", [Node("n", "V100", 1)]))
    starts = {js.job.job_id: js.first_start for js in ev.result.jobs}
    assert starts == {"a": 0, "b": 300, "c": 400, "d": 900}
    assert set(ev.metrics) == BASE_KEYS
    assert ev.metrics["inference_jobs"] == 3 and ev.metrics["slo_violations"] == 1  # d

    plain = [Job("a", 100, 100.0, num_gpus=2), Job("b", 110, 50.0), Job("c", 120, 200.0)]
    assert set(evaluate("fifo", Workload(plain), two_gpus()).metrics) == BASE_KEYS


def run_removing(jobs: list[Job], at: float, job_id: str, cluster: ClusterSpec) -> dict:
    """Simulates ``jobs`` and cancels ``job_id`` at time ``at`` (what a live scheduler's
    ``remove`` does: its dependants are dropped)."""
    sim = Simulator(Workload(jobs), cluster, make_policy("fifo"), SimConfig())
    sim.begin()
    victim = next(js for js in sim.jobs if js.job.job_id == job_id)
    sim.backend.call_at(at, lambda: sim.core.remove(victim))
    sim.env.run()
    return summarize(sim.result(0.0))


def test_dropped_stages_do_not_break_the_metrics():
    # One node of 2 GPUs. x (2 GPUs, 100 s) runs [0, 100]; the stage a (2 GPUs) waits
    # behind it and is cancelled at 40, so its dependant b is dropped: neither starts.
    # Workflow v (CPU only) runs through: c [0, 20], d [20, 50] -> WCT 50, waits 0.
    # (c and d come first: FIFO would hold them behind a)
    jobs = [Job("c", 0, 20.0, num_gpus=0, workflow_id="v"),
            Job("d", 0, 30.0, num_gpus=0, workflow_id="v", depends_on=("c",)),
            Job("x", 0, 100.0, num_gpus=2),
            Job("a", 0, 50.0, num_gpus=2, workflow_id="w", group="w/train"),
            Job("b", 0, 10.0, kind=INFERENCE, workflow_id="w", depends_on=("a",))]
    m = run_removing(jobs, 40.0, "a", two_gpus())
    assert m["jobs"] == 5 and m["dropped_jobs"] == 2
    assert m["workflows"] == 2 and m["dropped_workflows"] == 1
    assert m["avg_wct"] == m["p99_wct"] == pytest.approx(50.0)  # v only
    assert m["avg_stage_wait"] == 0.0 and m["stage_wait"] == {"training": 0.0}
    assert m["serving_stages"] == 0 and m["inference_jobs"] == 0 and m["slo_violations"] == 0
    assert m["avg_jct"] == pytest.approx((100 + 20 + 50) / 3)  # x, c, d

    # a stage cancelled while it runs: its dependant is dropped; it keeps its JCT (40 s)
    # and, never completed, counts the 40 s it ran as its duration in the slowdown
    jobs = [Job("r", 0, 100.0, num_gpus=2, workflow_id="w"),
            Job("s", 0, 10.0, workflow_id="w", depends_on=("r",))]
    m = run_removing(jobs, 40.0, "r", two_gpus())
    assert m["dropped_jobs"] == 1 and m["dropped_workflows"] == 1
    assert m["avg_jct"] == pytest.approx(40.0) and m["avg_bounded_slowdown"] == 1.0
    assert math.isnan(m["avg_wct"]) and m["avg_stage_wait"] == 0.0  # r started at once


def hand_cluster_yaml(tmp_path) -> str:
    path = tmp_path / "hand.yaml"
    path.write_text("name: hand\nnodes:\n  - {count: 1, gpu_type: V100, gpus: 2}\n")
    return str(path)


def test_bench_cli_reports_workflow_columns(tmp_path):
    # the two pipelines through a normalized CSV (workflow_id, depends_on columns)
    normalized.write(Workload(two_pipelines()), tmp_path / "pipes.csv")
    normalized.write(Workload([Job("a", 0, 100.0, num_gpus=2), Job("b", 10, 50.0)]),
                     tmp_path / "plain.csv")
    runner = CliRunner()
    cluster = hand_cluster_yaml(tmp_path)
    out = tmp_path / "pipes"
    r = runner.invoke(app, ["bench", "--trace", f"csv:{tmp_path / 'pipes.csv'}", "--cluster",
                            cluster, "--policies", "fifo,sjf", "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())["policies"]
    fifo = res["fifo"]
    assert fifo["workflows"] == 2 and fifo["serving_stages"] == 2
    assert fifo["avg_wct"] == pytest.approx(1235.0)
    assert fifo["p99_wct"] == pytest.approx(620 + 0.99 * 1230)
    assert fifo["avg_stage_wait"] == pytest.approx(124.0)
    assert fifo["stage_wait"] == pytest.approx({"pipe/prepare": 0.0, "pipe/train": 250.0,
                                                "inference": 185.0})
    assert fifo["serving_slo_violations"] == 1 and fifo["slo_violations"] == 1
    assert fifo["dropped_jobs"] == 0
    assert WORKFLOW_KEYS <= set(res["sjf"])
    assert "avg WCT" in r.output and "p99 WCT" in r.output and "stage" in r.output
    # fifo's row: ... avg wait, then avg WCT, p99 WCT and avg stage wait
    assert re.search(r"fifo .*│\s*1235s\s*│\s*1838s\s*│\s*124s\s*│", r.output)

    # the per-stage table (``bench.stage_table``) of the same results
    console = Console(record=True, width=200)
    console.print(bench_mod.stage_table(json.loads((out / "results.json").read_text())))
    text = console.export_text()
    assert "pipe/train" in text and "250s" in text and "1/2" in text

    plain = tmp_path / "plain"
    r = runner.invoke(app, ["bench", "--trace", f"csv:{tmp_path / 'plain.csv'}", "--cluster",
                            cluster, "--policies", "fifo", "--out", str(plain)])
    assert r.exit_code == 0, r.output
    res = json.loads((plain / "results.json").read_text())
    assert not WORKFLOW_KEYS & set(res["policies"]["fifo"])
    assert "WCT" not in r.output and "stage" not in r.output
    assert bench_mod.stage_table(res) is None


def test_bench_averages_workflow_metrics_over_seeds():
    runs = [{"workflows": 2, "serving_stages": 2, "avg_wct": 100.0, "p50_wct": 100.0,
             "p99_wct": 100.0, "avg_stage_wait": 10.0, "p99_stage_wait": 20.0,
             "stage_wait": {"a/train": 10.0}, "serving_slo_violations": 1,
             "dropped_workflows": 0, "dropped_jobs": 0},
            {"workflows": 3, "serving_stages": 1, "avg_wct": float("nan"),
             "p50_wct": float("nan"), "p99_wct": float("nan"), "avg_stage_wait": 30.0,
             "p99_stage_wait": 40.0, "stage_wait": {"a/train": 30.0, "b/serve": 5.0},
             "serving_slo_violations": 0, "dropped_workflows": 3, "dropped_jobs": 4}]
    agg: dict = {}
    bench_mod._aggregate_workflows(agg, runs)
    assert agg["workflows"] == 2 and agg["serving_stages"] == 2  # the first seed's
    assert agg["avg_wct"] == 100.0  # a seed with no completed workflow has no WCT
    assert agg["avg_stage_wait"] == 20.0 and agg["serving_slo_violations"] == 0.5
    assert agg["stage_wait"] == {"a/train": 20.0, "b/serve": 5.0}
    assert agg["dropped_jobs"] == 2.0 and agg["dropped_workflows"] == 1.5
