"""Alibaba GPU cluster trace 2023 (``openb_pod_list_default.csv``, GPU sharing).

Columns: ``name, cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec, qos, pod_phase,
creation_time, deletion_time, scheduled_time`` (times in seconds from trace start).

Mapping and documented choices:

* ``qos`` LS (latency-sensitive) -> an *inference* job with ``slo_s =
  DEFAULT_INFERENCE_SLO_S`` (60 s start-delay SLO: the trace gives none, one minute is
  our assumption); BE, Burstable and Guaranteed -> *training*. The qos is kept in
  ``Job.qos``.
* GPU share: ``gpu_milli`` is used when ``num_gpu == 1`` (fractional sharing of one
  GPU); multi-GPU tasks hold whole GPUs (1000); CPU-only tasks (``num_gpu == 0``) get 0.
* ``gpu_spec`` (allowed GPU types separated by ``|``, empty = any) -> ``Job.gpu_types``.
* ``submit_time = creation_time``; ``duration = deletion_time - scheduled_time``. The
  queueing observed in the trace (scheduled - creation) is *not* part of the duration:
  the simulator produces its own queueing.
* Tasks never scheduled (empty ``scheduled_time``, the Pending ones) have no observed
  run time: they are left out and counted under skipped
  ``"never scheduled (no observed run time)"``.
* Tasks in phase ``Running`` were still running when they were last observed: their
  ``deletion_time`` is the end of observation (it varies between 9.96M and 12.9M s
  in the default trace), so their duration is a lower bound. They are kept with
  ``censored=True`` and counted in ``summary.notes["censored"]`` (5,193 of 7,255 jobs
  in ``openb_pod_list_default.csv``).
* Failed tasks are kept: they held their resources until deletion.
* ``pod_phase`` is kept in ``Job.extra["pod_phase"]``.
* The other pod lists of the release that carry no times (``name, cpu_milli,
  memory_mib, num_gpu, gpu_milli`` and sometimes ``gpu_spec``: the multigpu, gpushare,
  cpu and some gpuspec variants, which the FGD paper packs statically) are refused with
  what they lack: without creation, deletion and scheduling times they cannot be
  replayed over time.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import TraceError
from ..job import INFERENCE, TRAINING, WHOLE_GPU, Job
from ..workload import ImportSummary, Workload
from .base import (
    BadRow,
    ImportOptions,
    as_float,
    as_int,
    check_file,
    convert_rows,
    finish,
    open_text,
    read_csv_rows,
    read_errors,
    req,
)

COLUMNS = ["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos",
           "pod_phase", "creation_time", "deletion_time", "scheduled_time"]
QOS_KINDS = {"LS": INFERENCE, "BE": TRAINING, "Burstable": TRAINING, "Guaranteed": TRAINING}
DEFAULT_INFERENCE_SLO_S = 60.0  # assumed start-delay SLO of LS tasks (the trace has none)
NEVER_SCHEDULED = "never scheduled (no observed run time)"
TIMES = ["creation_time", "deletion_time", "scheduled_time"]
POD_SPEC = {"name", "num_gpu", "gpu_milli"}  # what every openb pod list has


def gpu_share(num_gpu: int, gpu_milli: int | None) -> int:
    """The per-GPU share in thousandths, following the trace's conventions."""
    if num_gpu == 0:
        return 0
    if num_gpu > 1:
        return WHOLE_GPU
    if gpu_milli is None or gpu_milli == 0:
        raise BadRow("gpu_milli", "missing share for a single-GPU task")
    if gpu_milli > WHOLE_GPU:
        raise BadRow("gpu_milli", f"share above 1000 thousandths: {gpu_milli}")
    return gpu_milli


def check_not_timeless(p: Path) -> None:
    """Refuses, saying what it is, an openb pod list variant without times."""
    with open_text(p) as f, read_errors(p, lambda: 1):
        header = [h.strip() for h in next(csv.reader(f), [])]
    if not POD_SPEC <= set(header) or any(c in header for c in TIMES):
        return
    also = [c for c in ("qos", "pod_phase") if c not in header]
    raise TraceError(str(p), "an Alibaba openb pod list variant without times (columns "
                     f"{', '.join(header)}; like the openb_pod_list_multigpu*, gpushare*, "
                     "cpu* and some gpuspec* files, which the FGD paper uses for static "
                     f"packing): it has no {', '.join(TIMES)}"
                     + (f" (nor {', '.join(also)})" if also else "")
                     + ", so its pods cannot be replayed over time; use a pod list with "
                     "times, such as openb_pod_list_default.csv", line=1)


def load(path: str, opts: ImportOptions) -> Workload:
    p = check_file(path)
    check_not_timeless(p)
    summary = ImportSummary()

    def to_job(row: dict, s: ImportSummary) -> Job | None:
        name = req(row, "name")
        qos = req(row, "qos")
        if qos not in QOS_KINDS:
            raise BadRow("qos", f"unknown qos {qos!r} (expected {', '.join(QOS_KINDS)})")
        kind = QOS_KINDS[qos]
        num_gpu = as_int(row, "num_gpu", min_value=0)
        milli = gpu_share(num_gpu, as_int(row, "gpu_milli", optional=True, min_value=0))
        created = as_float(row, "creation_time", min_value=0)
        deleted = as_float(row, "deletion_time", min_value=0)
        scheduled = as_float(row, "scheduled_time", optional=True, min_value=0)
        if scheduled is None:
            s.skip(NEVER_SCHEDULED)
            return None
        if deleted < scheduled:
            raise BadRow("deletion_time", f"negative duration: deleted at {deleted:g} before "
                         f"scheduled at {scheduled:g}")
        types = tuple(t.strip() for t in (row.get("gpu_spec") or "").split("|") if t.strip())
        job = Job(job_id=name, submit_time=created, duration=deleted - scheduled,
                  num_gpus=num_gpu, gpu_milli=milli, gpu_types=types, kind=kind, qos=qos,
                  cpu_milli=as_int(row, "cpu_milli", optional=True, min_value=0) or 0,
                  memory_mib=as_int(row, "memory_mib", optional=True, min_value=0) or 0,
                  slo_s=DEFAULT_INFERENCE_SLO_S if kind == INFERENCE else None,
                  extra={"pod_phase": (row.get("pod_phase") or "").strip()})
        job.censored = job.extra["pod_phase"] == "Running"
        return job

    jobs = convert_rows(p, read_csv_rows(p, COLUMNS), to_job, summary, opts)
    summary.notes["censored"] = sum(j.censored for j in jobs)
    return finish(jobs, f"alibaba-openb:{path}", str(path), summary)
