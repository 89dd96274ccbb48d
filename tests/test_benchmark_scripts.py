"""Benchmark scripts that compare checkouts: they run and say what they compared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
