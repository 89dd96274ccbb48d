"""Built-in workloads generated from published trace statistics (no data file needed).

``builtin:NAME`` or ``builtin:NAME:JOBS`` (e.g. ``builtin:philly-mix:5000``). The same
``seed`` always gives the same workload. Every workload is sized for a reference
cluster of ``CLUSTER_GPUS`` GPUs (8 nodes x 8 GPUs) at an offered load of
``TARGET_LOAD``: the Poisson arrival rate is ``TARGET_LOAD * CLUSTER_GPUS / E[GPU-seconds
per job]``, with the expectation computed analytically from the constants below (the
realized load of one sample varies with the heavy-tailed durations); ``ml-pipelines``
splits that load between its nightly pipelines and its independent jobs (below).

* ``philly-mix`` (2,000 jobs) / ``philly-mix-small`` (200 jobs): 80% training jobs with
  the Philly GPU-count mix and Philly's two-mode log-uniform durations, 20% inference
  services on one whole or fractional GPU (``gpu_milli`` in 250/500/1000) with
  log-normal durations around one hour and a 60 s start-delay SLO. With these numbers
  the mean training job runs ~16.8 h, so 2,000 jobs arrive over ~37 days (not ~2 days:
  a 0.9 load on 64 GPUs fixes the rate).
* ``shared-gpu`` (2,000 jobs): an Alibaba-openb-like mix: 57% latency-sensitive
  inference, 13% CPU-only tasks, 44% of single-GPU tasks sharing a GPU fractionally,
  and GPU-type constraints (one or two of T4, V100M32, A10) on 20% of GPU jobs.
* ``ml-pipelines`` (600 jobs): continual-learning pipelines (workflows, see
  ``autoflow.workflow``) beside ad-hoc training and long-lived inference services.
  Each of the ``PIPELINES`` templates (five named models, train gangs of 2, 4 and 8
  GPUs) runs *nightly*: every 24 h at its own time of night (01:00, 01:30, ... after
  t=0, which is a midnight) give or take ``NIGHTLY_JITTER_S``, the same pipeline again
  on fresh data; ``ADHOC_PIPELINES_PER_DAY`` further runs of a random template arrive
  at random times (Poisson). A run is a DAG of jobs sharing ``workflow_id`` (``p0``,
  ``p1``, ... in order of start), each with ``group`` = TEMPLATE/STAGE (so the history
  duration estimator learns per stage) and ``depends_on`` its parent stages:
  **prepare** (CPU only; the ``recsys`` and ``speech`` templates have two parallel
  prepare stages that join into train) -> **train** (a gang of 2, 4 or 8 GPUs) ->
  **evaluate** (1 GPU) -> **serve** (1 or 2 inference replicas, whole or fractional
  GPU, 60 s start-delay SLO, several hours). Every stage of a run is *submitted at the
  run's start* (``submit_time`` is the same for all of them): the scheduler core holds
  each stage until its parents succeeded. Job ids are ``pK-STAGE`` (``p3-train``,
  ``p3-serve-1``) for stages, ``adhoc-NNNNN`` (training with the philly-mix GPU mix
  and durations) and ``service-NNNNN`` (inference) for the independent jobs.
  *Sizing*: the pipelines offer a fixed GPU load per day (their expected GPU-seconds,
  computed from the constants); the independent jobs arrive as a Poisson stream whose
  rate fills the rest up to ``TARGET_LOAD`` of ``CLUSTER_GPUS`` (so the pipelines are
  about 14% of the GPU load and about 40% of the jobs, and 600 jobs span about a week).
  ``ml-pipelines:N``: jobs are generated in time order until there are at least N,
  whole pipelines, so a workload has N to N+5 jobs (a run ends with its last stage);
  the streams are seeded separately, so the workload of N jobs is the first part of
  the one of more jobs with the same seed.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from .. import workflow
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

# ml-pipelines. No published trace gives per-stage figures of ML pipelines, so the stage
# shapes and durations below are assumptions, each with why it is plausible. What is
# published: the Alibaba PAI trace (Weng et al., NSDI '22; README of alibaba/clusterdata
# cluster-trace-gpu-v2020) tags "repeated instances" (same entry script, parameters and
# data sources) with one ``group``: recurring jobs are a documented part of production
# ML clusters; here each stage of a template keeps its group from run to run.
DAY_S = 86400.0


class PipelineTemplate(NamedTuple):
    """One model's pipeline: prepare (CPU) -> train (GPU gang) -> evaluate -> serve."""

    name: str
    prepare: tuple[tuple[str, int], ...]  # parallel prepare stages: (stage name, cpu_milli)
    prepare_median_s: float
    train_gpus: int
    train_median_s: float
    eval_median_s: float
    replicas: int  # inference replicas of the serve stage
    serve_milli: int  # GPU share of each replica (thousandths of one GPU)
    serve_median_s: float


