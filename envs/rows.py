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

Rows are written by feature name (``envs.features``: ``JOB_FEATURES`` and
``RUNNING_FEATURES``), never by column position.
"""

from __future__ import annotations

from math import log1p, log2

from autoflow.core.jobstate import JobState
from autoflow.job import INFERENCE, TRAINING
from autoflow.policies.las import level_of

from .features import JOB, JOB_FEATURES, RUN, RUNNING_FEATURES, row

N_JOB, N_RUN = len(JOB_FEATURES), len(RUNNING_FEATURES)
_LEVEL = ("level0", "level1", "level2")  # one-hot
# the columns each decision fills in (by name)
_FITS, _WAIT, _HEAD, _REACH, _QUEUED, _SLACK = (
    JOB[n] for n in ("fits", "wait_log", "is_head", "fits_by_preempting", "queued_log",
                     "slo_slack"))
_SEG, _ATT, _LVL, _LEFT, _NOW = (RUN[n] for n in ("segment_log", "attained_log", "level0",
                                                   "predicted_left_log", "started_now"))
if [RUN[n] for n in _LEVEL] != [_LVL, _LVL + 1, _LVL + 2]:
    raise ImportError("the level features of running jobs must be adjacent")
_LEVELS = tuple(tuple(float(i == k) for i in range(3)) for k in range(3))


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
        level = level_of(js.attained)
        fixed = row(
            JOB, present=1.0, gpus_log=_gpus_log(job.num_gpus), gpu_share=milli / 1000.0,
            demand_of_cluster=min(gpus * milli / 1000.0 / self.total_gpus, 1.0),
            type_constrained=float(bool(job.gpu_types)),
            inference=float(job.kind == INFERENCE), cpu_only=float(job.num_gpus == 0),
            attained_log=log1p(js.attained / 3600.0) / 3.0, **{_LEVEL[level]: 1.0},
            predicted_log=log1p(js.predicted / 60.0) / 5.0,
            predicted_left_log=log1p(max(js.predicted - js.progress, 0.0) / 60.0) / 5.0,
            preemptions=min(js.preemptions, 5) / 5,
            progress_of_predicted=min(js.progress / max(js.predicted, 1.0), 2.0))
        return fixed, (js.submit, js.queue_since, job.slo_s or 0.0, job.kind == INFERENCE)

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
            r = fixed.copy()
            wait = now - submit
            r[_FITS] = 1.0 if ok else 0.0
            r[_WAIT] = log1p(max(wait, 0.0) / 60.0) / 5.0
            r[_HEAD] = 1.0 if js is head else 0.0
            r[_REACH] = 1.0 if reach else 0.0
            r[_QUEUED] = log1p(max(now - since, 0.0) / 60.0) / 5.0
            if inference:
                r[_SLACK] = min(max((slo - wait) / max(slo, 1.0), -1.0), 1.0)
            out.append(r)
        return out


class RunningRows(_Rows):
    """Rows of running jobs (``RUNNING_FEATURES``)."""

    def _fill(self, r: JobState) -> tuple:
        """The parts of the row that stay fixed during the run segment, and the
        segment's start, attained service at it, GPU demand, predicted time left at it
        and restart overhead."""
        job = r.job
        gpus, milli = float(job.num_gpus), float(job.gpu_milli)
        fixed = row(RUN, present=1.0, preemptible=float(job.kind == TRAINING),
                    gpus_log=_gpus_log(job.num_gpus),
                    demand_of_cluster=min(gpus * milli / 1000.0 / self.total_gpus, 1.0),
                    inference=float(job.kind == INFERENCE))
        return fixed, (r.seg_start, r.attained, job.num_gpus * job.gpu_milli / 1000.0,
                     r.predicted - r.progress, r.seg_overhead)

    def rows(self, running: list[JobState], now: float,
             levels: list[int]) -> list[list[float]]:
        """``len(running)`` rows of ``RUNNING_FEATURES`` (``las_victim`` 0), for running
        jobs at these LAS ``levels`` now (``levels.running_levels``)."""
        out = []
        kept, refill = self.kept, self._refill
        for r, level in zip(running, levels):
            got = kept[r.idx] if r.idx < len(kept) else None
            if got is None or got[0] != r.version:
                got = refill(r, r.version)
            _key, fixed, (start, att, demand, left, overhead) = got
            r = fixed.copy()
            seg = now - start
            r[_SEG] = log1p(seg / 60.0) / 5.0
            r[_ATT] = log1p((att + demand * seg) / 3600.0) / 3.0
            r[_LVL:_LVL + 3] = _LEVELS[level]
            r[_LEFT] = log1p(max(left - max(seg - overhead, 0.0), 0.0) / 60.0) / 5.0
            r[_NOW] = 1.0 if seg == 0 else 0.0
            out.append(r)
        return out
