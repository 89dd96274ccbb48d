"""Shared helpers of the hardening tests: run the real CLI, expect one clear line."""

from __future__ import annotations

from typer.testing import CliRunner

from autoflow.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str, alone: bool = True) -> str:
    """Exit code 2, no traceback, and an ``error: ...`` line naming ``needles``.
    ``alone``: nothing else on stderr (the error comes before any progress output)."""
    out = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code == 2, out
    assert "Traceback" not in out and "Error:" not in out.replace("error:", ""), out
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    if alone:
        assert len(lines) == 1, result.stderr
    for n in needles:
        assert n in lines[-1], lines[-1]
    return lines[-1]