# Assumptions: prepare = a CPU ETL job over one day of fresh data, 20-60 min on 8-32
# cores; train medians of 1-5 h, inside Philly's short mode (31.6 min .. 16.7 h, which
# holds 80% of Philly's jobs, Jeon et al. ATC '19: PHILLY_SHORT_*), with gangs of 2, 4
# and 8 GPUs as in Philly's multi-GPU jobs; evaluate = one pass over a held-out set,
# 10-45 min on one GPU; serve = the new model's replicas, "several hours" (6-10 h), ended
# before the next night's model so that consecutive nights' services do not overlap.
PIPELINES = (
    PipelineTemplate("recsys", (("prepare-logs", 32000), ("prepare-features", 16000)),
                     2700.0, 8, 3 * 3600.0, 1800.0, 2, 1000, 8 * 3600.0),
    PipelineTemplate("nlp-ranker", (("prepare-text", 16000),),
                     1800.0, 8, 5 * 3600.0, 2700.0, 2, 1000, 6 * 3600.0),
    PipelineTemplate("vision", (("prepare-images", 24000),),
                     3600.0, 4, 2 * 3600.0, 1200.0, 1, 500, 8 * 3600.0),
    PipelineTemplate("speech", (("prepare-audio", 16000), ("prepare-transcripts", 8000)),
                     2400.0, 4, 3 * 3600.0, 1200.0, 1, 500, 8 * 3600.0),
    PipelineTemplate("fraud", (("prepare-transactions", 8000),),
                     1200.0, 2, 3600.0, 600.0, 2, 250, 10 * 3600.0),
)
# Log-space standard deviations of the stage durations around the template's median.
# Assumption: a recurring run on one more day of data varies little; sigma 0.25 puts
# p10..p90 at 0.73x..1.38x the median (0.3: 0.68x..1.47x for the data-size-bound prepare).
PREPARE_SIGMA = 0.3
TRAIN_SIGMA = 0.25
EVAL_SIGMA = 0.25
SERVE_SIGMA = 0.25
NIGHTLY_FIRST_S = 3600.0  # the first template starts at 01:00 (t=0 is a midnight) ...
NIGHTLY_SPACING_S = 1800.0  # ... the next ones half an hour apart (assumption)
NIGHTLY_JITTER_S = 300.0  # each nightly start moves by U(-5, +5) min (assumption)
ADHOC_PIPELINES_PER_DAY = 2.0  # extra runs of a random template, Poisson (assumption:
#                                a re-run after a fix, or an experiment)
# Independent jobs: ad-hoc training draws the philly-mix GPU mix and durations (Philly,
# above); the rest are long-lived inference services, in the philly-mix share
# (PHILLY_INFERENCE_SHARE) and GPU shares (INFERENCE_MILLI), running several hours
# (assumption: a service that is not a pipeline's, e.g. an experiment's demo endpoint).
SERVICE_MEDIAN_S = 4 * 3600.0
SERVICE_SIGMA = 0.5
# CPU and memory of every job of ml-pipelines but the prepare stages (assumption, a
# common host ratio: an 8-GPU, 64-core node keeps half its cores for CPU-only work).
CPU_PER_GPU_MILLI = 4000  # per GPU held (a fractional GPU at least one core)
MEMORY_PER_CORE_MIB = 4096  # of every job, prepare stages included

DEFAULT_JOBS = {"philly-mix": 2000, "philly-mix-small": 200, "shared-gpu": 2000,
                "ml-pipelines": 600}
BUILTIN_NAMES = tuple(DEFAULT_JOBS)

_Draw = tuple[int, int, tuple[str, ...], str, float, int]  # gpus, milli, types, kind, dur, cpu


def _loguniform_mean(lo: float, hi: float) -> float:
    return 60.0 * (10 ** hi - 10 ** lo) / ((hi - lo) * math.log(10))


def _lognormal_mean(median: float, sigma: float) -> float:
    return median * math.exp(sigma ** 2 / 2)


def _philly_training_parts() -> tuple[float, float]:
    """(E[GPUs], E[duration]) of one philly-mix training job (independent draws)."""
    gpus = sum(g * p for g, p in PHILLY_GPU_MIX.items())
    dur = (PHILLY_SHORT_P * _loguniform_mean(*PHILLY_SHORT_LOG10_MIN)
           + (1 - PHILLY_SHORT_P) * _loguniform_mean(*PHILLY_LONG_LOG10_MIN))
    return gpus, dur


