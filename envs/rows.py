"""Feature rows of the shown jobs, most of each computed once per job and kept.

A waiting job's features change only with time (waiting time, time in the queue, SLO
slack) and with the cluster (fits, reachable, head of the queue) for as long as it
waits: its attained service, progress, preemptions and predicted duration are fixed
until it starts again. A running job's change only with the time its current segment
has run. So each row is computed in full once per queue stint (``JobState.queue_since``
and ``version``) or run segment (``version``), kept in a per-run table indexed by job,
and each decision copies the shown rows and fills in what time and the cluster changed.

Rows are plain Python lists of floats: a window holds at most a few dozen rows, for
which list arithmetic costs less than numpy's per-call overhead. The observer turns
them into one float32 array.

Feature names and order: ``envs.observation.JOB_FEATURES`` and ``RUNNING_FEATURES``.
"""

from __future__ import annotations

from bisect import bisect_right
from math import log1p, log2

from autoflow.core.jobstate import JobState
from autoflow.job import INFERENCE, TRAINING
from autoflow.policies.las import EPS, THRESHOLDS

N_JOB, N_RUN = 22, 13  # len(JOB_FEATURES), len(RUNNING_FEATURES)
_LEVELS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))  # level0..2 one-hot


def _gpus_log(gpus: int) -> float:
    return log2(1 + gpus) / 4


class _Rows:
    """Rows of one kind for one run on a cluster of ``total_gpus`` GPUs: per job index,
    ``(key, row, extra)``, valid while the job's key is unchanged."""

    def __init__(self, total_gpus: float):
        self.total_gpus = total_gpus
        self.kept: list = []

    def _refill(self, js: JobState, key) -> tuple:
        """Computes and keeps ``(key, row, extra)`` for this job (its key changed, or it
        has none yet); the callers look up kept entries themselves, in their loop."""
        kept, idx = self.kept, js.idx
        if idx >= len(kept):
            kept.extend([None] * (idx + 1 - len(kept)))
        got = kept[idx] = (key, *self._fill(js))
        return got

    def _fill(self, js: JobState) -> tuple:
        raise NotImplementedError


class JobRows(_Rows):
    """Rows of waiting jobs (``JOB_FEATURES``)."""

    def _fill(self, js: JobState) -> tuple:
        """The parts of the row that stay fixed while the job waits, and the job's
        submit time, queue entry time and SLO (0 if none)."""
        job = js.job
        gpus, milli = float(job.num_gpus), float(job.gpu_milli)
        level = bisect_right(THRESHOLDS, js.attained + EPS)
        row = [
            1.0, 0.0, _gpus_log(job.num_gpus), milli / 1000.0,
            min(gpus * milli / 1000.0 / self.total_gpus, 1.0), float(bool(job.gpu_types)),
            float(job.kind == INFERENCE), float(job.num_gpus == 0), 0.0,
            log1p(js.attained / 3600.0) / 3.0, *_LEVELS[level],
            log1p(js.predicted / 60.0) / 5.0,
            log1p(max(js.predicted - js.progress, 0.0) / 60.0) / 5.0,
            min(js.preemptions, 5) / 5, 0.0, 0.0,
            min(js.progress / max(js.predicted, 1.0), 2.0), 0.0, 0.0, 0.0]
        return row, (js.submit, js.queue_since, job.slo_s or 0.0, job.kind == INFERENCE)

    def rows(self, queue: list[JobState], fits: list[bool], reachable: list[bool], head,
             now: float) -> list[list[float]]:
        """``len(queue)`` rows of ``JOB_FEATURES`` (``las_choice`` left 0)."""
        out = []
        kept, refill = self.kept, self._refill
        for js, ok, reach in zip(queue, fits, reachable):
            got = kept[js.idx] if js.idx < len(kept) else None
            if got is None or got[0] != (js.queue_since, js.version):
                got = refill(js, (js.queue_since, js.version))
            _key, fixed, (submit, since, slo, inference) = got
            row = fixed.copy()
            wait = now - submit
            row[1] = 1.0 if ok else 0.0
            row[8] = log1p(max(wait, 0.0) / 60.0) / 5.0
            row[17] = 1.0 if js is head else 0.0
            row[19] = 1.0 if reach else 0.0
            row[20] = log1p(max(now - since, 0.0) / 60.0) / 5.0
            if inference:  # SLO slack
                row[16] = min(max((slo - wait) / max(slo, 1.0), -1.0), 1.0)
            out.append(row)
        return out


class RunningRows(_Rows):
    """Rows of running jobs (``RUNNING_FEATURES``)."""

    def _fill(self, r: JobState) -> tuple:
        """The parts of the row that stay fixed during the run segment, and the
        segment's start, attained service at it, GPU demand, predicted time left at it
        and restart overhead."""
        job = r.job
        gpus, milli = float(job.num_gpus), float(job.gpu_milli)
        row = [1.0, float(job.kind == TRAINING), _gpus_log(job.num_gpus),
               min(gpus * milli / 1000.0 / self.total_gpus, 1.0),
               float(job.kind == INFERENCE), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        return row, (r.seg_start, r.attained, job.num_gpus * job.gpu_milli / 1000.0,
                     r.predicted - r.progress, r.seg_overhead)

    def rows(self, running: list[JobState], now: float,
             levels: list[int]) -> list[list[float]]:
        """``len(running)`` rows of ``RUNNING_FEATURES`` (``las_victim`` 0), for running
        jobs at these LAS ``levels`` now (``observation.running_levels``)."""
        out = []
        kept, refill = self.kept, self._refill
        for r, level in zip(running, levels):
            got = kept[r.idx] if r.idx < len(kept) else None
            if got is None or got[0] != r.version:
                got = refill(r, r.version)
            _key, fixed, (start, att, demand, left, overhead) = got
            row = fixed.copy()
            seg = now - start
            row[5] = log1p(seg / 60.0) / 5.0
            row[6] = log1p((att + demand * seg) / 3600.0) / 3.0
            row[7:10] = _LEVELS[level]
            row[10] = log1p(max(left - max(seg - overhead, 0.0), 0.0) / 60.0) / 5.0
            row[11] = 1.0 if seg == 0 else 0.0
            out.append(row)
        return out
