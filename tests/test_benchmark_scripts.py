"""Benchmark scripts: they start, import no other script, and the ones that compare
checkouts or policies run and say what they compared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAIR = ROOT / "benchmarks" / "env_speed_pair.py"


def test_env_speed_pair_runs_both_checkouts_on_the_same_steps(tmp_path):
    out = tmp_path / "pair.json"
    done = subprocess.run([sys.executable, str(PAIR), "--base", str(ROOT), "--rounds", "3",
                           "--steps", "40", "--out", str(out)],
                          capture_output=True, text=True, check=True)
    result = json.loads(out.read_text())
    assert len(result["rounds"]) == 3 and result["steps_per_chunk"] == 40
    assert result["same_steps"] is True  # one checkout against itself: the same steps
    assert all(r["base"] > 0 and r["this"] > 0 for r in result["rounds"])
    assert result["ratio_q1"] <= result["ratio_median"] <= result["ratio_q3"]
    assert "| 3 × 40 |" in done.stdout and "| yes |" in done.stdout


def test_env_speed_pair_refuses_a_folder_that_is_not_a_checkout(tmp_path):
    done = subprocess.run([sys.executable, str(PAIR), "--base", str(tmp_path)],
                          check=False, capture_output=True, text=True)
    assert done.returncode != 0
    assert str(tmp_path) in done.stderr and "autoflow/__init__.py" in done.stderr


BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.rglob("*.py"))


def test_no_benchmark_imports_another_script():
    """Shared pieces live in the library (``autoflow.evaluate``), not in a script that
    another one imports by path."""
    import ast

    names = {p.stem for p in SCRIPTS}
    for path in SCRIPTS:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [(node.module or "").split(".")[0]] if not node.level else ["."]
            else:
                continue
            bad = [m for m in imported if m in names | {"benchmarks", "."}]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(BENCHMARKS)))
def test_every_benchmark_script_starts(path):
    done = subprocess.run([sys.executable, str(path), "--help"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()


def test_quality_runs_the_cases_present_and_prints_their_tables(tmp_path):
    traces = tmp_path / "traces"
    (traces / "itp").mkdir(parents=True)
    (traces / "itp" / "cluster06.csv").write_text(
        (ROOT / "tests" / "fixtures" / "itp_small.csv").read_text())
    out = tmp_path / "quality"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "quality.py"), "--traces",
                           str(traces), "--loads", "0.9", "--policies", "fifo,las,rl",
                           "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    assert "cluster08.csv not found" in done.stderr and "openb" in done.stderr
    r = json.loads((out / "cluster06-0.9" / "results.json").read_text())
    assert set(r["policies"]) == {"fifo", "las", "rl"}
    assert r["manifest"]["command"].startswith("autoflow bench --trace itp:")
    assert "| las |" in done.stdout and "| rl × fifo |" in done.stdout
    again = subprocess.run([sys.executable, str(BENCHMARKS / "quality.py"), "--tables",
                            str(out / "cluster06-0.9" / "results.json")],
                           cwd=ROOT, capture_output=True, text=True, check=True)
    assert again.stdout == done.stdout

SPEED = ROOT / "benchmarks" / "speed.py"


def _speed(tmp_path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "speed.json"
    done = subprocess.run([sys.executable, str(SPEED), "--only", "heuristics", "--case",
                           "small=builtin:philly-mix-small,philly-64,1.1", "--repeat", "2",
                           "--out", str(out), *args],
                          capture_output=True, text=True, check=True)
    return json.loads(out.read_text()), done.stdout


def test_speed_measures_every_heuristic_beside_fifo_with_each_placer(tmp_path):
    result, stdout = _speed(tmp_path, "--placers", "best-fit,fgd")
    (case,) = result["heuristics"]
    assert case["case"] == "small" and case["jobs"] == 200
    rows = case["rows"]
    assert [(r["policy"], r["placer"]) for r in rows] == [
        (p, pl) for pl in ("best-fit", "fgd")
        for p in ("fifo", "sjf", "las", "las-fcfs", "gittins", "easy-backfill", "sjf-oracle",
                  "srtf-oracle")]
    for r in rows:
        assert len(r["cpu_s_all"]) == 2 and r["cpu_s_best"] == min(r["cpu_s_all"]) > 0
        fifo = next(f for f in rows if f["policy"] == "fifo" and f["placer"] == r["placer"])
        assert r["vs_fifo"] == pytest.approx(r["cpu_s_best"] / fifo["cpu_s_best"])
    assert "| easy-backfill | fgd |" in stdout and "cores" in result["machine"]


def test_speed_flags_the_heuristics_over_the_limit(tmp_path):
    result, stdout = _speed(tmp_path, "--limit", "0")  # every ratio is above 0
    rows = result["heuristics"][0]["rows"]
    assert all(r["over_limit"] for r in rows)
    assert stdout.count("**over 0×**") == 8 and "over 0x fifo: small: fifo+best-fit" in stdout
    result, stdout = _speed(tmp_path, "--limit", "1e9")
    assert not any(r["over_limit"] for r in result["heuristics"][0]["rows"])
    assert "over 1e+09x fifo: none" in stdout
