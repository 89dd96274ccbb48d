"""Job attributes as a table for the synthesizers, and back.

One row per job: the attributes a scheduler sees (kind, GPU count, GPU share, type
constraint, QoS, CPU, memory, SLO, user) and the true duration. GPU count, share and
type constraint form one categorical ``shape`` (``"2x1000:any"``), so that a model
cannot invent a combination no job had (a 16-GPU gang constrained to a 2-GPU type). Heavy-tailed columns
are modelled on a log scale (``log_duration``; CPU and memory too) and transformed back
after sampling. Users beyond the ``MAX_USERS`` most frequent are pooled as ``other``
(duration predictions in the simulator key on the user).

Jobs without a known duration cannot be replayed; they are left out of fitting and
counted (``TableSummary.unknown_duration``), never dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from autoflow.errors import ConfigError
from autoflow.job import INFERENCE, KINDS, Job
from autoflow.workload import Workload

MAX_USERS = 40
OTHER_USER = "other"
CATEGORICAL = ("kind", "shape", "qos", "user")
NUMERICAL = ("log_duration", "log_cpu", "log_memory", "log_slo")
COLUMNS = (*CATEGORICAL, *NUMERICAL)


@dataclass
class TableSummary:
    rows: int  # jobs in the trace
    used: int  # jobs in the table
    unknown_duration: int  # jobs left out: no duration to learn from

    def to_dict(self) -> dict:
        return {"rows": self.rows, "used": self.used, "unknown_duration": self.unknown_duration}


def to_table(workload: Workload, source: str = "") -> tuple[pd.DataFrame, TableSummary]:
    jobs = [j for j in workload.jobs if j.duration is not None]
    summary = TableSummary(len(workload), len(jobs), len(workload) - len(jobs))
    if not jobs:
        raise ConfigError(f"trace {source or workload.source}: no job with a known duration "
                          f"to learn from ({len(workload)} rows)")
    top = top_users(jobs)
    df = pd.DataFrame({
        "kind": [j.kind for j in jobs],
        "shape": [f"{j.num_gpus}x{j.gpu_milli}:{'|'.join(j.gpu_types) or 'any'}" for j in jobs],
        "qos": [j.qos or "none" for j in jobs],
        "user": [pooled_user(j.user, top) for j in jobs],
        "log_duration": np.log1p([float(j.duration) for j in jobs]),
        "log_cpu": np.log1p([j.cpu_milli for j in jobs]),
        "log_memory": np.log1p([j.memory_mib for j in jobs]),
        # SLO relative to nothing: 0 for training jobs (the column is only read for inference)
        "log_slo": np.log1p([j.slo_s or 0.0 for j in jobs]),
    })
    return df, summary


def top_users(jobs: list[Job]) -> set[str]:
    """The ``MAX_USERS`` most frequent users of ``jobs``; the others are pooled as
    ``OTHER_USER``."""
    return {u for u, _ in Counter(j.user for j in jobs if j.user).most_common(MAX_USERS)}


def pooled_user(user: str, top: set[str]) -> str:
    """A job's user as the table keeps it: ``none`` for no user, ``other`` beyond ``top``."""
    return (user if user in top else OTHER_USER) if user else "none"


def _shape(text: str) -> tuple[int, int, tuple[str, ...]]:
    count, _, rest = text.partition("x")
    milli, _, types = rest.partition(":")
    return int(count), int(milli), () if types in ("any", "") else tuple(types.split("|"))


def from_table(df: pd.DataFrame, submit_times: np.ndarray, prefix: str = "syn") -> list[Job]:
    """Jobs from sampled rows (in order) and arrival times; sizes are clipped at zero."""
    n = len(df)
    shapes = [_shape(x) for x in df["shape"].astype(str)]
    duration = np.maximum(np.expm1(df["log_duration"].to_numpy(dtype=float)), 1.0)
    cpu = np.maximum(np.rint(np.expm1(df["log_cpu"].to_numpy(dtype=float))), 0).astype(int)
    mem = np.maximum(np.rint(np.expm1(df["log_memory"].to_numpy(dtype=float))), 0).astype(int)
    slo = np.maximum(np.expm1(df["log_slo"].to_numpy(dtype=float)), 0.0)
    kinds = df["kind"].astype(str).to_numpy()
    qos = df["qos"].astype(str).to_numpy()
    users = df["user"].astype(str).to_numpy()
    jobs = []
    for i in range(n):
        g, m, types = shapes[i]
        kind = kinds[i] if kinds[i] in KINDS else KINDS[0]
        jobs.append(Job(
            job_id=f"{prefix}-{i}", submit_time=float(submit_times[i]),
            duration=float(duration[i]), num_gpus=g, gpu_milli=m,
            gpu_types=types,
            kind=kind, qos="" if qos[i] in ("none", "nan") else qos[i],
            cpu_milli=int(cpu[i]), memory_mib=int(mem[i]),
            user="" if users[i] in ("none", "nan") else users[i],
            slo_s=float(slo[i]) if kind == INFERENCE and slo[i] > 0 else None))
    return jobs
