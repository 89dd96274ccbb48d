"""Feature rows of the shown jobs, most of each computed once per job and kept.

A waiting job's features change only with time (waiting time, time in the queue, SLO
slack) and with the cluster (fits, reachable, head of the queue) for as long as it
waits: its attained service, progress, preemptions and predicted duration are fixed
until it starts again. A running job's change only with the time its current segment
has run. So each row is computed in full once per queue stint (``JobState.queue_since``
and ``version``) or run segment (``version``), kept in a per-run table indexed by job,
and each decision gathers the shown rows and fills in what time and the cluster
changed, a handful of array operations for all rows at once.

Feature names and order: ``envs.observation.JOB_FEATURES`` and ``RUNNING_FEATURES``.
"""

from __future__ import annotations

from bisect import bisect_right
from functools import cache

import numpy as np

from autoflow.job import INFERENCE, TRAINING
from autoflow.policies.las import EPS, THRESHOLDS
from autoflow.sim.jobstate import JobState

N_JOB, N_RUN = 22, 13  # len(JOB_FEATURES), len(RUNNING_FEATURES)


@cache
def _gpus_log(gpus: int) -> float:
    """``log2(1 + gpus) / 4``, computed by numpy as the time-dependent columns are."""
    return float(np.log2(np.float64(1 + gpus)) / 4)


class _Table:
    """Rows of ``width`` floats indexed by job, each valid for one key; grows as needed."""

    def __init__(self, width: int):
        self.rows = np.zeros((64, width))
        self.keys: list = [None] * 64

    def grow(self, idx: int) -> None:
        n = len(self.keys)
        while n <= idx:
            n *= 2
        rows = np.zeros((n, self.rows.shape[1]))
        rows[: len(self.keys)] = self.rows
        self.rows = rows
        self.keys += [None] * (n - len(self.keys))

    def gather(self, items: list[JobState], key, fill) -> np.ndarray:
        """The rows of ``items`` (a fresh array); ``fill`` first (re)computes those whose
        ``key`` changed since their row was computed."""
        idx = [js.idx for js in items]
        if max(idx) >= len(self.keys):
            self.grow(max(idx))
        keys = self.keys
        stale = [js for js in items if keys[js.idx] != key(js)]
        if stale:
            fill(stale)
        return self.rows.take(idx, axis=0)


def _stint(js: JobState) -> tuple:
    """Identifies a queue stint: a waiting job's row is fixed within it."""
    return js.queue_since, js.version


def _segment(js: JobState) -> int:
    """Identifies a run segment: a running job's row is fixed within it, but for time."""
    return js.version


# job table columns past the features: submit time, queue entry time, SLO
_SUBMIT, _SINCE, _SLO = N_JOB, N_JOB + 1, N_JOB + 2
_JOB_SCALES = np.array([3.0, 5.0, 5.0])


class _Rows:
    """Rows of one kind for one run on a cluster of ``total_gpus`` GPUs."""

    width = 0  # features and the columns kept with them

    def __init__(self, total_gpus: float):
        self.total_gpus = total_gpus
        self.table = _Table(self.width)


