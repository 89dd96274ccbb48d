"""gittins:ssl: gittins, with each job also ranked by its own predicted run time.

``gittins`` ranks a job by the sizes of all the jobs completed so far (one distribution
for the cluster). ``gittins:ssl`` (``:ssl=PATH``: another predictor folder) adds, per job,
the duration predictor's distribution of its remaining run time (``policies.ssl``: the
quantiles 0.1, 0.5 and 0.9, predicted when it joins the queue, from what is known then).
That distribution is read as a log-normal through the median and the 0.1-0.9 spread,
taken at ``POINTS`` equally likely points; in GPU-seconds (times the job's GPU demand,
plus the service it had when predicted) those are its **predicted sizes**, and its
**predicted rank** the reverse Gittins index of them at its attained service
(``gittins.reverse_index``; lowest first, so a job predicted short runs early and may
preempt a running job predicted longer). A job that outlives its largest predicted size
is ranked as ``gittins`` ranks its queue (a mispredicted long job is demoted as LAS
demotes it); so is a job before its first prediction (the instant it arrives, until the
pass that predicts it) and a job without GPUs. A job that joins the queue again (after a
preemption or an eviction) is predicted again, at its work done then.

``gittins-siblings`` takes the smaller of its two ranks, so that siblings can only bring
a job forward; here that rule was measured and left: with few jobs completed the
cluster's rank is small for every job, and the predictions then order nothing (the 16
jobs on one GPU of ``test_gittins_ssl_runs_short_predicted_jobs_first``, a perfect
predictor: 18,294 s average JCT with the smaller rank, 22,201 s for ``gittins``, and
11,708 s with the predicted rank; ``srtf-oracle`` 11,731 s, ``sjf-oracle`` 11,691 s).

A running job is preempted only for a waiting job whose rank is below ``KEEP`` (0.8) times
its own. The predicted rank moves with attained service, and without that margin jobs
of close ranks take turns. ITP cluster08 at ``--load 1.1`` (13,047 jobs): 90,630
preemptions with no margin (``gittins``: 12,158) and 19.48 h average JCT (``gittins``
20.48 h); 54,279 and 18.89 h with 0.8; 18,683 and 19.44 h with 0.5. A margin holds back
useful preemptions where there are few: on Alibaba openb at ``--load 1.1`` 13.74 h with
none, 14.45 h with 0.8, 16.84 h with 0.5 (``gittins`` 14.54 h). Ranking at the start of
each of ``gittins``'s queues only (as Tiresias discretizes) was measured and left: 8,230
preemptions on cluster08 but 24.82 h, worse than ``gittins`` (``RESULTS.md``, "Duration
prediction").
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from ..core.jobstate import WAITING
from .gittins import INF, Gittins
from .gittins_siblings import GittinsSiblings
from .ssl import label, make_ssl

POINTS = 8  # equally likely points of a job's predicted distribution
Z90 = NormalDist().inv_cdf(0.9)
MIN_SIGMA = 0.05  # a predicted spread at least this wide (log seconds)
KEEP = 0.8  # a running job is preempted only for a waiting one ranked below KEEP x its rank
# the standard normal at the middle of each of POINTS equal slices of probability
_Z = np.array([NormalDist().inv_cdf((k + 0.5) / POINTS) for k in range(POINTS)])


def predicted_sizes(lo: float, mid: float, hi: float, work: float, demand: float) -> np.ndarray:
    """The job's predicted sizes (GPU-seconds, sorted): the log-normal through median
    ``mid`` whose 0.1 and 0.9 quantiles are ``lo`` and ``hi`` (seconds of run time left
    after ``work``), at the ``POINTS`` points, times ``demand``."""
    sigma = max((math.log(max(hi, 1e-9)) - math.log(max(lo, 1e-9))) / (2.0 * Z90), MIN_SIGMA)
    left = np.exp(math.log(max(mid, 1e-9)) + sigma * _Z)
    return demand * (work + left)


class GittinsSsl(GittinsSiblings):
    name = "gittins"

    def __init__(self, placer, predictor: str):
        super().__init__(placer)
        self.ssl = make_ssl(predictor, self.name)

    def prepare(self, ctx) -> None:
        super().prepare(ctx)
        if getattr(self, "ssl", None) is not None:
            self.ssl.reset()

    def siblings(self, js) -> np.ndarray | None:
        """The job's predicted sizes (cached until it is predicted again), or None."""
        got = self.sib.get(js.idx)
        if got is not None or js.idx in self.sib:
            return got
        q = self.ssl.quantiles.get(js.idx)
        demand = js.job.gpu_demand
        found = None if q is None or demand <= 0 else predicted_sizes(
            *q, self.ssl.at_work[js.idx], demand)
        if q is not None and js.idx >= 0:
            self.sib[js.idx] = found
        return found

    def job_rank(self, js, attained: float) -> float:
        r = self.sibling_rank(js, attained)
        return r if r < INF else self.rank(attained)

    def preempt_key(self, js, now: float) -> tuple:
        if js.status == WAITING:
            return (self.job_rank(js, js.attained),)
        return (KEEP * self.job_rank(js, js.attained_at(now)),)

    def _forget(self, js) -> None:
        self.sib.pop(js.idx, None)
        self.seg.pop(js.idx, None)

    def queue_key(self, js) -> tuple:
        self.ssl.joined(js)
        return super().queue_key(js)

    def on_finish(self, ctx, js) -> None:
        self.ssl.completed(js)
        self._forget(js)
        Gittins.on_finish(self, ctx, js)  # gittins's size table (no siblings here)

    def schedule(self, ctx) -> None:
        self.ssl.refresh(ctx, rekey=True, changed=self._forget)
        super().schedule(ctx)

    @property
    def label(self) -> str:
        return f"{label(self.name, self.ssl)}+{self.placer.name}"
