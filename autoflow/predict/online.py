"""The predictor's features computed online, inside a run, from what the scheduler core
has seen (issue 19): the same ``features.NAMES`` as ``features.job_features``, which
computes them offline over a whole trace.

Where the offline features count a job as completed at its recorded finish (or at
``submit + duration``), these count only the jobs that actually COMPLETED in this run,
at their completion in the run (``JobState.finish``), with the duration the core
observed then (``JobState.duration``, which raises ``OracleError`` for a job that has not
completed: nothing here can read one). The submission stream is the arrivals seen so
far, in arrival order; the attained column is the job's useful work so far
(``JobState.running_progress``, seconds run: the predictor's "attained").

So when every job completes at ``submit + duration`` (nothing queues) and a job's row is
taken at its arrival, the rows equal ``features.job_features``'s row for row (tested).
Completions of one instant are taken in job order, as the offline sort does.

Use: ``arrive(js)`` once per job in arrival order, ``complete(js)`` when it completes
(the policy's ``on_finish``), ``rows(jobs, now)`` for a batch of jobs at a pass.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import defaultdict, deque

import numpy as np

from . import features as F


class OnlineFeatures:
    def __init__(self) -> None:
        self._base: dict[int, list[float]] = {}  # idx -> static + submission-stream part
        self._subs: list[float] = []  # arrival times so far (arrival order)
        self._subs_gpu: dict[int, list[float]] = defaultdict(list)
        self._new: list[tuple[float, int, int, str, float]] = []  # completions not yet in
        self._done: list[float] = []  # sorted log durations of completed jobs
        self._done_gpu: dict[int, list[float]] = defaultdict(list)
        self._recent_gpu: dict[int, deque] = defaultdict(lambda: deque(maxlen=F.RECENT))
        self._recent_user: dict[tuple, deque] = defaultdict(lambda: deque(maxlen=F.RECENT))

    def __contains__(self, idx: int) -> bool:
        return idx in self._base

    # -- what the core reports ----------------------------------------------------------
    def arrive(self, js) -> None:
        """The job arrived (call once per job, in arrival order)."""
        job, t = js.job, js.submit
        subs, sg = self._subs, self._subs_gpu[job.num_gpus]
        n10 = len(subs) - bisect_left(subs, t - 600.0)
        n60 = len(subs) - bisect_left(subs, t - 3600.0)
        n60g = len(sg) - bisect_left(sg, t - 3600.0)
        gap = math.log1p(max(t - subs[-1], 0.0)) if subs else 0.0
        self._base[js.idx] = [*F._static(job), 0.0, gap, math.log1p(n10), math.log1p(n60),
                              math.log1p(n60g)]
        subs.append(t)
        sg.append(t)

    def complete(self, js) -> None:
        """The job completed in this run (its duration is known now). Censored jobs
        count as never completing, as offline."""
        if js.job.censored:
            return
        d = js.duration  # raises OracleError unless completed (or an oracle run)
        self._new.append((float(js.finish), js.idx, js.job.num_gpus, js.job.user,
                          F._log_dur(d)))

    def _flush(self) -> None:
        if not self._new:
            return
        self._new.sort()  # by completion, then job order (the offline tie-break)
        for _t, _i, gpus, user, ld in self._new:
            insort(self._done, ld)
            insort(self._done_gpu[gpus], ld)
            self._recent_gpu[gpus].append(ld)
            if user:
                self._recent_user[(user, gpus)].append(ld)
        self._new.clear()

    # -- rows ---------------------------------------------------------------------------
    def rows(self, jobs, now: float) -> np.ndarray:
        """The feature rows of ``jobs`` (arrived ones) at time ``now``: the history of
        the completions reported so far, attained = useful work done by ``now``."""
        self._flush()
        out = np.zeros((len(jobs), len(F.NAMES)), dtype=np.float64)
        done = self._done
        overall = F._median(done) if done else F.PRIOR_LOG_S
        log_n = math.log1p(len(done))
        hist: dict[tuple, list[float]] = {}
        for r, js in enumerate(jobs):
            job = js.job
            key = (job.num_gpus, job.user)
            h = hist.get(key)
            if h is None:
                same = self._done_gpu.get(job.num_gpus, [])
                same_med = F._median(same) if same else overall
                rg = sorted(self._recent_gpu.get(job.num_gpus, ()))
                rg_med = F._median(rg) if rg else same_med
                ru = sorted(self._recent_user.get(key[::-1], ())) if job.user else []
                ru_med = F._median(ru) if ru else rg_med
                h = hist[key] = [overall, log_n, same_med, math.log1p(len(same)),
                                 rg_med, math.log1p(len(rg)), ru_med, math.log1p(len(ru))]
            out[r, :len(self._base[js.idx])] = self._base[js.idx]
            out[r, len(self._base[js.idx]):] = h
            out[r, F.ATTAINED_COL] = math.log1p(js.running_progress(now))
        return out
