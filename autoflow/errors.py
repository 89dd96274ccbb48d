"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations


class AutoflowError(Exception):
    """Base class for errors that the CLI reports as a single line."""


class TraceError(AutoflowError):
    """A trace file could not be read: names the file, line and column where known."""

    def __init__(self, path: str, reason: str, line: int | None = None, column: str | None = None):
        self.path = str(path)
        self.line = line
        self.column = column
        self.reason = reason
        where = self.path
        if line is not None:
            where += f":{line}"
        if column is not None:
            where += f" column '{column}'"
        super().__init__(f"{where}: {reason}")


class ClusterError(AutoflowError):
    """A cluster description is invalid or cannot run a workload."""


class ConfigError(AutoflowError):
    """An unknown name or an invalid option (policy, placer, format, ...)."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (``KeyboardInterrupt``) after it saved what had finished;
    the message says what was kept. The CLI prints it as one line and exits with 130."""


class InvariantError(RuntimeError):
    """An internal invariant broke (a bug in autoflow or in a policy, not bad input).
    Checked by explicit code, so that it holds under ``python -O`` too."""


def require(ok, what: str) -> None:
    """Raises :class:`InvariantError` with ``what`` unless ``ok``."""
    if not ok:
        raise InvariantError(f"invariant broken: {what}")
