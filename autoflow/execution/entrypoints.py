"""Jobs that bring their own code: an ``entrypoint`` run for each part of a job, inside a
Ray worker (or as a plain function call), in place of a replayed trace job.

An entrypoint is either a command (``python -m autoflow.demo.train_loop --steps 200``),
split as a POSIX shell would split it (``shlex``) but run without a shell, or a function
named ``module:function`` (``mypkg.train:main``): a string is a function when it matches
``FUNCTION_RE``, and a command otherwise. A job may also carry ``env``, extra environment
variables (``str -> str``). Every part of a job sees ``AUTOFLOW_JOB_ID``, ``AUTOFLOW_RANK``
and ``AUTOFLOW_CHECKPOINT_DIR`` (its job's own folder, ``checkpoint_dir/<quoted key>``,
shared by the job's ranks and kept across its restarts, so that it can resume).

Stopping works as in ``tasks.trace_job``: ``ray.cancel(ref, force=False)`` raises
``KeyboardInterrupt`` in the worker's main thread between Python instructions, so a
command is polled in slices of ``tasks.SLICE_S``. On the interrupt the command is sent
``SIGTERM`` (to its whole process group: it runs in a session of its own), given
``grace_s`` seconds to checkpoint and exit, then killed; a function feels the interrupt
itself, wherever it is. Either way the part returns ``{"stopped": True, ...}`` rather
than failing, and its worker lives on. A command's output is appended to ``stdout.log``
and ``stderr.log`` in the job's folder; one that fails is a ``RuntimeError`` naming the
job, its exit status and the end of its stderr.

A command whose program is ``python`` or ``python3`` runs with the worker's own
interpreter (``sys.executable``), which has autoflow and the job's packages installed;
the first ``python`` on ``PATH`` may be another one.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from .tasks import SLICE_S

FUNCTION_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
RESERVED_ENV = ("AUTOFLOW_JOB_ID", "AUTOFLOW_RANK", "AUTOFLOW_CHECKPOINT_DIR")
STDOUT_LOG, STDERR_LOG = "stdout.log", "stderr.log"
TAIL_LINES = 5  # lines of a failed command's stderr quoted in its error
_TAIL_BYTES = 64 * 1024  # read at most this much of the end of stderr.log
_TAIL_LINE_CHARS = 300  # each quoted line is cut to this many characters
_PYTHONS = ("python", "python3")


@dataclass(frozen=True)
class Entrypoint:
    """A parsed entrypoint: ``kind`` "command" with its ``argv``, or ``kind``
    "function" with its ``module`` and ``function`` names."""

    kind: Literal["command", "function"]
    text: str
    argv: tuple[str, ...] = ()
    module: str = ""
    function: str = ""


@dataclass(frozen=True)
class JobContext:
    """What a ``module:function`` entrypoint is called with."""

    job_id: str
    rank: int
    checkpoint_dir: Path
    env: dict[str, str] = field(default_factory=dict)  # AUTOFLOW_* and the job's env


def _short(value: Any, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def parse_entrypoint(text: str) -> Entrypoint:
    """``text`` as an ``Entrypoint``; ``ValueError`` (one line) if it is not one."""
    if not isinstance(text, str):
        raise ValueError(  # noqa: TRY004 - every bad entrypoint is one ValueError
            f"entrypoint must be a string, got {type(text).__name__}")
    s = text.strip()
    if not s:
        raise ValueError("entrypoint is empty")
    if "\x00" in s:
        raise ValueError(f"entrypoint contains a NUL character: {_short(s)}")
    if FUNCTION_RE.match(s):
        module, function = s.split(":")
        if any(not part for part in module.split(".")):
            raise ValueError(f"entrypoint {_short(s)}: bad module name {module!r}")
        return Entrypoint("function", s, module=module, function=function)
    try:
        argv = tuple(shlex.split(s))
    except ValueError as e:  # "No closing quotation", "No escaped character"
        raise ValueError(f"entrypoint {_short(s)}: cannot split as a command ({e})") from None
    if not argv:
        raise ValueError(f"entrypoint {_short(s)} has no command")
    return Entrypoint("command", s, argv=argv)


def check_env(env: Any) -> dict[str, str]:
    """``env`` as a plain ``dict[str, str]`` (None is ``{}``); ``ValueError`` (one line)
    if it is not a mapping of names to strings that a process environment can hold, or
    if it sets one of the variables autoflow sets itself (``RESERVED_ENV``)."""
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise ValueError(  # noqa: TRY004 - every bad env is one ValueError
            f"env must be a mapping of names to strings, got {type(env).__name__}")
    out: dict[str, str] = {}
    for k, v in env.items():
        if not isinstance(k, str) or not k or "=" in k or "\x00" in k:
            raise ValueError(f"env: bad variable name {_short(k)} (a non-empty string "
                             "without '=' or NUL)")
        if k in RESERVED_ENV:
            raise ValueError(f"env: {k} is set by autoflow and cannot be overridden")
        if not isinstance(v, str):
            raise ValueError(  # noqa: TRY004 - every bad env is one ValueError
                f"env: {k} must be a string, got {type(v).__name__}")
        if "\x00" in v:
            raise ValueError(f"env: {k} contains a NUL character")
        out[k] = v
    return out


def job_folder(checkpoint_dir: str | Path, key: str) -> Path:
    """The folder of job ``key`` (any string: it is percent-encoded)."""
    return Path(checkpoint_dir) / quote(str(key), safe="")


def run_entrypoint(key: str, rank: int, entrypoint: str, env: dict | None,
                   checkpoint_dir: str, grace_s: float = 10.0) -> dict:
    """Part ``rank`` of job ``key``: runs ``entrypoint`` with the job's environment and
    folder. Returns ``{"kind", "began", "ended", "stopped", ...}``: a command adds its
    ``returncode``, a function its ``result`` (when JSON-like). A failure (a command's
    nonzero exit, a function that cannot be found or raises) is a ``RuntimeError``
    naming the job; a bad entrypoint or env is a ``ValueError``."""
    began = time.time()
    ep = parse_entrypoint(entrypoint)
    extra = check_env(env)
    if not (isinstance(grace_s, int | float) and math.isfinite(grace_s) and grace_s >= 0):
        raise ValueError(f"grace_s must be a finite number >= 0, got {_short(grace_s)}")
    folder = job_folder(checkpoint_dir, key)
    folder.mkdir(parents=True, exist_ok=True)
    job_env = {**extra, "AUTOFLOW_JOB_ID": str(key), "AUTOFLOW_RANK": str(rank),
               "AUTOFLOW_CHECKPOINT_DIR": str(folder)}
    if ep.kind == "command":
        out = _run_command(key, rank, ep, job_env, folder, grace_s)
    else:
        out = _run_function(key, rank, ep, job_env, folder)
    return {"kind": ep.kind, "began": began, "ended": time.time(), **out}


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    """``sig`` to the command's process group (its children too), or to it alone."""
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(sig)


