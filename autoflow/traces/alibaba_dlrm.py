"""Alibaba GPU trace 2025: disaggregated DLRM inference (``disaggregated_DLRM_trace.csv``).

Columns: ``instance_sn, role, app_name, cpu_request, cpu_limit, gpu_request, gpu_limit,
rdma_request, rdma_limit, memory_request, memory_limit, disk_request, disk_limit,
max_instance_per_node, creation_time, scheduled_time, deletion_time``. Times are seconds
from the trace start; an empty time lies outside the trace window. Memory is in GiB.

Mapping and documented choices:

* Every instance is an *inference* job (qos ``LS``, ``slo_s = DEFAULT_INFERENCE_SLO_S``,
  the 60 s assumption shared with the openb importer). CPU-node instances
  (``gpu_request`` 0, role CN) are kept as jobs with ``num_gpus = 0``.
* ``cpu_request`` (cores) -> ``cpu_milli`` (x1000); ``memory_request`` (GiB) ->
  ``memory_mib`` (x1024); ``app_name`` -> ``user``; ``role`` -> ``group``.
* ``gpu_request`` below 1 (e.g. 0.5) -> one shared GPU with ``gpu_milli = 500``; a whole
  number n >= 1 -> n whole GPUs; a fraction above 1 (e.g. 1.5) is a malformed row.
* ``submit_time = creation_time``; an instance created before the window (empty
  ``creation_time``) is submitted at its ``scheduled_time``. With neither, it started
  before the window and has no observed start: left out, counted under skipped
  ``"started before trace window (no creation or scheduled time)"``.
* Created in the window but never scheduled (empty ``scheduled_time``): left out,
  counted under skipped ``"never scheduled (no observed run time)"``.
* ``duration = deletion_time - scheduled_time``. An instance still alive at trace end
  (empty ``deletion_time``) runs until the largest time seen anywhere in the file; it is
  kept with ``censored=True`` and counted in ``summary.notes["censored"]``.
* rdma, disk and ``max_instance_per_node`` are kept in ``Job.extra``.
"""

from __future__ import annotations

from ..job import INFERENCE, WHOLE_GPU, Job
from ..workload import ImportSummary, Workload
from .alibaba_openb import DEFAULT_INFERENCE_SLO_S, NEVER_SCHEDULED
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

COLUMNS = ["instance_sn", "role", "app_name", "cpu_request", "cpu_limit", "gpu_request",
           "gpu_limit", "rdma_request", "rdma_limit", "memory_request", "memory_limit",
           "disk_request", "disk_limit", "max_instance_per_node", "creation_time",
           "scheduled_time", "deletion_time"]
TIMES = ("creation_time", "scheduled_time", "deletion_time")
BEFORE_WINDOW = "started before trace window (no creation or scheduled time)"


def gpus(row: dict) -> tuple[int, int]:
    """(num_gpus, gpu_milli) from ``gpu_request``."""
    g = as_float(row, "gpu_request", min_value=0)
    if g == 0:
        return 0, 0
    if g < 1:
        milli = round(g * WHOLE_GPU)
        if milli == 0:
            raise BadRow("gpu_request", f"share below one thousandth of a GPU: {g:g}")
        return 1, milli
    if g != int(g):
        raise BadRow("gpu_request", f"fractional request above one GPU: {g:g}")
    return int(g), WHOLE_GPU


def load(path: str, opts: ImportOptions) -> Workload:
    p = check_file(path)
    summary = ImportSummary()
    latest = [0.0]  # largest time seen anywhere in the file
    alive: list[tuple[Job, float]] = []  # (job, scheduled_time) still running at trace end

    def to_job(row: dict, s: ImportSummary) -> Job | None:
        sn = req(row, "instance_sn")
        num_gpus, milli = gpus(row)
        t = {c: as_float(row, c, optional=True, min_value=0) for c in TIMES}
        latest[0] = max([latest[0]] + [v for v in t.values() if v is not None])
        created, scheduled, deleted = (t[c] for c in TIMES)
        if scheduled is None:
            s.skip(NEVER_SCHEDULED if created is not None else BEFORE_WINDOW)
            return None
        if created is not None and scheduled < created:
            raise BadRow("scheduled_time", f"scheduled at {scheduled:g} before created at "
                         f"{created:g}")
        if deleted is not None and deleted < scheduled:
            raise BadRow("deletion_time", f"negative duration: deleted at {deleted:g} before "
                         f"scheduled at {scheduled:g}")
        cpu = as_float(row, "cpu_request", optional=True, min_value=0) or 0.0
        mem = as_float(row, "memory_request", optional=True, min_value=0) or 0.0
        job = Job(job_id=sn, submit_time=created if created is not None else scheduled,
                  duration=None if deleted is None else deleted - scheduled,
                  num_gpus=num_gpus, gpu_milli=milli, kind=INFERENCE, qos="LS",
                  cpu_milli=round(cpu * 1000), memory_mib=round(mem * 1024),
                  user=(row.get("app_name") or "").strip(), group=req(row, "role"),
                  slo_s=DEFAULT_INFERENCE_SLO_S,
                  extra={"rdma_request": as_float(row, "rdma_request", optional=True),
                         "disk_request_gib": as_float(row, "disk_request", optional=True),
                         "max_instance_per_node":
                             as_int(row, "max_instance_per_node", optional=True)})
        if deleted is None:
            alive.append((job, scheduled))
        return job

    jobs = convert_rows(p, read_csv_rows(p, COLUMNS), to_job, summary, opts)
    for job, scheduled in alive:
        job.duration = latest[0] - scheduled
        job.censored = True
    summary.notes["censored"] = len(alive)
    summary.notes["trace_end_s"] = latest[0]
    return finish(jobs, f"alibaba-dlrm:{path}", str(path), summary)