def philly_gpu_seconds_per_job() -> float:
    """E[GPUs held x duration] of one philly-mix job."""
    gpus, dur = _philly_training_parts()
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


def pipeline_gpu_seconds(t: PipelineTemplate) -> float:
    """E[GPUs held x duration] of one run of ``t`` (its prepare stages hold no GPU)."""
    return (t.train_gpus * _lognormal_mean(t.train_median_s, TRAIN_SIGMA)
            + _lognormal_mean(t.eval_median_s, EVAL_SIGMA)
            + t.replicas * t.serve_milli / WHOLE_GPU
            * _lognormal_mean(t.serve_median_s, SERVE_SIGMA))


def pipelines_gpu_seconds_per_day() -> float:
    """E[GPU-seconds] that ml-pipelines' pipelines offer per day: each template once
    (nightly) plus ``ADHOC_PIPELINES_PER_DAY`` runs of a template drawn uniformly."""
    per_run = [pipeline_gpu_seconds(t) for t in PIPELINES]
    return sum(per_run) + ADHOC_PIPELINES_PER_DAY * sum(per_run) / len(per_run)


def independent_gpu_seconds_per_job() -> float:
    """E[GPUs held x duration] of one of ml-pipelines' independent jobs."""
    gpus, dur = _philly_training_parts()
    svc = (sum(INFERENCE_MILLI) / len(INFERENCE_MILLI) / WHOLE_GPU
           * _lognormal_mean(SERVICE_MEDIAN_S, SERVICE_SIGMA))
    return (1 - PHILLY_INFERENCE_SHARE) * gpus * dur + PHILLY_INFERENCE_SHARE * svc


def independent_rate() -> float:
    """Independent jobs per second: they fill what the pipelines leave of
    ``TARGET_LOAD`` on ``CLUSTER_GPUS`` GPUs."""
    left = TARGET_LOAD * CLUSTER_GPUS - pipelines_gpu_seconds_per_day() / DAY_S
    return left / independent_gpu_seconds_per_job()


def _nightly(rng: np.random.Generator) -> Iterator[tuple[float, int]]:
    """(start, template index) of every template, night after night, in time order."""
    day = 0
    while True:
        jitter = rng.uniform(-NIGHTLY_JITTER_S, NIGHTLY_JITTER_S, size=len(PIPELINES))
        yield from sorted((day * DAY_S + NIGHTLY_FIRST_S + i * NIGHTLY_SPACING_S
                           + float(jitter[i]), i) for i in range(len(PIPELINES)))
        day += 1


def _adhoc_pipelines(rng: np.random.Generator) -> Iterator[tuple[float, int]]:
    """(start, template index) of the ad-hoc runs: Poisson, a uniform template."""
    t = 0.0
    while True:
        t += float(rng.exponential(DAY_S / ADHOC_PIPELINES_PER_DAY))
        yield t, int(rng.integers(len(PIPELINES)))


def _independent(rng: np.random.Generator, rate: float, chunk: int = 1024
                 ) -> Iterator[tuple[float, _Draw]]:
    """(submit, draw) of the independent jobs: Poisson arrivals from t=0, drawn in
    chunks (the same ``chunk`` always gives the same stream)."""
    t, first = 0.0, True
    while True:
        gaps = rng.exponential(1.0 / rate, size=chunk)
        is_svc = rng.random(chunk) < PHILLY_INFERENCE_SHARE
        gpus = _choice(rng, PHILLY_GPU_MIX, chunk)
        short = rng.random(chunk) < PHILLY_SHORT_P
        lo = np.where(short, PHILLY_SHORT_LOG10_MIN[0], PHILLY_LONG_LOG10_MIN[0])
        hi = np.where(short, PHILLY_SHORT_LOG10_MIN[1], PHILLY_LONG_LOG10_MIN[1])
        train_dur = 60.0 * 10 ** rng.uniform(lo, hi)
        milli = rng.choice(INFERENCE_MILLI, size=chunk)
        svc_dur = rng.lognormal(math.log(SERVICE_MEDIAN_S), SERVICE_SIGMA, size=chunk)
        for i in range(chunk):
            t = t if first else t + float(gaps[i])
            first = False
            if is_svc[i]:
                m = int(milli[i])
                yield t, (1, m, (), INFERENCE, float(svc_dur[i]), _cpu_for(m / WHOLE_GPU))
            else:
                g = int(gpus[i])
                yield t, (g, WHOLE_GPU, (), TRAINING, float(train_dur[i]), _cpu_for(g))


def _cpu_for(gpus: float) -> int:
    return max(1000, round(CPU_PER_GPU_MILLI * gpus))


