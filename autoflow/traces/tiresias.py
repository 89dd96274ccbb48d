"""Tiresias-style job traces: ``job_id,num_gpu,submit_time,iterations,model_name,duration,interval``.

The format of the Tiresias simulator (NSDI '19) and its descendants. Times and
durations are seconds. All jobs are *training* jobs with whole GPUs; ``model_name`` is
kept in ``Job.extra["model"]`` and as ``group`` (so per-model statistics work), and
``iterations`` and ``interval`` (the submission gap the trace generator used) go to
``Job.extra`` too. No row is left out by choice: every row is a job or a malformed row.
"""

from __future__ import annotations

from ..job import TRAINING, Job
from ..workload import ImportSummary, Workload
from .base import (
    ImportOptions,
    as_float,
    as_int,
    check_file,
    convert_rows,
    finish,
    read_csv_rows,
    req,
)

COLUMNS = ["job_id", "num_gpu", "submit_time", "iterations", "model_name", "duration",
           "interval"]


def load(path: str, opts: ImportOptions) -> Workload:
    p = check_file(path)
    summary = ImportSummary()

    def to_job(row: dict, _s: ImportSummary) -> Job:
        model = req(row, "model_name")
        return Job(job_id=req(row, "job_id"),
                   submit_time=as_float(row, "submit_time", min_value=0),
                   duration=as_float(row, "duration", min_value=0),
                   num_gpus=as_int(row, "num_gpu", min_value=0),
                   kind=TRAINING, group=model,
                   extra={"model": model,
                          "iterations": as_int(row, "iterations", optional=True, min_value=0),
                          "interval": as_float(row, "interval", optional=True, min_value=0)})

    jobs = convert_rows(p, read_csv_rows(p, COLUMNS), to_job, summary, opts)
    return finish(jobs, f"tiresias:{path}", str(path), summary)