def _stop(p: subprocess.Popen, grace_s: float) -> int:
    """SIGTERM, up to ``grace_s`` seconds to exit, then SIGKILL. A second interrupt
    during the grace period kills at once (and is raised)."""
    try:
        if p.poll() is None:
            _signal_group(p, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while p.poll() is None and (left := deadline - time.monotonic()) > 0:
                time.sleep(min(SLICE_S, left))
    finally:
        if p.poll() is None:
            _signal_group(p, signal.SIGKILL)
            p.wait()
    return p.returncode


def _stderr_tail(path: Path, since: int) -> list[str]:
    """The last ``TAIL_LINES`` non-blank lines written to ``path`` after offset
    ``since``."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(since, size - _TAIL_BYTES))
            data = f.read()
    except OSError:
        return []
    lines = [ln.rstrip() for ln in data.decode("utf-8", "replace").splitlines()]
    return [ln[:_TAIL_LINE_CHARS] for ln in lines if ln.strip()][-TAIL_LINES:]


def _exit_status(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def _run_command(key: str, rank: int, ep: Entrypoint, job_env: dict[str, str],
                 folder: Path, grace_s: float) -> dict:
    argv = list(ep.argv)
    if argv[0] in _PYTHONS:
        argv[0] = sys.executable
    err_path = folder / STDERR_LOG
    p: subprocess.Popen | None = None
    try:
        try:
            with open(folder / STDOUT_LOG, "ab") as out, open(err_path, "ab") as err:
                since = err.tell()
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                     env={**os.environ, **job_env}, start_new_session=True)
        except OSError as e:  # no such program, not executable
            raise RuntimeError(f"job {key!r} rank {rank}: cannot start {_short(ep.text, 120)}: "
                               f"{type(e).__name__}: {e}") from e
        while p.poll() is None:
            time.sleep(SLICE_S)
    except KeyboardInterrupt:  # asked to stop: give the command its grace period
        return {"stopped": True, "returncode": None if p is None else _stop(p, grace_s)}
    finally:  # whatever went wrong here, the command does not outlive the call
        if p is not None and p.poll() is None:
            _signal_group(p, signal.SIGKILL)
            p.wait()
    if p.returncode != 0:
        tail = _stderr_tail(err_path, since)
        quoted = "".join(f"\n  {ln}" for ln in tail) if tail else " (none)"
        raise RuntimeError(f"job {key!r} rank {rank}: command {_short(ep.text, 120)} failed with "
                           f"{_exit_status(p.returncode)}; last lines of its stderr "
                           f"({err_path}):{quoted}")
    return {"stopped": False, "returncode": 0}


def _jsonlike(value: Any) -> tuple[bool, Any]:
    """``(True, a plain JSON copy)`` of ``value``, or ``(False, None)``."""
    try:
        return True, json.loads(json.dumps(value))
    except (TypeError, ValueError, RecursionError):
        return False, None


def _run_function(key: str, rank: int, ep: Entrypoint, job_env: dict[str, str],
                  folder: Path) -> dict:
    try:
        fn = getattr(importlib.import_module(ep.module), ep.function)
    except KeyboardInterrupt:  # asked to stop while its code was being imported
        return {"stopped": True, "result": None}
    except (ImportError, AttributeError) as e:
        raise RuntimeError(f"job {key!r} rank {rank}: cannot load entrypoint {ep.text!r}: "
                           f"{type(e).__name__}: {e}") from e
    if not callable(fn):
        raise RuntimeError(  # noqa: TRY004 - every job that cannot run is a RuntimeError
            f"job {key!r} rank {rank}: entrypoint {ep.text!r} is a "
            f"{type(fn).__name__}, not a function")
    ctx = JobContext(job_id=str(key), rank=rank, checkpoint_dir=folder, env=dict(job_env))
    saved = {k: os.environ.get(k) for k in job_env}
    os.environ.update(job_env)  # the job's code may read them as a command's would
    try:
        value = fn(ctx)
    except KeyboardInterrupt:  # asked to stop, wherever the function was
        return {"stopped": True, "result": None}
    except Exception as e:
        raise RuntimeError(f"job {key!r} rank {rank}: entrypoint {ep.text!r} raised "
                           f"{type(e).__name__}: {e}") from e
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    ok, result = _jsonlike(value)
    out = {"stopped": False, "result": result}
    if not ok:
        out["result_dropped"] = type(value).__name__  # not JSON-like: not returned
    return out
