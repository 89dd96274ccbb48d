"""Knobs: vary a sampled workload's shape on purpose, so that training sees a wide world.

Real training traces are heavy-tailed (a coefficient of variation, CV, of durations of
1 or more), bursty in their own way, and full of runs of similar jobs; a cluster the
agent has never seen may be none of these. ``apply_knobs(workload, knobs, rng)`` is a
pure transform of a sampled workload (all randomness from ``rng``; ``None`` leaves a
knob's property as sampled). The steps run in this order:

1. ``gpu_mix`` ``{num_gpus: probability}``: the GPU count of every training job that
   uses GPUs is drawn afresh from the mix (a job that becomes multi-GPU uses whole GPUs;
   inference and CPU-only jobs keep theirs). It changes the offered GPU time.
2. ``duration_cv``: log-durations are stretched around their median,
   ``d' = median * (d / median) ** s``, with ``s`` in [0.01, 4] found by bisection so
   that the CV comes as close to the target as it can; then one common factor restores
   the mean duration (so the load stays comparable). Durations stay within
   [min(1 s, shortest), ``MAX_DURATION_S``]; unknown and zero durations are kept.
3. ``burstiness``: the CV of the gaps between arrivals (1 = Poisson). Arrivals are drawn
   again as a gamma renewal process of shape ``1 / burstiness**2`` at the workload's mean
   rate (same span in expectation), from its first arrival, jobs kept in their order.
   The time-of-day profile of a fitted generator is not kept.
4. ``sweep_share``, ``sweep_len``: runs of similar jobs, as hyper-parameter sweeps make
   them. ``round(sweep_share * n)`` jobs become *followers* of the leader that opens their
   run: they copy its GPU count and share, GPU types, kind, QoS, CPU, memory, SLO, user
   and group, run ``leader's duration * exp(N(0, 0.2))`` and are submitted after the
   leader at exponential gaps of mean 60 s. A run holds a leader and a geometric number
   of followers (at least 1), ``sweep_len`` jobs on average (at least 2); runs sit at
   random places in the job order. The job count is kept. With ``duration_cv`` set,
   step 2 runs once more afterwards (an exponent near 1), so the CV holds with sweeps.
5. ``load_scale``: the arrival rate multiplied: every submit time's distance from the
   first divided by it (as ``autoflow generate sample --load-scale``).

``WIDE_RANGES`` and :func:`draw_knobs` give the ranges that the training source
``wide:SOURCE`` (``envs.samplers``) draws a fresh set of knobs from for every episode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from autoflow.errors import ConfigError
from autoflow.job import TRAINING, WHOLE_GPU, Job
from autoflow.limits import MAX_DURATION_S, check_flags
from autoflow.workload import Workload

CV_EXPONENTS = (0.01, 4.0)  # the range of the exponent s of the duration transform
BISECTIONS = 50
SWEEP_GAP_S = 60.0  # mean gap between the submissions of one run
SWEEP_SPREAD = 0.2  # sigma of the log-ratio of a follower's duration to its leader's
MAX_MIX_GPUS = 1024  # largest GPU count a --gpu-mix may name
MIX_TOLERANCE = 1e-6  # |sum of the mix's probabilities - 1|


@dataclass(frozen=True)
class Knobs:
    """What to change in a sampled workload (``None``: leave as sampled). Checked on
    construction against the ranges of the matching flags (``autoflow.limits``)."""

    duration_cv: float | None = None  # target CV of durations, (0.05, 10]
    burstiness: float | None = None  # CV of inter-arrival gaps, (0.05, 10]; 1 = Poisson
    sweep_share: float | None = None  # share of jobs that follow a leader, [0, 1]
    sweep_len: float = 5.0  # mean jobs per run, the leader included, [1, 1000]
    gpu_mix: Mapping[int, float] | None = field(default=None, hash=False)  # {gpus: p}
    load_scale: float | None = None  # arrival rate multiplier, (0, 1000]

    def __post_init__(self) -> None:
        check_flags(duration_cv=self.duration_cv, burstiness=self.burstiness,
                    sweep_share=self.sweep_share, sweep_len=self.sweep_len,
                    load_scale=self.load_scale)
        if self.gpu_mix is not None:
            object.__setattr__(self, "gpu_mix", check_gpu_mix(self.gpu_mix))

    def label(self) -> str:
        """A short description, e.g. ``cv=0.52,burst=1.3,sweep=0.2x4,mix=base``."""
        parts = []
        if self.duration_cv is not None:
            parts.append(f"cv={self.duration_cv:.2g}")
        if self.burstiness is not None:
            parts.append(f"burst={self.burstiness:.2g}")
        if self.sweep_share is not None:
            parts.append(f"sweep={self.sweep_share:.2g}x{self.sweep_len:.2g}")
        parts.append("mix=base" if self.gpu_mix is None else "mix=" + "/".join(
            f"{g}:{p:.2g}" for g, p in self.gpu_mix.items()))
        if self.load_scale is not None:
            parts.append(f"load={self.load_scale:.2g}")
        return ",".join(parts)


def check_gpu_mix(mix: Mapping, flag: str = "--gpu-mix") -> dict[int, float]:
    """``{num_gpus: probability}`` checked: whole GPU counts 1..MAX_MIX_GPUS, finite
    probabilities >= 0 that sum to 1 (within 1e-6). Sorted by GPU count."""
    if not isinstance(mix, Mapping) or not mix:
        raise ConfigError(f"{flag} must map GPU counts to probabilities, got {mix!r}")
    for g, p in mix.items():
        _check_entry(g, p, flag, f"{g}:{p}")
    out = {int(g): float(p) for g, p in mix.items()}
    total = sum(out.values())
    if abs(total - 1.0) > MIX_TOLERANCE:
        raise ConfigError(f"{flag}: the probabilities must sum to 1 (within "
                          f"{MIX_TOLERANCE:g}), got {total:g}")
    return dict(sorted(out.items()))


def _check_entry(g, p, flag: str, token: str) -> None:
    if isinstance(g, bool) or not isinstance(g, int | np.integer) or \
            not 1 <= g <= MAX_MIX_GPUS:
        raise ConfigError(f"{flag}: {token!r}: the GPU count must be a whole number from 1 "
                          f"to {MAX_MIX_GPUS:,}")
    if isinstance(p, bool) or not isinstance(p, int | float | np.integer | np.floating) or \
            not (math.isfinite(p) and p >= 0):
        raise ConfigError(f"{flag}: {token!r}: the probability must be a finite number >= 0")


def parse_gpu_mix(text: str, flag: str = "--gpu-mix") -> dict[int, float]:
    """``"1:0.6,2:0.1,4:0.2,8:0.1"`` -> ``{1: 0.6, 2: 0.1, 4: 0.2, 8: 0.1}``."""
    mix: dict[int, float] = {}
    for raw in text.split(","):
        token = raw.strip()
        g, sep, p = token.partition(":")
        try:
            if not sep:
                raise ValueError
            gi, pf = int(g), float(p)
        except ValueError:
            raise ConfigError(f"{flag}: {token!r} is not GPUS:PROBABILITY with a whole "
                              "number of GPUs (e.g. 1:0.6,2:0.1,4:0.2,8:0.1)") from None
        _check_entry(gi, pf, flag, token)
        if gi in mix:
            raise ConfigError(f"{flag}: {token!r}: {gi} GPUs named twice")
        mix[gi] = pf
    return check_gpu_mix(mix, flag)


def apply_knobs(workload: Workload, knobs: Knobs, rng: np.random.Generator) -> Workload:
    """A new workload: ``workload``'s jobs with ``knobs`` applied (module docstring).
    The input is not changed; its source label is kept."""
    jobs = [replace(j, extra=dict(j.extra)) for j in workload.jobs]  # in submit order
    if knobs.gpu_mix is not None:
        _mix_gpus(jobs, knobs.gpu_mix, rng)
    if knobs.duration_cv is not None:
        _shape_durations(jobs, knobs.duration_cv)
    if knobs.burstiness is not None:
        _redraw_arrivals(jobs, knobs.burstiness, rng)
    if knobs.sweep_share:
        _make_sweeps(jobs, knobs.sweep_share, knobs.sweep_len, rng)
        if knobs.duration_cv is not None:  # followers copy leaders: put the CV back
            _shape_durations(jobs, knobs.duration_cv)
    if knobs.load_scale is not None and jobs:
        t0 = jobs[0].submit_time
        for j in jobs:
            j.submit_time = t0 + (j.submit_time - t0) / knobs.load_scale
    return Workload(jobs, workload.source, workload.summary)


def _mix_gpus(jobs: list[Job], mix: Mapping[int, float], rng: np.random.Generator) -> None:
    which = [j for j in jobs if j.kind == TRAINING and j.num_gpus > 0]
    gpus, p = np.array(list(mix)), np.array(list(mix.values()))
    for j, g in zip(which, rng.choice(gpus, size=len(which), p=p / p.sum()), strict=True):
        j.num_gpus = int(g)
        if j.num_gpus > 1:
            j.gpu_milli = WHOLE_GPU


def cv(x: np.ndarray) -> float:
    """Coefficient of variation (population standard deviation / mean)."""
    m = float(np.mean(x))
    return float(np.std(x)) / m if m > 0 else 0.0


def stretch_durations(d: np.ndarray, target: float) -> np.ndarray:
    """Positive durations ``d`` stretched around their median to CV ``target`` (as near
    as the exponent range allows), mean kept (module docstring, step 2)."""
    d = np.asarray(d, dtype=float)
    if d.size < 2 or np.ptp(d) == 0:
        return d.copy()
    z = np.log(d / np.median(d))
    mean, lo_d = float(d.mean()), min(1.0, float(d.min()))

    def make(s: float) -> np.ndarray:
        y = np.exp(s * (z - z.max()))  # relative to the largest: no overflow
        return np.clip(y * (mean / y.mean()), lo_d, MAX_DURATION_S)

    lo, hi = CV_EXPONENTS
    if cv(make(lo)) >= target:
        return make(lo)
    if cv(make(hi)) <= target:
        return make(hi)
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cv(make(mid)) < target else (lo, mid)
    return make(0.5 * (lo + hi))


def _shape_durations(jobs: list[Job], target: float) -> None:
    which = [j for j in jobs if j.duration is not None and j.duration > 0]
    new = stretch_durations(np.array([j.duration for j in which]), target)
    for j, d in zip(which, new, strict=True):
        j.duration = float(d)


def _redraw_arrivals(jobs: list[Job], burstiness: float, rng: np.random.Generator) -> None:
    if len(jobs) < 2:
        return
    t0, span = jobs[0].submit_time, jobs[-1].submit_time - jobs[0].submit_time
    if span <= 0:  # all submitted at one instant: no rate to keep
        return
    shape = 1.0 / burstiness**2
    gaps = rng.gamma(shape, span / (len(jobs) - 1) / shape, size=len(jobs) - 1)
    for j, t in zip(jobs, t0 + np.r_[0.0, np.cumsum(gaps)], strict=True):
        j.submit_time = float(t)


FOLLOWED = ("num_gpus", "gpu_milli", "gpu_types", "kind", "qos", "cpu_milli", "memory_mib",
            "user", "group", "slo_s")  # what a follower copies from its leader


def sweep_runs(n: int, share: float, mean_len: float, rng: np.random.Generator
               ) -> list[tuple[int, int]]:
    """``(leader position, followers)`` of each run over ``n`` jobs: ``round(share * n)``
    followers in all (at most ``n - 1``), runs of ``mean_len`` jobs on average."""
    total = min(round(share * n), n - 1)
    if total <= 0:
        return []
    p = 1.0 / max(mean_len - 1.0, 1.0)  # followers per run: geometric, >= 1
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(int(rng.geometric(p)))
    sizes[-1] -= sum(sizes) - total
    while len(sizes) > n - total:  # not enough leaders left: fold runs into others
        k = sizes.pop()
        sizes[int(rng.integers(len(sizes)))] += k
    blocks = np.array(sizes + [0] * (n - total - len(sizes)))  # a single job: 0 followers
    blocks = blocks[rng.permutation(blocks.size)]
    starts = np.r_[0, np.cumsum(blocks + 1)[:-1]]
    return [(int(s), int(k)) for s, k in zip(starts, blocks, strict=True) if k > 0]


def _make_sweeps(jobs: list[Job], share: float, mean_len: float,
                 rng: np.random.Generator) -> None:
    for start, k in sweep_runs(len(jobs), share, mean_len, rng):
        leader = jobs[start]
        noise = np.exp(rng.normal(0.0, SWEEP_SPREAD, size=k))
        times = leader.submit_time + np.cumsum(rng.exponential(SWEEP_GAP_S, size=k))
        for f, x, t in zip(jobs[start + 1:start + 1 + k], noise, times, strict=True):
            for name in FOLLOWED:
                setattr(f, name, getattr(leader, name))
            if leader.duration is not None:
                f.duration = float(min(leader.duration * x, MAX_DURATION_S))
            f.submit_time = float(t)


# -- the ranges that ``wide:SOURCE`` draws each episode's knobs from ----------------------
WIDE_RANGES = {
    "duration_cv": (0.3, 4.0),  # log-uniform: light tails to heavier than any trace
    "burstiness": (0.5, 4.0),  # log-uniform: smoother than Poisson to very bursty
    "sweep_share": (0.0, 0.6),  # uniform
    "sweep_len": (2.0, 10.0),  # uniform
    "gpu_mix_keep": 0.5,  # probability of keeping the source's GPU mix
    "gpu_mix_counts": (1, 2, 4, 8),  # else a Dirichlet(1, 1, 1, 1) mix over these
}


def draw_knobs(rng: np.random.Generator) -> Knobs:
    """One episode's knobs, drawn from ``WIDE_RANGES``."""
    r = WIDE_RANGES

    def log_uniform(lo: float, hi: float) -> float:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    cv_, burst = log_uniform(*r["duration_cv"]), log_uniform(*r["burstiness"])
    share, length = float(rng.uniform(*r["sweep_share"])), float(rng.uniform(*r["sweep_len"]))
    mix = None
    if rng.random() >= r["gpu_mix_keep"]:
        p = rng.dirichlet(np.ones(len(r["gpu_mix_counts"])))
        p[-1] = 1.0 - p[:-1].sum()  # exactly 1 after rounding
        mix = {g: float(max(x, 0.0)) for g, x in zip(r["gpu_mix_counts"], p, strict=True)}
    return Knobs(duration_cv=cv_, burstiness=burst, sweep_share=share, sweep_len=length,
                 gpu_mix=mix)
