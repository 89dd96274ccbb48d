"""SenseTime Helios traces (``cluster_log.csv`` of each Helios cluster).

Columns: ``job_id, user, vc, gpu_num, cpu_num, node_num, state, submit_time, start_time,
end_time, duration, queue``; times are ``YYYY-MM-DD HH:MM:SS``, ``duration`` and
``queue`` are seconds. Extra columns (e.g. ``jobname``) are ignored.

Mapping and documented choices:

* All jobs are *training* jobs. ``user`` -> ``user``; ``vc`` (virtual cluster) ->
  ``group``; ``gpu_num`` -> ``num_gpus`` (whole GPUs; 0 = a CPU-only job, kept);
  ``cpu_num`` -> ``cpu_milli`` (x1000); ``state`` and ``node_num`` go to ``Job.extra``.
* ``submit_time`` is seconds after the earliest valid ``submit_time`` in the file.
* ``duration`` comes from the ``duration`` column (the run time), not from the
  timestamps; queueing in the trace is not part of it.
* Every final state is kept (COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, ...)
  when the job ran (``duration > 0``): a failed or cancelled job still held its GPUs.
  A job with ``duration == 0`` never ran (typically cancelled while queued): it is left
  out and counted under skipped ``"never ran (duration 0)"``.
* ``start_time``/``end_time`` may be empty (never started); when present they must be
  valid timestamps, else the row is malformed (the error names the column).
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..job import TRAINING, Job
from ..workload import ImportSummary, Workload
from .base import (
    BadRow,
    ImportOptions,
    as_float,
    as_int,
    check_file,
    convert_rows,
    finish,
    read_csv_rows,
    req,
)

COLUMNS = ["job_id", "user", "vc", "gpu_num", "cpu_num", "node_num", "state", "submit_time",
           "start_time", "end_time", "duration", "queue"]
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
NEVER_RAN = "never ran (duration 0)"


def timestamp(row: dict, col: str, *, optional: bool = False) -> float | None:
    """Seconds since the epoch (naive times are read as UTC: only differences matter)."""
    v = (row.get(col) or "").strip()
    if not v:
        if optional:
            return None
        raise BadRow(col, "missing value")
    try:
        t = datetime.strptime(v, TIME_FORMAT)
    except ValueError:
        raise BadRow(col, f"not a timestamp (expected YYYY-MM-DD HH:MM:SS): {v[:40]!r}") from None
    return t.replace(tzinfo=UTC).timestamp()


def load(path: str, opts: ImportOptions) -> Workload:
    p = check_file(path)
    summary = ImportSummary()
    first = [float("inf")]  # earliest submit time in the file
    states: dict[str, int] = {}

    def to_job(row: dict, s: ImportSummary) -> Job | None:
        job_id = req(row, "job_id")
        submit = timestamp(row, "submit_time")
        start = timestamp(row, "start_time", optional=True)
        end = timestamp(row, "end_time", optional=True)
        if start is not None and end is not None and end < start:
            raise BadRow("end_time", "negative duration: end_time before start_time")
        duration = as_float(row, "duration", min_value=0)
        num_gpus = as_int(row, "gpu_num", min_value=0)
        cpus = as_float(row, "cpu_num", optional=True, min_value=0) or 0.0
        state = (row.get("state") or "").strip()
        first[0] = min(first[0], submit)
        if duration == 0:
            s.skip(NEVER_RAN)
            return None
        node_num = as_int(row, "node_num", optional=True, min_value=0)
        job = Job(job_id=job_id, submit_time=submit, duration=duration, num_gpus=num_gpus,
                  kind=TRAINING, cpu_milli=round(cpus * 1000),
                  user=(row.get("user") or "").strip(), group=(row.get("vc") or "").strip(),
                  extra={"state": state, "node_num": node_num})
        states[state] = states.get(state, 0) + 1
        return job

    jobs = convert_rows(p, read_csv_rows(p, COLUMNS), to_job, summary, opts)
    for job in jobs:
        job.submit_time -= first[0]
    summary.notes["states"] = dict(sorted(states.items()))
    summary.notes["cpu_only_jobs"] = sum(1 for j in jobs if j.num_gpus == 0)
    return finish(jobs, f"helios:{path}", str(path), summary)
