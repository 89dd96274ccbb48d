"""``autoflow run``: the simulated backend end to end, the real one (``--backend ray``)
on a tiny workload and a local two-node Ray cluster, and bad input as one clear line."""

from __future__ import annotations

import csv
import json
import os

import pytest
from typer.testing import CliRunner

from autoflow.cli import app
from autoflow.job import Job
from autoflow.traces import normalized
from autoflow.workload import Workload

KEYS = {"avg_jct", "p50_jct", "p99_jct", "avg_wait", "avg_bounded_slowdown", "makespan",
        "gpu_allocation", "slo_violations", "preemptions", "jobs", "wall_s",
        "avg_jct_vs_fifo"}
FIDELITY = {"jct_correlation", "avg_jct_ratio", "overhead_per_decision_ms",
            "launch_delay_wall_ms", "preemptions_real", "preemptions_simulated",
            "lost_work_s", "decisions"}
runner = CliRunner()
CLUSTER = "name: two\nnodes:\n  - {count: 2, gpu_type: V100, gpus: 2}\n"


def test_run_sim_writes_bench_keys_jobs_csv_and_plot(tmp_path):
    r = runner.invoke(app, ["run", "--trace", "builtin:philly-mix-small:50", "--policies",
                            "fifo,las", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "results.json").read_text())
    assert list(res["policies"]) == ["fifo", "las"] and "fidelity" not in res
    for m in res["policies"].values():
        assert KEYS <= set(m) and m["jobs"] == 50
    assert res["manifest"]["config"]["backend"] == "sim"
    rows = list(csv.reader((tmp_path / "jobs.csv").open()))
    assert rows[0] == ["job_id", "fifo_simulated_jct_s", "las_simulated_jct_s"]
    assert len(rows) == 51
    assert (tmp_path / "jct_cdf.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, msg", [
    (["--backend", "k8s"], "--backend must be one of sim, ray, got 'k8s'"),
    (["--policies", "fifo,fifo"], "names a policy twice"),
    (["--policies", "nope"], "nope"),
    (["--time-scale", "0"], "--time-scale must be"),
    (["--trace", "nope:x.csv"], "unknown trace format"),
])
def test_run_bad_input_is_one_clear_line(tmp_path, args, msg):
    r = runner.invoke(app, ["run", "--trace", "builtin:philly-mix-small:20", "--out",
                            str(tmp_path / "o"), *args])
    assert r.exit_code == 2
    assert msg in r.output


def test_run_on_ray_follows_the_simulation(tmp_path):
    if os.environ.get("CI"):
        import ray  # noqa: F401 - in CI Ray must be there: this test never skips
    else:
        pytest.importorskip("ray")
    jobs = [Job(f"j{i}", 20.0 * i, 60.0 + 40.0 * (i % 3), 1 + (i % 2)) for i in range(10)]
    trace = tmp_path / "w.csv"
    normalized.write(Workload(jobs), trace)
    (tmp_path / "two.yaml").write_text(CLUSTER)
    out = tmp_path / "out"
    r = runner.invoke(app, ["run", "--backend", "ray", "--trace", f"csv:{trace}", "--cluster",
                            str(tmp_path / "two.yaml"), "--policies", "fifo,las:20/2000",
                            "--time-scale", "0.02", "--restart-overhead", "5",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert list(res["policies"]) == ["fifo", "las:20/2000"]
    assert list(res["fidelity"]) == ["fifo", "las:20/2000"]
    for name, m in res["policies"].items():
        assert KEYS <= set(m) and m["jobs"] == 10, name
        f = res["fidelity"][name]
        assert FIDELITY <= set(f), name
        assert f["decisions"] >= 10 and f["overhead_per_decision_ms"] > 0
        assert f["avg_jct_real_s"] == pytest.approx(m["avg_jct"])
    # without preemption real processes follow the simulated schedule closely (with LAS
    # on ten jobs, which job a preemption picks can flip on a few ms: no bound there)
    f = res["fidelity"]["fifo"]
    assert f["jct_correlation"] > 0.9 and 0.9 < f["avg_jct_ratio"] < 1.2, f
    assert res["manifest"]["config"]["time_scale"] == 0.02
    assert "ray" in res["manifest"]["versions"]
    rows = list(csv.reader((out / "jobs.csv").open()))
    assert rows[0][1:3] == ["fifo_real_jct_s", "fifo_simulated_jct_s"] and len(rows) == 11
    for png in ("jct_cdf.png", "jct_real_vs_sim.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "JCT corr" in r.output
