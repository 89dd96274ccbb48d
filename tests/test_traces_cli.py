"""``autoflow traces`` commands, driven through typer's CliRunner."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoflow.traces.cli import app
from autoflow.traces.registry import load_workload

FIX = Path(__file__).parent / "fixtures"
runner = CliRunner()

FIXTURES = {"itp": "itp_small.csv", "alibaba-openb": "openb_pods_small.csv",
            "alibaba-dlrm": "dlrm_small.csv", "helios": "helios_small.csv",
            "tiresias": "tiresias_small.csv", "swf": "small.swf", "csv": "normalized_small.csv"}


def run(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_inspect_table():
    r = run("inspect", f"alibaba-openb:{FIX / 'openb_pods_small.csv'}")
    assert r.exit_code == 0, r.output
    assert "never scheduled (no observed run time)" in r.stdout
    assert "censored" in r.stdout


def test_inspect_json():
    r = run("inspect", f"alibaba-dlrm:{FIX / 'dlrm_small.csv'}", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["jobs"] == 9 and d["rows_read"] == 12 and d["notes"]["censored"] == 3
    assert d["jobs_by_kind"]["inference"] == 9


def test_inspect_builtin_seed():
    a = json.loads(run("inspect", "builtin:philly-mix-small", "--json", "--seed", "3").stdout)
    b = json.loads(run("inspect", "builtin:philly-mix-small", "--json", "--seed", "3").stdout)
    c = json.loads(run("inspect", "builtin:philly-mix-small", "--json", "--seed", "4").stdout)
    assert a == b and a["jobs"] == 200 and a != c


def test_formats():
    r = run("formats")
    assert r.exit_code == 0
    for name in FIXTURES:
        assert name in r.stdout
    assert "builtin:philly-mix" in r.stdout and "alibaba-dlrm" in r.stdout


@pytest.mark.parametrize("fmt", list(FIXTURES))
def test_convert_round_trip(tmp_path, fmt):
    src = f"{fmt}:{FIX / FIXTURES[fmt]}"
    out = tmp_path / "out" / "jobs.csv"
    r = run("convert", src, "--out", str(out))
    assert r.exit_code == 0, r.output
    assert f"csv:{out}" in r.stdout
    original, again = load_workload(src), load_workload(f"csv:{out}")
    # the normalized CSV carries every Job field but the free-form ``extra``
    assert [replace(j, extra={}) for j in original] == [replace(j, extra={}) for j in again]


def test_convert_builtin_round_trip(tmp_path):
    out = tmp_path / "b.csv"
    assert run("convert", "builtin:shared-gpu:300", "--seed", "5", "--out", str(out)).exit_code == 0
    assert load_workload("builtin:shared-gpu:300", seed=5).jobs == load_workload(f"csv:{out}").jobs


def _bad_itp(tmp_path: Path) -> Path:
    p = tmp_path / "bad.csv"
    p.write_text("job_id,submission_time,duration,num_gpu\na,1,10,1\nb,2,ten,1\nc,3,-4,1\n")
    return p


def test_malformed_row(tmp_path):
    p = _bad_itp(tmp_path)
    assert_one_line_error(run("inspect", f"itp:{p}"), f"{p}:3", "column 'duration'",
                          "not a number")


def test_skip_bad_rows(tmp_path):
    r = run("inspect", f"itp:{_bad_itp(tmp_path)}", "--skip-bad-rows", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["jobs"] == 1 and d["rows_skipped"] == 2
    assert d["skipped"] == {"bad duration: not a number": 1, "bad duration: negative": 1}
    out = tmp_path / "ok.csv"
    r = run("convert", f"itp:{_bad_itp(tmp_path)}", "--out", str(out), "--skip-bad-rows")
    assert r.exit_code == 0 and "2 rows skipped" in r.stdout


def test_negative_duration(tmp_path):
    p = tmp_path / "neg.csv"
    p.write_text("job_id,submission_time,duration,num_gpu\na,1,-4,1\n")
    assert_one_line_error(run("convert", f"itp:{p}", "--out", str(tmp_path / "o.csv")),
                          "column 'duration'", "negative value -4")
    assert not (tmp_path / "o.csv").exists()


def test_missing_file(tmp_path):
    assert_one_line_error(run("inspect", f"helios:{tmp_path / 'nope.csv'}"), "file not found")


def test_unknown_format():
    assert_one_line_error(run("inspect", "philly:x.csv"), "unknown trace format 'philly'")
    assert_one_line_error(run("inspect", "no-colon"), "must be FORMAT:PATH")


def test_unknown_builtin():
    assert_one_line_error(run("inspect", "builtin:nope"), "philly-mix", "shared-gpu")


def test_empty_trace(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("job_id,submission_time,duration,num_gpu\n")
    assert_one_line_error(run("inspect", f"itp:{p}"), "empty trace")
    p.write_text("")
    assert_one_line_error(run("inspect", f"itp:{p}"), "empty file")


def test_convert_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run("convert", f"itp:{FIX / 'itp_small.csv'}", "--out", str(blocker / "sub" / "o.csv"))
    assert_one_line_error(r)


def test_download_unknown_name():
    assert_one_line_error(run("download", "nope"), "unknown trace 'nope'", "itp")
