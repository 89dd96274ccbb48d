"""The CLI end to end on a tiny workload."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from autoflow.cli import app

KEYS = {"avg_jct", "p50_jct", "p99_jct", "avg_wait", "avg_bounded_slowdown", "makespan",
        "gpu_allocation", "slo_violations", "preemptions", "jobs", "wall_s"}
runner = CliRunner()


def bench(tmp_path, *extra):
    return runner.invoke(app, ["bench", "--trace", "builtin:philly-mix-small", "--cluster",
                               "philly-64", "--out", str(tmp_path), *extra])


def test_bench_writes_results_manifest_and_plot(tmp_path):
    r = bench(tmp_path, "--policies", "sjf,las+fgd,srtf-oracle", "--seeds", "2")
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "results.json").read_text())
    assert list(res["policies"]) == ["fifo", "sjf", "las+fgd", "srtf-oracle"]  # fifo added
    for name, m in res["policies"].items():
        assert KEYS <= set(m), name
        assert m["jobs"] == 200 and m["seeds"] == 2 and len(m["per_seed"]) == 2
    assert res["policies"]["fifo"]["avg_jct_vs_fifo"] == 1.0
    assert res["policies"]["srtf-oracle"]["oracle"] is True
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man == res["manifest"]
    assert {"config", "seed", "versions", "git_commit", "machine"} <= set(man)
    assert man["config"]["seeds"] == 2 and "numpy" in man["versions"]
    png = (tmp_path / "jct_cdf.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "× fifo" in r.output and "srtf-oracle (oracle)" in r.output


def test_bench_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert bench(d, "--policies", "fifo,las", "--failure-rate", "5").exit_code == 0
    ra = json.loads((a / "results.json").read_text())["policies"]
    rb = json.loads((b / "results.json").read_text())["policies"]
    for m in (*ra.values(), *rb.values()):
        m.pop("wall_s")
    assert ra == rb


def test_bench_load_resizes_the_cluster(tmp_path):
    r = bench(tmp_path, "--policies", "fifo", "--load", "0.5")
    assert r.exit_code == 0, r.output
    setup = json.loads((tmp_path / "results.json").read_text())["manifest"]["config"]["setups"][0]
    assert abs(setup["offered_load"] - 0.5) < 0.1


def test_bench_bad_input_is_one_clear_line(tmp_path):
    for args, msg in [(["--trace", "nope:x.csv"], "unknown trace format"),
                      (["--trace", f"itp:{tmp_path}/missing.csv"], "file not found"),
                      (["--trace", "builtin:philly-mix-small", "--policies", "fifo,xyz"],
                       "unknown policy 'xyz'"),
                      (["--trace", "builtin:philly-mix-small", "--cluster", "nope"],
                       "unknown cluster"),
                      # printed as written: neither an emoji (":abc:") nor markup ("[red]")
                      (["--trace", "builtin:philly-mix-small", "--policies", "las:abc:"],
                       "las:abc:: thresholds must be numbers"),
                      (["--trace", "builtin:[red]x"], "unknown builtin workload '[red]x'")]:
        r = runner.invoke(app, ["bench", "--out", str(tmp_path / "o"), *args])
        assert r.exit_code == 2, (args, r.output)
        assert msg in r.output and "Traceback" not in r.output


def test_policies_and_clusters_commands():
    r = runner.invoke(app, ["policies"])
    assert r.exit_code == 0 and "easy-backfill" in r.output and "fgd" in r.output
    r = runner.invoke(app, ["clusters"])
    assert r.exit_code == 0 and "philly-64" in r.output
    for cmd in (["--help"], ["bench", "--help"], ["traces", "--help"], ["traces", "inspect",
                                                                           "--help"]):
        assert runner.invoke(app, cmd).exit_code == 0


def test_python_dash_m_runs_the_same_cli():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "autoflow", "policies"], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "fifo" in r.stdout and "las" in r.stdout
