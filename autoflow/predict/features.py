"""Decision-time examples for the duration predictor: what is known when a job is decided.

Jobs are taken in submission order. For job ``j`` at decision time ``t`` (its submit
time) with attained service ``a`` (trace seconds it has already run; 0 at submission)
the feature vector uses only

* ``j``'s own attributes: log2 of 1 + GPUs, GPU share, CPU and memory (0 where the trace
  has none), kind and QoS one-hots over a small fixed vocabulary, hour of day (sin, cos);
* ``log1p(a)``;
* the submission stream in the PAST: the log gap to the previous submission, how many
  jobs were submitted in the last 10 min and 1 h, how many of them with ``j``'s GPU count;
* log durations of jobs that have COMPLETED by ``t``. Job ``k`` is completed at ``t``
  iff its finish time is ``<= t``: ``k.extra["finish_time"]`` where an importer recorded
  one, else ``submit + duration`` (the earliest it can have finished; a job that queued
  finished later, so this never counts a running job as done). Censored jobs and jobs
  without a duration never complete. Overall median and count, same-GPU-count median and
  count, and the median and count of the 8 most recently completed jobs with the same GPU
  count (and the same user, where the trace has users).

Decision time is the submit time for every attained level: at attained ``a`` the real
clock is at least ``submit + a``, so this uses a subset of what is known then (never
more). The label is ``log(max(duration - a, 1 s))``, the log remaining run time.

``FEATURES`` (names, order, version) is recorded in every model file; a model whose
schema differs from this one is refused when loaded.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np

from ..job import INFERENCE, TRAINING, Job
from ..workload import Workload

FEATURE_VERSION = 1
QOS_VOCAB = ("BE", "LS", "Burstable", "Guaranteed")  # anything else: qos_other ("" = none)
RECENT = 8  # most recent completed jobs of the same GPU count (and user)
PRIOR_LOG_S = math.log(3600.0)  # a median before anything completed (the estimator's prior)
MIN_REMAINING_S = 1.0  # remaining times below this count as this (log scale)
ATTAINED_DRAWS = 3  # training: attained levels drawn per job besides a = 0

NAMES: tuple[str, ...] = (
    "log2_gpus", "gpu_share", "log_cpu", "log_mem_gib",
    "kind_training", "kind_inference",
    *(f"qos_{q}" for q in QOS_VOCAB), "qos_other", "qos_none",
    "hour_sin", "hour_cos",
    "log1p_attained",
    "log_gap_prev", "log_subs_10m", "log_subs_1h", "log_subs_same_gpu_1h",
    "done_median", "log_done_n",
    "done_same_gpu_median", "log_done_same_gpu_n",
    "recent_same_gpu_median", "log_recent_same_gpu_n",
    "recent_same_user_median", "log_recent_same_user_n",
)
FEATURES: dict = {"version": FEATURE_VERSION, "names": list(NAMES)}
ATTAINED_COL = NAMES.index("log1p_attained")


def schema() -> dict:
    """The feature schema written into model files (a copy)."""
    return {"version": FEATURE_VERSION, "names": list(NAMES)}


def finish_time(job: Job) -> float:
    """When ``job`` completed (inf: never, for censored jobs and unknown durations)."""
    if job.censored or job.duration is None:
        return math.inf
    f = job.extra.get("finish_time") if job.extra else None
    if isinstance(f, int | float) and math.isfinite(f):
        return float(f)
    return job.submit_time + job.duration


def _log_dur(d: float) -> float:
    return math.log(max(d, MIN_REMAINING_S))


def _median(sorted_vals: list[float]) -> float:
    n = len(sorted_vals)
    if not n:
        return math.nan
    mid = n // 2
    return sorted_vals[mid] if n % 2 else 0.5 * (sorted_vals[mid - 1] + sorted_vals[mid])


def _static(job: Job) -> list[float]:
    hour = (job.submit_time % 86400.0) / 3600.0
    qos = [1.0 if job.qos == q else 0.0 for q in QOS_VOCAB]
    return [math.log2(1 + job.num_gpus), job.gpu_milli / 1000.0,
            math.log1p(job.cpu_milli / 1000.0), math.log1p(job.memory_mib / 1024.0),
            float(job.kind == TRAINING), float(job.kind == INFERENCE),
            *qos, float(bool(job.qos) and job.qos not in QOS_VOCAB), float(not job.qos),
            math.sin(2 * math.pi * hour / 24), math.cos(2 * math.pi * hour / 24)]


def job_features(workload: Workload) -> np.ndarray:
    """One row per job (in ``workload`` order) at its submit time with attained 0."""
    jobs = workload.jobs
    n = len(jobs)
    out = np.zeros((n, len(NAMES)), dtype=np.float64)
    by_finish = sorted(range(n), key=lambda i: finish_time(jobs[i]))
    fin = [finish_time(jobs[i]) for i in by_finish]
    ptr = 0
    done: list[float] = []  # sorted log durations of completed jobs
    done_gpu: dict[int, list[float]] = defaultdict(list)
    recent_gpu: dict[int, deque] = defaultdict(lambda: deque(maxlen=RECENT))
    recent_user: dict[tuple, deque] = defaultdict(lambda: deque(maxlen=RECENT))
    subs: list[float] = []  # submit times so far (sorted: submission order)
    subs_gpu: dict[int, list[float]] = defaultdict(list)
    for i, job in enumerate(jobs):
        t = job.submit_time
        # jobs completed by t, in finish order (ties in submission order); never j itself
        # or a job submitted after it (both could "finish" at t with a duration of 0)
        while ptr < n and fin[ptr] <= t and by_finish[ptr] < i:
            k = jobs[by_finish[ptr]]
            ld = _log_dur(k.duration)
            insort(done, ld)
            insort(done_gpu[k.num_gpus], ld)
            recent_gpu[k.num_gpus].append(ld)
            if k.user:
                recent_user[(k.user, k.num_gpus)].append(ld)
            ptr += 1
        gap = t - subs[-1] if subs else math.nan
        n10 = len(subs) - bisect_left(subs, t - 600.0)
        n60 = len(subs) - bisect_left(subs, t - 3600.0)
        sg = subs_gpu[job.num_gpus]
        n60g = len(sg) - bisect_left(sg, t - 3600.0)
        overall = _median(done) if done else PRIOR_LOG_S
        same = done_gpu.get(job.num_gpus, [])
        same_med = _median(same) if same else overall
        rg = sorted(recent_gpu.get(job.num_gpus, ()))
        rg_med = _median(rg) if rg else same_med
        ru = sorted(recent_user.get((job.user, job.num_gpus), ())) if job.user else []
        ru_med = _median(ru) if ru else rg_med
        out[i] = [*_static(job), 0.0,
                  math.log1p(max(gap, 0.0)) if subs else 0.0,
                  math.log1p(n10), math.log1p(n60), math.log1p(n60g),
                  overall, math.log1p(len(done)), same_med, math.log1p(len(same)),
                  rg_med, math.log1p(len(rg)), ru_med, math.log1p(len(ru))]
        subs.append(t)
        sg.append(t)
    return out


@dataclass
class Examples:
    """Decision-time examples: features ``x``, label ``y`` (log remaining seconds),
    ``job`` (index into the workload's jobs), ``attained`` seconds and the true
    ``remaining`` seconds."""

    x: np.ndarray
    y: np.ndarray
    job: np.ndarray
    attained: np.ndarray
    remaining: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: np.ndarray) -> Examples:
        return Examples(self.x[idx], self.y[idx], self.job[idx], self.attained[idx],
                        self.remaining[idx])

    @staticmethod
    def concat(parts: list[Examples]) -> Examples:
        return Examples(*(np.concatenate([getattr(p, f) for p in parts])
                          for f in ("x", "y", "job", "attained", "remaining")))


def labelled(job: Job) -> bool:
    """A job whose duration is a label: known and not censored."""
    return job.duration is not None and not job.censored


def examples(workload: Workload, *, draws: int = ATTAINED_DRAWS, seed: int = 0) -> Examples:
    """Examples of every labelled job: attained 0 and ``draws`` levels drawn uniformly
    below its duration (seeded)."""
    base = job_features(workload)
    rng = np.random.default_rng(seed)
    rows, jobs_i, att = [], [], []
    for i, job in enumerate(workload.jobs):
        if not labelled(job):
            continue
        levels = [0.0]
        if draws and job.duration > 0:
            levels += list(rng.uniform(0.0, job.duration, size=draws))
        for a in levels:
            rows.append(i)
            jobs_i.append(i)
            att.append(a)
    idx = np.asarray(rows, dtype=np.int64)
    x = base[idx] if len(idx) else np.zeros((0, len(NAMES)))
    a = np.asarray(att, dtype=np.float64)
    x[:, ATTAINED_COL] = np.log1p(a)
    dur = np.asarray([workload.jobs[i].duration for i in jobs_i], dtype=np.float64)
    rem = np.maximum(dur - a, MIN_REMAINING_S)
    return Examples(x, np.log(rem), np.asarray(jobs_i, dtype=np.int64), a, rem)