class JobRows(_Rows):
    """Rows of waiting jobs (``JOB_FEATURES``)."""

    width = N_JOB + 3

    def _fill(self, jobs: list[JobState]) -> None:
        """The parts of these jobs' rows that stay fixed while they wait."""
        total, table = self.total_gpus, self.table
        logs = np.log1p(np.array([(js.attained / 3600.0, js.predicted / 60.0,
                                   max(js.predicted - js.progress, 0.0) / 60.0)
                                  for js in jobs])) / _JOB_SCALES
        for js, (att_log, pred_log, left_log) in zip(jobs, logs.tolist()):
            job = js.job
            gpus, milli = float(job.num_gpus), float(job.gpu_milli)
            level = bisect_right(THRESHOLDS, js.attained + EPS)
            table.rows[js.idx] = (
                1.0, 0.0, _gpus_log(job.num_gpus), milli / 1000.0,
                min(gpus * milli / 1000.0 / total, 1.0), bool(job.gpu_types),
                job.kind == INFERENCE, job.num_gpus == 0, 0.0, att_log, level == 0,
                level == 1, level == 2, pred_log, left_log, min(js.preemptions, 5) / 5, 0.0,
                0.0, min(js.progress / max(js.predicted, 1.0), 2.0), 0.0, 0.0, 0.0,
                js.submit, js.queue_since, job.slo_s or 0.0)
            table.keys[js.idx] = _stint(js)

    def rows(self, queue: list[JobState], fits: list[bool], reachable: list[bool], head,
             now: float) -> np.ndarray:
        """``len(queue)`` rows of ``JOB_FEATURES`` (float64; ``las_choice`` left 0)."""
        x = self.table.gather(queue, _stint, self._fill)
        times = now - x[:, _SUBMIT:_SLO]  # waiting and queued time
        np.maximum(times, 0.0, out=times)
        times /= 60.0
        np.log1p(times, out=times)
        times /= 5.0
        x[:, 8] = times[:, 0]
        x[:, 20] = times[:, 1]
        x[:, 1] = fits
        x[:, 17] = [js is head for js in queue]
        x[:, 19] = reachable
        inference = x[:, 6]
        if np.add.reduce(inference):  # inference jobs shown: their SLO slack
            slo, wait = x[:, _SLO], now - x[:, _SUBMIT]
            slack = np.minimum(np.maximum((slo - wait) / np.maximum(slo, 1.0), -1.0), 1.0)
            x[:, 16] = np.where(inference > 0, slack, 0.0)
        return x[:, :N_JOB]


# running table columns past the features: segment start, attained service at it, GPU
# demand, predicted minus progress at it, restart overhead of the segment
_SEG, _ATT, _DEMAND, _LEFT, _OVERHEAD = range(N_RUN, N_RUN + 5)
_RUN_UNITS = np.array([60.0, 3600.0, 60.0])  # segment, attained, predicted left
_RUN_SCALES = np.array([5.0, 3.0, 5.0])


class RunningRows(_Rows):
    """Rows of running jobs (``RUNNING_FEATURES``)."""

    width = N_RUN + 5

    def _fill(self, running: list[JobState]) -> None:
        """The parts of these jobs' rows that stay fixed during their run segment."""
        total, table = self.total_gpus, self.table
        for r in running:
            job = r.job
            gpus, milli = float(job.num_gpus), float(job.gpu_milli)
            table.rows[r.idx] = (
                1.0, job.kind == TRAINING, _gpus_log(job.num_gpus),
                min(gpus * milli / 1000.0 / total, 1.0), job.kind == INFERENCE,
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                r.seg_start, r.attained, job.num_gpus * job.gpu_milli / 1000.0,
                r.predicted - r.progress, r.seg_overhead)
            table.keys[r.idx] = _segment(r)

    def rows(self, running: list[JobState], now: float, levels: list[int]) -> np.ndarray:
        """``len(running)`` rows of ``RUNNING_FEATURES`` (float64; ``las_victim`` 0), for
        running jobs at these LAS ``levels`` now (``observation.running_levels``)."""
        x = self.table.gather(running, _segment, self._fill)
        timed = np.empty((len(running), 3))  # segment, attained, predicted left
        seg = np.subtract(now, x[:, _SEG], out=timed[:, 0])
        timed[:, 1] = x[:, _ATT] + x[:, _DEMAND] * seg
        timed[:, 2] = np.maximum(x[:, _LEFT] - np.maximum(seg - x[:, _OVERHEAD], 0.0), 0.0)
        x[:, 11] = seg == 0
        x[:, 7:10] = [(k == 0, k == 1, k == 2) for k in levels]
        timed /= _RUN_UNITS
        np.log1p(timed, out=timed)
        timed /= _RUN_SCALES
        x[:, 5:7] = timed[:, :2]
        x[:, 10] = timed[:, 2]
        return x[:, :N_RUN]

