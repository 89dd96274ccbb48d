"""Standard Workload Format (SWF) of the Parallel Workloads Archive.

Lines starting with ``;`` are header comments; every other non-blank line holds 18
whitespace-separated fields (names used in error messages): job_number, submit_time,
wait_time, run_time, allocated_processors, average_cpu_time, used_memory,
requested_processors, requested_time, requested_memory, status, user_id, group_id,
executable, queue, partition, preceding_job, think_time. ``-1`` means unknown.

Mapping and documented choices:

* Processors stand for GPUs: ``num_gpus`` = allocated_processors, or
  requested_processors when allocated is -1. All jobs are *training* (batch) jobs with
  whole GPUs (0 processors -> a job holding no GPU). A row with neither count (both -1)
  is left out and counted under skipped ``"unknown processor count"``.
* ``submit_time`` (seconds from the log start) and ``duration`` = run_time are used as
  is; the trace's wait time is not part of the duration.
* ``run_time == -1`` (unknown; the simulator needs a duration) -> left out, counted
  under skipped ``"unknown run time"``.
* Every status is kept (completed, failed, cancelled after start, ...): the job ran.
  status, queue, partition and requested_time go to ``Job.extra``; user_id/group_id
  -> ``user``/``group`` (empty when -1).
* Only the fields above are checked; a row with a field count other than 18 is
  malformed (the error names the count).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..job import TRAINING, Job
from ..workload import ImportSummary, Workload
from .base import (
    BAD_ROW,
    BadRow,
    ImportOptions,
    as_float,
    as_int,
    bad_text,
    check_file,
    convert_rows,
    finish,
    open_text,
    read_errors,
    req,
)

FIELDS = ["job_number", "submit_time", "wait_time", "run_time", "allocated_processors",
          "average_cpu_time", "used_memory", "requested_processors", "requested_time",
          "requested_memory", "status", "user_id", "group_id", "executable", "queue",
          "partition", "preceding_job", "think_time"]
NFIELDS = "_nfields"
UNKNOWN_RUN_TIME = "unknown run time"
UNKNOWN_PROCS = "unknown processor count"


def read_swf_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """Yields (line number, field dict) for the data lines of an SWF file."""
    n = 0
    with open_text(path) as f, read_errors(path, lambda: n + 1):
        for n, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith(";"):
                continue
            reason = bad_text([text])
            if reason:
                yield n, {BAD_ROW: (None, reason)}
                continue
            parts = text.split()
            row: dict = dict(zip(FIELDS, parts))
            row[NFIELDS] = len(parts)
            yield n, row


def _id(row: dict, col: str) -> str:
    v = as_int(row, col, optional=True)
    return "" if v is None or v < 0 else str(v)


def load(path: str, opts: ImportOptions) -> Workload:
    p = check_file(path)
    summary = ImportSummary()

    def to_job(row: dict, s: ImportSummary) -> Job | None:
        if row[NFIELDS] != len(FIELDS):
            raise BadRow(None, f"{row[NFIELDS]} fields, expected {len(FIELDS)}")
        job_id = req(row, "job_number")
        submit = as_float(row, "submit_time", min_value=0)
        run_time = as_float(row, "run_time")
        if run_time == -1:
            s.skip(UNKNOWN_RUN_TIME)
            return None
        if run_time < 0:
            raise BadRow("run_time", f"negative value {run_time:g}")
        procs = as_int(row, "allocated_processors")
        if procs == -1:
            procs = as_int(row, "requested_processors")
        if procs == -1:
            s.skip(UNKNOWN_PROCS)
            return None
        if procs < 0:
            raise BadRow("allocated_processors", f"negative value {procs}")
        return Job(job_id=job_id, submit_time=submit, duration=run_time, num_gpus=procs,
                   kind=TRAINING, user=_id(row, "user_id"), group=_id(row, "group_id"),
                   extra={"status": as_int(row, "status", optional=True),
                          "queue": _id(row, "queue"), "partition": _id(row, "partition"),
                          "requested_time": as_float(row, "requested_time", optional=True)})

    jobs = convert_rows(p, read_swf_rows(p), to_job, summary, opts)
    return finish(jobs, f"swf:{path}", str(path), summary)
