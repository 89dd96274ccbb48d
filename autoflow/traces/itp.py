"""Microsoft ITP / ElasticFlow raw traces: ``job_id,submission_time,duration,num_gpu``.

All jobs are training jobs; times are seconds from the start of collection.
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

COLUMNS = ["job_id", "submission_time", "duration", "num_gpu"]


def load(path: str, opts: ImportOptions) -> Workload:
    p = check_file(path)
    summary = ImportSummary()

    def to_job(row: dict, _s: ImportSummary) -> Job:
        return Job(job_id=req(row, "job_id"),
                   submit_time=as_float(row, "submission_time", min_value=0),
                   duration=as_float(row, "duration", min_value=0),
                   num_gpus=as_int(row, "num_gpu", min_value=0),
                   kind=TRAINING)

    jobs = convert_rows(p, read_csv_rows(p, COLUMNS), to_job, summary, opts)
    return finish(jobs, f"itp:{path}", str(path), summary)
