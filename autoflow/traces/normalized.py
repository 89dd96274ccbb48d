"""autoflow's own normalized job CSV (what ``autoflow traces convert`` writes); only
job_id, submit_time, duration, num_gpus are required.

Required columns (times in seconds): ``job_id``, ``submit_time``, ``duration`` (an
empty value = unknown duration), ``num_gpus``. Every other column may be left out, and
an empty value takes the same default:

* ``gpu_milli``: the share of each GPU in thousandths; default 1000 (whole GPUs), 0 for
  a job with no GPU;
* ``gpu_types``: allowed GPU types separated by ``|``; default empty = any type;
* ``kind``: ``training`` or ``inference``; default ``training``;
* ``qos``, ``user``, ``group``: default empty;
* ``cpu_milli``, ``memory_mib``: default 0;
* ``slo_s``: start-delay SLO of an inference job; default none (``bench`` then applies
  ``--default-slo``);
* ``censored``: ``1``/``true``/``yes`` when the duration is a lower bound; default no;
* ``workflow_id``: the workflow (pipeline run) the job is a stage of; default none;
* ``depends_on``: ids of the jobs that must succeed before this one may start, separated
  by ``|`` (``autoflow.workflow``); default none. A job naming itself is a bad row (the
  line and the column are named); a repeated id counts once. After reading,
  ``autoflow.workflow.check`` refuses a dependency on a job that is not in the file, or a
  cycle, with a ConfigError naming the file, the job and the field. With
  ``skip_bad_rows``, a job whose dependency is not in the file (its row was skipped, or
  it was never there) is skipped too, and so are the jobs that depend on it, counted
  under "depends on a job not in the trace"; a cycle is still an error.

``autoflow traces convert`` writes all of them, in the order of ``COLUMNS + OPTIONAL``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .. import workflow
from ..errors import ConfigError
from ..job import KINDS, TRAINING, Job
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

REQUIRED = ["job_id", "submit_time", "duration", "num_gpus"]
COLUMNS = [*REQUIRED, "gpu_milli", "gpu_types", "kind", "qos", "cpu_milli", "memory_mib",
           "user", "slo_s"]  # what ``write`` puts first
OPTIONAL = ["group", "censored", "workflow_id", "depends_on"]
DEPENDS_SEP = "|"  # between the job ids of ``depends_on``


def load(path: str, opts: ImportOptions) -> Workload:
    p = check_file(path)
    summary = ImportSummary()

    def to_job(row: dict, _s: ImportSummary) -> Job:
        kind = (row.get("kind") or "").strip() or TRAINING
        if kind not in KINDS:
            raise BadRow("kind", f"must be training or inference, got {kind!r}")
        num_gpus = as_int(row, "num_gpus", min_value=0)
        milli = as_int(row, "gpu_milli", optional=True, min_value=0)
        if milli is None:
            milli = 1000 if num_gpus else 0
        if milli > 1000:
            raise BadRow("gpu_milli", f"share above 1000 thousandths: {milli}")
        types = tuple(t for t in (row.get("gpu_types") or "").split("|") if t.strip())
        censored = (row.get("censored") or "").strip().lower() in ("1", "true", "yes")
        job_id = req(row, "job_id")
        deps = tuple(dict.fromkeys(d.strip() for d in
                                   (row.get("depends_on") or "").split(DEPENDS_SEP)
                                   if d.strip()))
        if job_id in deps:
            raise BadRow("depends_on", f"job {job_id!r} depends on itself")
        return Job(job_id=job_id,
                   submit_time=as_float(row, "submit_time", min_value=0),
                   duration=as_float(row, "duration", optional=True, min_value=0),
                   num_gpus=num_gpus, gpu_milli=milli, gpu_types=types, kind=kind,
                   qos=(row.get("qos") or "").strip(),
                   cpu_milli=as_int(row, "cpu_milli", optional=True, min_value=0) or 0,
                   memory_mib=as_int(row, "memory_mib", optional=True, min_value=0) or 0,
                   user=(row.get("user") or "").strip(), group=(row.get("group") or "").strip(),
                   slo_s=as_float(row, "slo_s", optional=True, min_value=0),
                   censored=censored, workflow_id=(row.get("workflow_id") or "").strip(),
                   depends_on=deps)

    jobs = convert_rows(p, read_csv_rows(p, REQUIRED), to_job, summary, opts)
    if opts.skip_bad_rows:
        jobs = _without_missing_parents(jobs, summary)
    workflow.check(jobs, origin=str(path))
    return finish(jobs, f"csv:{path}", str(path), summary)


def _without_missing_parents(jobs: list[Job], summary: ImportSummary) -> list[Job]:
    """The jobs whose dependencies are all in ``jobs``, directly or not (a skipped
    parent takes its dependants with it); the others are counted as skipped."""
    known = {j.job_id for j in jobs}
    kids = workflow.children_of(jobs)
    lost = [p for j in jobs for p in j.depends_on if p not in known]
    gone: set[str] = set()
    while lost:
        for kid in kids.get(lost.pop(), ()):
            if kid not in gone:
                gone.add(kid)
                lost.append(kid)
    if not gone:
        return jobs
    kept = [j for j in jobs if j.job_id not in gone]
    summary.skip("depends on a job not in the trace", len(jobs) - len(kept))
    return kept


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def write(workload: Workload, path: str | Path) -> None:
    """Writes ``workload`` as a normalized CSV; a ConfigError (before the file is opened)
    if a job depends on a job whose id holds ``|``, which ``depends_on`` cannot carry."""
    for j in workload.jobs:
        bad = next((d for d in j.depends_on if DEPENDS_SEP in d), None)
        if bad is not None:
            raise ConfigError(f"job {j.job_id!r} field 'depends_on': job id {bad!r} holds "
                              f"{DEPENDS_SEP!r}, the separator of the normalized CSV's "
                              "depends_on column")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS + OPTIONAL)
        for j in workload.jobs:
            w.writerow([j.job_id, _fmt(j.submit_time), _fmt(j.duration), j.num_gpus, j.gpu_milli,
                        "|".join(j.gpu_types), j.kind, j.qos, j.cpu_milli, j.memory_mib, j.user,
                        _fmt(j.slo_s), j.group, "1" if j.censored else "", j.workflow_id,
                        DEPENDS_SEP.join(j.depends_on)])