def _run(k: int, t: PipelineTemplate, start: float, rng: np.random.Generator) -> list[Job]:
    """The jobs of pipeline run ``pK`` of template ``t``, all submitted at ``start``."""
    wf = f"p{k}"

    def job(stage: str, dur: float, group: str, **kw) -> Job:
        cpu = kw.pop("cpu_milli")
        return Job(job_id=f"{wf}-{stage}", submit_time=start, duration=dur, cpu_milli=cpu,
                   memory_mib=cpu * MEMORY_PER_CORE_MIB // 1000, group=f"{t.name}/{group}",
                   workflow_id=wf, **kw)

    prep = rng.lognormal(math.log(t.prepare_median_s), PREPARE_SIGMA, size=len(t.prepare))
    train = float(rng.lognormal(math.log(t.train_median_s), TRAIN_SIGMA))
    evaluate = float(rng.lognormal(math.log(t.eval_median_s), EVAL_SIGMA))
    serve = float(rng.lognormal(math.log(t.serve_median_s), SERVE_SIGMA))  # replicas alike
    jobs = [job(name, float(d), name, num_gpus=0, gpu_milli=0, qos="BE", cpu_milli=cpu)
            for (name, cpu), d in zip(t.prepare, prep, strict=True)]
    jobs.append(job("train", train, "train", num_gpus=t.train_gpus, qos="BE",
                    cpu_milli=_cpu_for(t.train_gpus),
                    depends_on=tuple(j.job_id for j in jobs)))
    jobs.append(job("evaluate", evaluate, "evaluate", num_gpus=1, qos="BE",
                    cpu_milli=_cpu_for(1), depends_on=(f"{wf}-train",)))
    jobs += [job(f"serve-{r}", serve, "serve", num_gpus=1, gpu_milli=t.serve_milli,
                 kind=INFERENCE, qos="LS", slo_s=INFERENCE_SLO_S,
                 cpu_milli=_cpu_for(t.serve_milli / WHOLE_GPU),
                 depends_on=(f"{wf}-evaluate",))
             for r in range(t.replicas)]
    return jobs


def _ml_pipelines(n: int, seed: int) -> tuple[list[Job], dict]:
    """At least ``n`` jobs of ml-pipelines in time order, whole pipelines."""
    night_rng, adhoc_rng, stage_rng, indep_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    rate = independent_rate()
    units = heapq.merge(((t, "nightly", i) for t, i in _nightly(night_rng)),
                        ((t, "adhoc", i) for t, i in _adhoc_pipelines(adhoc_rng)),
                        ((t, "job", d) for t, d in _independent(indep_rng, rate)),
                        key=lambda u: u[0])
    jobs: list[Job] = []
    runs = {"nightly": 0, "adhoc": 0}
    independent = 0
    for t, what, x in units:
        if len(jobs) >= n:
            break
        if what == "job":
            g, m, types, kind, dur, cpu = x
            prefix = "service" if kind == INFERENCE else "adhoc"
            jobs.append(Job(job_id=f"{prefix}-{independent:05d}", submit_time=t, duration=dur,
                            num_gpus=g, gpu_milli=m, gpu_types=types, kind=kind,
                            qos="LS" if kind == INFERENCE else "BE", cpu_milli=cpu,
                            memory_mib=cpu * MEMORY_PER_CORE_MIB // 1000,
                            slo_s=INFERENCE_SLO_S if kind == INFERENCE else None))
            independent += 1
        else:
            jobs += _run(runs["nightly"] + runs["adhoc"], PIPELINES[x], t, stage_rng)
            runs[what] += 1
    per_day = pipelines_gpu_seconds_per_day()
    notes = {"pipeline_templates": ", ".join(p.name for p in PIPELINES),
             "nightly_runs": runs["nightly"], "adhoc_runs": runs["adhoc"],
             "independent_jobs": independent,
             "expected_pipeline_gpu_hours_per_day": round(per_day / 3600, 1),
             "expected_pipeline_load_share": round(
                 per_day / DAY_S / (TARGET_LOAD * CLUSTER_GPUS), 3),
             "expected_gpu_seconds_per_independent_job":
                 round(independent_gpu_seconds_per_job(), 1),
             "arrival_rate_per_hour": round(rate * 3600, 3)}
    return jobs, notes


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
    if base == "ml-pipelines":
        jobs, notes = _ml_pipelines(n, opts.seed)
        workflow.check(jobs, origin=f"builtin:{path}")  # by construction; cheap
        summary = ImportSummary()
        summary.notes.update({"generated": base, "seed": opts.seed,
                              "target_load": TARGET_LOAD, "cluster_gpus": CLUSTER_GPUS,
                              **notes})
        return finish(jobs, f"builtin:{path}", path, summary)
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
