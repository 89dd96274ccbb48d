"""History-based duration prediction for policies that may not read the truth.

A job's duration is predicted, when it arrives, as the mean duration of *completed*
jobs with the same user and GPU count; failing that the same group and GPU count;
then the same GPU count; then the workload's median duration.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..job import Job
from ..workload import Workload


class DurationEstimator:
    def __init__(self, workload: Workload | None = None, prior: float | None = None):
        d = workload.durations() if workload is not None else np.array([])
        self.prior = float(prior if prior is not None else (np.median(d) if d.size else 3600.0))
        self._sum: dict[tuple, float] = defaultdict(float)
        self._n: dict[tuple, int] = defaultdict(int)

    @staticmethod
    def _keys(job: Job) -> list[tuple]:
        keys = []
        if job.user:
            keys.append(("u", job.user, job.num_gpus))
        if job.group:
            keys.append(("g", job.group, job.num_gpus))
        keys.append(("n", job.num_gpus))
        return keys

    def predict(self, job: Job) -> float:
        for k in self._keys(job):
            n = self._n.get(k)
            if n:
                return self._sum[k] / n
        return self.prior

    def observe(self, job: Job) -> None:
        if job.duration is None:
            return
        for k in self._keys(job):
            self._sum[k] += job.duration
            self._n[k] += 1
