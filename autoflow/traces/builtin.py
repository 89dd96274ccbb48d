"""Built-in workloads generated from published trace statistics (no data file needed).

``builtin:NAME`` or ``builtin:NAME:JOBS`` (e.g. ``builtin:philly-mix:5000``). The same
``seed`` always gives the same workload. Every workload is sized for a reference
cluster of ``CLUSTER_GPUS`` GPUs (8 nodes x 8 GPUs) at an offered load of
``TARGET_LOAD``: the Poisson arrival rate is ``TARGET_LOAD * CLUSTER_GPUS / E[GPU-seconds
per job]``, with the expectation computed analytically from the constants below (the
realized load of one sample varies with the heavy-tailed durations).

* ``philly-mix`` (2,000 jobs) / ``philly-mix-small`` (200 jobs): 80% training jobs with
  the Philly GPU-count mix and Philly's two-mode log-uniform durations, 20% inference
  services on one whole or fractional GPU (``gpu_milli`` in 250/500/1000) with
  log-normal durations around one hour and a 60 s start-delay SLO. With these numbers
  the mean training job runs ~16.8 h, so 2,000 jobs arrive over ~37 days (not ~2 days:
  a 0.9 load on 64 GPUs fixes the rate).
* ``shared-gpu`` (2,000 jobs): an Alibaba-openb-like mix: 57% latency-sensitive
  inference, 13% CPU-only tasks, 44% of single-GPU tasks sharing a GPU fractionally,
  and GPU-type constraints (one or two of T4, V100M32, A10) on 20% of GPU jobs.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..job import INFERENCE, TRAINING, WHOLE_GPU, Job
from ..limits import MAX_BUILTIN_JOBS
from ..workload import ImportSummary, Workload
from .base import ImportOptions, finish

TARGET_LOAD = 0.9  # offered GPU load on the reference cluster
CLUSTER_GPUS = 64  # reference cluster: 8 nodes x 8 GPUs

# Philly (Jeon et al., ATC '19): share of training jobs by GPU count.
PHILLY_GPU_MIX = {1: 0.70, 2: 0.10, 4: 0.15, 8: 0.05}
# Training durations: 60 * 10**U(lo, hi) seconds, i.e. log-uniform in minutes.
PHILLY_SHORT_P = 0.8  # share of jobs drawn from the short mode
PHILLY_SHORT_LOG10_MIN = (1.5, 3.0)  # 31.6 min .. 16.7 h
PHILLY_LONG_LOG10_MIN = (3.0, 4.0)  # 16.7 h .. 6.9 days
# Inference services in philly-mix.
PHILLY_INFERENCE_SHARE = 0.2
INFERENCE_MILLI = (250, 500, 1000)  # equally likely GPU shares of one GPU
INFERENCE_MEDIAN_S = 3600.0  # log-normal duration: median one hour ...
INFERENCE_SIGMA = 0.5  # ... and log-space standard deviation
INFERENCE_SLO_S = 60.0  # start-delay SLO of every inference job

# shared-gpu: figures of the Alibaba openb 2023 pod list.
SHARED_INFERENCE_SHARE = 0.57  # LS tasks: 4,647 of 8,152
SHARED_GPU_MIX = {0: 0.13, 1: 0.85, 2: 0.005, 4: 0.005, 8: 0.01}
SHARED_FRACTIONAL_P = 0.44  # single-GPU tasks that share a GPU (3,078 of 6,989)
SHARED_MILLI = {810: 0.35, 470: 0.29, 320: 0.11, 650: 0.09, 230: 0.07, 160: 0.05, 110: 0.04}
SHARED_DURATION_MEDIAN_S = 600.0  # openb p50 of run time ~616 s ...
SHARED_DURATION_SIGMA = 2.0  # ... p90 ~7,800 s
SHARED_GPU_TYPES = ("T4", "V100M32", "A10")
SHARED_TYPED_P = 0.2  # single-GPU jobs restricted to one or two of SHARED_GPU_TYPES
SHARED_TWO_TYPES_P = 0.3  # of those, share allowed on two types
SHARED_CPU_MILLI = (2000, 4000, 8000, 12000, 16000)  # equally likely; memory 2 GiB/core

DEFAULT_JOBS = {"philly-mix": 2000, "philly-mix-small": 200, "shared-gpu": 2000}
BUILTIN_NAMES = tuple(DEFAULT_JOBS)

_Draw = tuple[int, int, tuple[str, ...], str, float, int]  # gpus, milli, types, kind, dur, cpu


def _loguniform_mean(lo: float, hi: float) -> float:
    return 60.0 * (10 ** hi - 10 ** lo) / ((hi - lo) * math.log(10))


def _lognormal_mean(median: float, sigma: float) -> float:
    return median * math.exp(sigma ** 2 / 2)


def philly_gpu_seconds_per_job() -> float:
    """E[GPUs held x duration] of one philly-mix job."""
    gpus = sum(g * p for g, p in PHILLY_GPU_MIX.items())
    dur = (PHILLY_SHORT_P * _loguniform_mean(*PHILLY_SHORT_LOG10_MIN)
           + (1 - PHILLY_SHORT_P) * _loguniform_mean(*PHILLY_LONG_LOG10_MIN))
    inf = (sum(INFERENCE_MILLI) / len(INFERENCE_MILLI) / WHOLE_GPU
           * _lognormal_mean(INFERENCE_MEDIAN_S, INFERENCE_SIGMA))
    return (1 - PHILLY_INFERENCE_SHARE) * gpus * dur + PHILLY_INFERENCE_SHARE * inf


def shared_gpu_seconds_per_job() -> float:
    """E[GPUs held x duration] of one shared-gpu job (demand and duration independent)."""
    milli = sum(m * p for m, p in SHARED_MILLI.items()) / sum(SHARED_MILLI.values())
    single = (1 - SHARED_FRACTIONAL_P) + SHARED_FRACTIONAL_P * milli / WHOLE_GPU
    demand = sum(p * (single if g == 1 else g) for g, p in SHARED_GPU_MIX.items())
    return demand * _lognormal_mean(SHARED_DURATION_MEDIAN_S, SHARED_DURATION_SIGMA)


def _choice(rng: np.random.Generator, table: dict, n: int) -> np.ndarray:
    keys = list(table)
    p = np.array([table[k] for k in keys], dtype=float)
    return np.array(keys)[rng.choice(len(keys), size=n, p=p / p.sum())]


def _philly(rng: np.random.Generator, n: int) -> list[_Draw]:
    is_inf = rng.random(n) < PHILLY_INFERENCE_SHARE
    gpus = _choice(rng, PHILLY_GPU_MIX, n)
    short = rng.random(n) < PHILLY_SHORT_P
    lo = np.where(short, PHILLY_SHORT_LOG10_MIN[0], PHILLY_LONG_LOG10_MIN[0])
    hi = np.where(short, PHILLY_SHORT_LOG10_MIN[1], PHILLY_LONG_LOG10_MIN[1])
    train_dur = 60.0 * 10 ** rng.uniform(lo, hi)
    milli = rng.choice(INFERENCE_MILLI, size=n)
    inf_dur = rng.lognormal(math.log(INFERENCE_MEDIAN_S), INFERENCE_SIGMA, size=n)
    return [(1, int(milli[i]), (), INFERENCE, float(inf_dur[i]), 0) if is_inf[i]
            else (int(gpus[i]), WHOLE_GPU, (), TRAINING, float(train_dur[i]), 0)
            for i in range(n)]


def _shared(rng: np.random.Generator, n: int) -> list[_Draw]:
    is_inf = rng.random(n) < SHARED_INFERENCE_SHARE
    gpus = _choice(rng, SHARED_GPU_MIX, n)
    frac = rng.random(n) < SHARED_FRACTIONAL_P
    milli = _choice(rng, SHARED_MILLI, n)
    typed = rng.random(n) < SHARED_TYPED_P
    two = rng.random(n) < SHARED_TWO_TYPES_P
    perms = [rng.permutation(len(SHARED_GPU_TYPES)) for _ in range(n)]
    dur = rng.lognormal(math.log(SHARED_DURATION_MEDIAN_S), SHARED_DURATION_SIGMA, size=n)
    cpu = rng.choice(SHARED_CPU_MILLI, size=n)
    out: list[_Draw] = []
    for i in range(n):
        g = int(gpus[i])
        m = (int(milli[i]) if frac[i] else WHOLE_GPU) if g == 1 else (0 if g == 0 else WHOLE_GPU)
        types: tuple[str, ...] = ()
        if g == 1 and typed[i]:  # type constraints on single-GPU jobs only, so that
            k = 2 if two[i] else 1  # every job fits a cluster with a few GPUs of each type
            types = tuple(sorted(SHARED_GPU_TYPES[j] for j in perms[i][:k]))
        out.append((g, m, types, INFERENCE if is_inf[i] else TRAINING, float(dur[i]),
                    int(cpu[i])))
    return out


def parse_name(name: str) -> tuple[str, int]:
    """``"philly-mix:5000"`` -> ``("philly-mix", 5000)``; the default count otherwise."""
    base, _, count = name.strip().partition(":")
    if base not in DEFAULT_JOBS:
        raise ConfigError(f"unknown builtin workload {base!r}; known: {', '.join(BUILTIN_NAMES)}"
                          " (optionally NAME:JOBS, e.g. philly-mix:5000)")
    if not count:
        return base, DEFAULT_JOBS[base]
    if not count.isdigit() or not 1 <= int(count) <= MAX_BUILTIN_JOBS:
        raise ConfigError(f"builtin workload {name!r}: job count must be a whole number in "
                          f"1..{MAX_BUILTIN_JOBS:,}")
    return base, int(count)


def load(path: str, opts: ImportOptions) -> Workload:
    """``path`` is the workload NAME (optionally ``NAME:JOBS``); ``opts.seed`` seeds it."""
    base, n = parse_name(path)
    rng = np.random.default_rng(opts.seed)
    philly = base.startswith("philly-mix")
    per_job = philly_gpu_seconds_per_job() if philly else shared_gpu_seconds_per_job()
    rate = TARGET_LOAD * CLUSTER_GPUS / per_job  # jobs per second
    draws = _philly(rng, n) if philly else _shared(rng, n)
    gaps = rng.exponential(1.0 / rate, size=n)
    submit = np.concatenate([[0.0], np.cumsum(gaps[1:])])
    jobs = [Job(job_id=f"{base}-{i:05d}", submit_time=float(submit[i]), duration=dur,
                num_gpus=g, gpu_milli=m, gpu_types=types, kind=kind,
                qos="LS" if kind == INFERENCE else "BE", cpu_milli=cpu,
                memory_mib=cpu * 2048 // 1000,
                slo_s=INFERENCE_SLO_S if kind == INFERENCE else None)
            for i, (g, m, types, kind, dur, cpu) in enumerate(draws)]
    summary = ImportSummary()
    summary.notes.update({"generated": base, "seed": opts.seed, "target_load": TARGET_LOAD,
                          "cluster_gpus": CLUSTER_GPUS,
                          "expected_gpu_seconds_per_job": round(per_job, 1),
                          "arrival_rate_per_hour": round(rate * 3600, 3)})
    return finish(jobs, f"builtin:{path}", path, summary)
