"""History-based duration prediction for policies that may not read the truth.

A job's duration is predicted, when it arrives, as the mean duration of *completed*
jobs with the same user and GPU count; failing that the same group and GPU count;
then the same GPU count; then the median duration of all completed jobs; and before
any job has completed, the *prior*: ``DEFAULT_PRIOR_S`` (one hour) unless the user
gives one (``autoflow bench --duration-prior``). Nothing is learned from a job that has
not completed: the estimator sees a duration only through ``observe``, which the
scheduler core calls at completion.
"""

from __future__ import annotations

from bisect import insort
from collections import defaultdict

from ..errors import ConfigError
from ..job import Job

DEFAULT_PRIOR_S = 3600.0  # predicted duration before any job has completed


class DurationEstimator:
    def __init__(self, prior: float | None = None):
        self.prior = float(DEFAULT_PRIOR_S if prior is None else prior)
        if not self.prior > 0 or self.prior == float("inf"):
            raise ConfigError(f"the duration prior must be a positive number of seconds, "
                              f"got {prior}")
        self._sum: dict[tuple, float] = defaultdict(float)
        self._n: dict[tuple, int] = defaultdict(int)
        self._completed: list[float] = []  # sorted durations of completed jobs

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
        done = self._completed
        if done:
            mid = len(done) // 2
            return done[mid] if len(done) % 2 else (done[mid - 1] + done[mid]) / 2.0
        return self.prior

    def observe(self, job: Job) -> None:
        """A job completed with ``job.duration``."""
        if job.duration is None:
            return
        for k in self._keys(job):
            self._sum[k] += job.duration
            self._n[k] += 1
        insort(self._completed, float(job.duration))
