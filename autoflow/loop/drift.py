"""Drift detection over windows of job outcomes (issue 20, the self-optimizing loop).

A *reference* window of jobs is compared with a *current* one, feature by feature:

* ``duration``: log10 of each known duration (a duration under 1 s counts as 1 s; a job
  whose duration is None is counted in ``unknown_duration`` and left out);
* ``gpu_mix``: each job's GPU request as a category (:func:`gpu_class`);
* ``arrival``: the gaps in seconds between consecutive submit times inside the window
  (the arrival rate, jobs per hour, is reported in ``DriftReport.windows``);
* ``load``: the offered load, ``sum(duration * gpu_demand) / (capacity_gpus * span)``
  over the jobs with a known duration.

The tests and thresholds follow Evidently's default data-drift algorithm (docs-old.
evidentlyai.com/reference/data-drift-algorithm, release notes of v0.1.50: "For small data
with <= 1000 observations in the reference dataset ... larger data with > 1000"):

============================  ===================================  ======================
reference rows                numeric feature                      categorical feature
============================  ===================================  ======================
``<= size_switch`` (1000)     two-sample Kolmogorov-Smirnov,       chi-squared, drift if
                              drift if p < ``p_value`` (0.05)      p < 0.05; with two
                                                                   categories a two-
                                                                   proportion Z-test
``> size_switch``             Wasserstein distance / std of the    Jensen-Shannon distance
                              reference, drift if >= ``distance``  (base 2, in [0, 1]),
                              (0.1)                                drift if >= 0.1
============================  ===================================  ======================

Where this module departs from Evidently, and why:

* The chi-squared test is the two-sample test of homogeneity (a 2 x k table over the
  union of both windows' categories, expected counts from the pooled margins, no Yates
  correction), not Evidently's goodness of fit against the reference's counts. The
  goodness-of-fit form treats the reference as exact: with windows of equal size its
  false-positive rate at a nominal 5 % is several times higher. The pooled form needs no
  smoothing (a category of the union has a positive pooled count), and with two
  categories its statistic is the square of the Z-test's.
* The Wasserstein distance is divided by ``max(std(reference), 0.001)`` (Evidently's
  floor): a constant reference does not divide by zero, two equal constants give 0.
* Every p-value and distance is computed here with numpy and ``math``, without scipy
  (which is not among autoflow's dependencies): the KS p-value is exact (lattice paths,
  as ``scipy.stats.ks_2samp``'s ``exact`` method) while both samples have at most 10,000
  values, and Kolmogorov's limit with Stephens' correction above; the chi-squared
  p-value is the closed-form survival function for an integer number of degrees of
  freedom. Where scipy is installed the tests check these against it.
* Drift is ``p < p_value`` for every test (Evidently's KS uses ``<=``).
* A feature with fewer than ``min_rows`` values in either window is ``"insufficient"``,
  never drift; ``drift_detected`` needs ``min_drifted`` drifted features (a count, where
  Evidently's dataset drift is a share of columns).

The load is a ratio, not a distribution: it drifts when the current window's offered load
is more than ``load_ratio`` times the reference's, or less than ``1 / load_ratio`` of it.
The ratio has no noise model, and heavy-tailed durations make it noisy: for two windows
from one distribution (Poisson arrivals, log-normal durations with sigma 1.5 in natural
log), it falls outside [0.8, 1.25] in about a third of draws at 400 jobs a window and
about 8 % at 2,000 (with sigma 0.5: 4 % at 400, none at 2,000). Where durations are
heavy-tailed, use windows of thousands of jobs or a larger ``load_ratio``.
``performance_signal`` is the other signal of the loop: the champion's average JCT on the
recent window against the best heuristic's.

Durations are known only for completed jobs; a job submitted near the end of the current
window that is still running is missing from the callers' completed set, which biases the
window's durations short. Choosing windows that have had time to finish is the caller's
concern.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..job import WHOLE_GPU, Job
from ..jsonsafe import finite

NUMERIC_FEATURES = ("duration", "arrival")
FEATURES = ("duration", "gpu_mix", "arrival", "load")
STD_FLOOR = 0.001  # Evidently's floor for the Wasserstein norm (a constant reference)
MIN_DURATION_S = 1.0  # durations below this count as this long on the log10 scale
KS_EXACT_MAX_N = 10_000  # exact KS p-values while both samples are at most this large
GPU_CLASSES = ("0", "share", "1", "2", "3-4", "5-8", "9+")


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds of the drift tests (defaults: Evidently's, see the module docstring)."""

    min_rows: int = 50  # fewer values than this in either window: "insufficient", no drift
    size_switch: int = 1000  # reference rows up to which KS / chi-squared run, then distances
    p_value: float = 0.05  # KS, chi-squared and Z-test: drift if p < this
    distance: float = 0.1  # normed Wasserstein and Jensen-Shannon: drift if >= this
    load_ratio: float = 1.25  # load drifts if current / reference > this or < 1 / this
    performance_margin: float = 0.05  # champion losing if its JCT > best heuristic's * (1 + this)
    min_drifted: int = 1  # drifted features (of the four) that make drift_detected

    def __post_init__(self) -> None:
        _int_at_least("min_rows", self.min_rows, 2)
        _int_at_least("size_switch", self.size_switch, 1)
        _int_at_least("min_drifted", self.min_drifted, 1)
        if self.min_drifted > len(FEATURES):
            raise ConfigError(f"drift min_drifted must be <= {len(FEATURES)} (the features "
                              f"tested), got {self.min_drifted}")
        _float_in("p_value", self.p_value, lambda v: 0.0 < v < 1.0, "in (0, 1)")
        _float_in("distance", self.distance, lambda v: v > 0.0, "> 0")
        _float_in("load_ratio", self.load_ratio, lambda v: v > 1.0, "> 1")
        _float_in("performance_margin", self.performance_margin, lambda v: v >= 0.0, ">= 0")


def _int_at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"drift {name} must be an integer >= {low}, got {value!r}")


def _float_in(name: str, value: Any, ok, what: str) -> None:
    if (isinstance(value, bool) or not isinstance(value, int | float | np.number)
            or not math.isfinite(value) or not ok(value)):
        raise ConfigError(f"drift {name} must be a finite number {what}, got {value!r}")


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's test: ``statistic`` is the p-value's test statistic (KS D, chi-squared,
    Z) or the distance / ratio itself; ``threshold`` is what it was compared with (the
    p-value level for the tests)."""

    feature: str
    method: str  # "ks", "chi2", "z", "wasserstein", "jensenshannon" or "ratio"
    statistic: float
    threshold: float
    p_value: float | None
    drift: bool
    status: str  # "drift", "stable" or "insufficient"
    n_ref: int
    n_cur: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: a non-finite float (an insufficient test's statistic) is None."""
        return finite({"feature": self.feature, "method": self.method,
                       "statistic": float(self.statistic), "threshold": float(self.threshold),
                       "p_value": None if self.p_value is None else float(self.p_value),
                       "drift": bool(self.drift), "status": self.status,
                       "n_ref": int(self.n_ref), "n_cur": int(self.n_cur)})


@dataclass(frozen=True)
class DriftReport:
    """The four features' tests and the verdict; ``windows`` holds each window's counts,
    arrival rate (jobs per hour) and offered load."""

    features: list[FeatureDrift]
    drift_detected: bool
    drifted: list[str]
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return finite({"drift_detected": self.drift_detected, "drifted": list(self.drifted),
                       "features": [f.to_dict() for f in self.features],
                       "windows": self.windows})


# ---- statistics (numpy only) ---------------------------------------------------------------

def _numeric(values: Iterable[float], what: str) -> np.ndarray:
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    a = a.ravel()
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: values must be finite")
    return a


def ks_statistic(ref: np.ndarray, cur: np.ndarray) -> tuple[float, int]:
    """The two-sample KS statistic D and ``D * n_ref * n_cur`` as an exact integer."""
    a, b = np.sort(ref), np.sort(cur)
    n, m = len(a), len(b)
    grid = np.concatenate([a, b])
    ca = np.searchsorted(a, grid, side="right").astype(np.int64)
    cb = np.searchsorted(b, grid, side="right").astype(np.int64)
    d_int = int(np.max(np.abs(ca * m - cb * n)))
    return d_int / (n * m), d_int


def _ks_exact_p(n: int, m: int, d_int: int) -> float:
    """P(D >= d) for samples of n and m distinct values from one distribution: one minus
    the probability that a uniformly random lattice path from (0, 0) to (n, m) keeps
    ``|i*m - j*n| < d_int``, swept one anti-diagonal at a time."""
    if d_int <= 0:
        return 1.0
    if n > m:
        n, m = m, n
    i = np.arange(n + 1, dtype=np.int64)
    prob = np.zeros(n + 1)
    prob[0] = 1.0
    for k in range(1, n + m + 1):
        left = n + m - (k - 1)  # values not yet drawn before this step
        step_i = np.zeros(n + 1)
        step_i[1:] = prob[:-1] * (n - i[:-1]) / left
        step_j = prob * np.maximum(m - ((k - 1) - i), 0) / left
        prob = step_i + step_j
        j = k - i
        prob[(j < 0) | (j > m) | (np.abs(i * m - j * n) >= d_int)] = 0.0
    return float(min(max(1.0 - prob[n], 0.0), 1.0))


def _kolmogorov_sf(lam: float) -> float:
    """Kolmogorov's limiting distribution: P(K > lam)."""
    if lam <= 0.0:
        return 1.0
    if lam < 1.0:  # the theta-function form converges fast for small lam
        s = sum(math.exp(-((2 * k - 1) ** 2) * math.pi ** 2 / (8 * lam * lam))
                for k in range(1, 20))
        return min(max(1.0 - math.sqrt(2 * math.pi) / lam * s, 0.0), 1.0)
    s = sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 100))
    return min(max(2.0 * s, 0.0), 1.0)


def ks_p_value(n: int, m: int, d_int: int) -> float:
    """Two-sided p-value of the two-sample KS test (see the module docstring)."""
    if max(n, m) <= KS_EXACT_MAX_N:
        return _ks_exact_p(n, m, d_int)
    en = math.sqrt(n * m / (n + m))
    d = d_int / (n * m)
    return _kolmogorov_sf((en + 0.12 + 0.11 / en) * d)


def wasserstein(ref: np.ndarray, cur: np.ndarray) -> float:
    """First Wasserstein distance of two 1-D samples: the area between their ECDFs."""
    a, b = np.sort(ref), np.sort(cur)
    grid = np.sort(np.concatenate([a, b]))
    widths = np.diff(grid)
    fa = np.searchsorted(a, grid[:-1], side="right") / len(a)
    fb = np.searchsorted(b, grid[:-1], side="right") / len(b)
    return float(np.sum(np.abs(fa - fb) * widths))


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for a chi-squared X with an integer number of degrees of freedom."""
    if dof < 1:
        raise ValueError(f"chi-squared needs dof >= 1, got {dof}")
    if x <= 0.0:
        return 1.0
    h = x / 2.0
    if dof % 2 == 0:  # exp(-h) * sum_{i < dof/2} h^i / i!
        terms = [-h + i * math.log(h) - math.lgamma(i + 1) for i in range(dof // 2)]
        base = 0.0
    else:  # erfc(sqrt(h)) + exp(-h) * sum_{i=1}^{(dof-1)/2} h^(i-1/2) / Gamma(i + 1/2)
        terms = [-h + (i - 0.5) * math.log(h) - math.lgamma(i + 0.5)
                 for i in range(1, (dof - 1) // 2 + 1)]
        base = math.erfc(math.sqrt(h))
    return float(min(base + sum(math.exp(t) for t in terms), 1.0))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (the square root of the divergence) in base 2: in [0, 1]."""
    p = p / p.sum()
    q = q / q.sum()
    mid = (p + q) / 2.0

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / mid[nz])))

    return math.sqrt(min(max((kl(p) + kl(q)) / 2.0, 0.0), 1.0))


# ---- per-feature tests ---------------------------------------------------------------------

def _insufficient(feature: str, method: str, threshold: float, n_ref: int,
                  n_cur: int) -> FeatureDrift:
    return FeatureDrift(feature, method, math.nan, threshold, None, False, "insufficient",
                        n_ref, n_cur)


def _verdict(feature: str, method: str, statistic: float, threshold: float,
             p_value: float | None, drift: bool, n_ref: int, n_cur: int) -> FeatureDrift:
    return FeatureDrift(feature, method, float(statistic), float(threshold),
                        None if p_value is None else float(p_value), bool(drift),
                        "drift" if drift else "stable", n_ref, n_cur)


def numeric_test(ref: Iterable[float], cur: Iterable[float], cfg: DriftConfig = DriftConfig(),
                 *, feature: str = "numeric") -> FeatureDrift:
    """KS (p < ``p_value``) while the reference has at most ``size_switch`` values, the
    Wasserstein distance normed by the reference's std (>= ``distance``) above."""
    a, b = _numeric(ref, f"{feature} reference"), _numeric(cur, f"{feature} current")
    n, m = len(a), len(b)
    small = n <= cfg.size_switch
    method, threshold = ("ks", cfg.p_value) if small else ("wasserstein", cfg.distance)
    if n < cfg.min_rows or m < cfg.min_rows:
        return _insufficient(feature, method, threshold, n, m)
    if small:
        d, d_int = ks_statistic(a, b)
        p = ks_p_value(n, m, d_int)
        return _verdict(feature, method, d, threshold, p, p < cfg.p_value, n, m)
    dist = wasserstein(a, b) / max(float(np.std(a)), STD_FLOOR)
    return _verdict(feature, method, dist, threshold, None, dist >= cfg.distance, n, m)


def categorical_test(ref: Sequence[str], cur: Sequence[str], cfg: DriftConfig = DriftConfig(),
                     *, feature: str = "categorical") -> FeatureDrift:
    """Over the union of both windows' categories: chi-squared homogeneity (p <
    ``p_value``; a two-proportion Z-test with two categories) while the reference has at
    most ``size_switch`` values, the Jensen-Shannon distance (>= ``distance``) above."""
    ref, cur = [str(v) for v in ref], [str(v) for v in cur]
    n, m = len(ref), len(cur)
    cats = sorted(set(ref) | set(cur))
    small = n <= cfg.size_switch
    if small:
        method, threshold = ("z" if len(cats) == 2 else "chi2"), cfg.p_value
    else:
        method, threshold = "jensenshannon", cfg.distance
    if n < cfg.min_rows or m < cfg.min_rows:
        return _insufficient(feature, method, threshold, n, m)
    index = {c: k for k, c in enumerate(cats)}
    obs = np.zeros((2, len(cats)))
    np.add.at(obs[0], [index[c] for c in ref], 1.0)
    np.add.at(obs[1], [index[c] for c in cur], 1.0)
    if not small:
        dist = jensen_shannon(obs[0], obs[1])
        return _verdict(feature, method, dist, threshold, None, dist >= cfg.distance, n, m)
    if len(cats) == 1:  # one category in both windows: nothing differs
        return _verdict(feature, method, 0.0, threshold, 1.0, False, n, m)
    if method == "z":  # share of the first category, pooled standard error
        p1, p2 = obs[0, 0] / n, obs[1, 0] / m
        pooled = (obs[0, 0] + obs[1, 0]) / (n + m)
        z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
        p = math.erfc(abs(z) / math.sqrt(2))
        return _verdict(feature, method, z, threshold, p, p < cfg.p_value, n, m)
    expected = obs.sum(axis=1, keepdims=True) * obs.sum(axis=0, keepdims=True) / (n + m)
    chi2 = float(np.sum((obs - expected) ** 2 / expected))
    p = chi2_sf(chi2, len(cats) - 1)
    return _verdict(feature, method, chi2, threshold, p, p < cfg.p_value, n, m)


def load_test(ref_load: float, cur_load: float, n_ref: int, n_cur: int,
              cfg: DriftConfig = DriftConfig()) -> FeatureDrift:
    """``cur / ref`` against ``load_ratio`` both ways; a zero reference load drifts unless
    the current one is zero too. ``n_ref`` / ``n_cur``: the jobs the loads were summed
    over; fewer than ``min_rows`` in either is insufficient."""
    if n_ref < cfg.min_rows or n_cur < cfg.min_rows:
        return _insufficient("load", "ratio", cfg.load_ratio, n_ref, n_cur)
    if ref_load > 0:
        ratio = cur_load / ref_load
    else:
        ratio = 1.0 if cur_load == 0 else math.inf
    drift = ratio > cfg.load_ratio or ratio < 1.0 / cfg.load_ratio
    return _verdict("load", "ratio", ratio, cfg.load_ratio, None, drift, n_ref, n_cur)


# ---- windows of jobs -----------------------------------------------------------------------

def gpu_class(job: Job) -> str:
    """A job's GPU request as a category: "0" (no GPU), "share" (a fraction of one GPU),
    "1", "2", "3-4", "5-8" or "9+" (powers of two with what lies between folded up)."""
    g = job.num_gpus
    if g == 0:
        return "0"
    if g == 1:
        return "share" if job.gpu_milli < WHOLE_GPU else "1"
    if g == 2:
        return "2"
    if g <= 4:
        return "3-4"
    return "5-8" if g <= 8 else "9+"


def window_stats(jobs: Iterable[Job], start: float, end: float,
                 capacity_gpus: float) -> dict[str, Any]:
    """What the tests read from the jobs submitted in ``[start, end)``.

    Returns ``jobs`` (count), ``with_duration``, ``unknown_duration``, ``log10_duration``
    (array), ``gpu_class`` (list of :func:`gpu_class`), ``gaps`` (array of seconds between
    consecutive submit times), ``arrival_rate_per_hour``, ``offered_load`` and ``span_s``.
    """
    if not (math.isfinite(start) and math.isfinite(end) and end > start):
        raise ConfigError(f"drift window must have finite start < end, got [{start}, {end})")
    if not (math.isfinite(capacity_gpus) and capacity_gpus > 0):
        raise ConfigError(f"drift capacity_gpus must be a finite number > 0, got "
                          f"{capacity_gpus!r}")
    inside = sorted((j for j in jobs if start <= j.submit_time < end),
                    key=lambda j: j.submit_time)
    known = [j for j in inside if j.duration is not None]
    durations = np.array([j.duration for j in known], dtype=float)
    demand = np.array([j.gpu_demand for j in known], dtype=float)
    span = end - start
    work = float(np.sum(durations * demand))
    submits = np.array([j.submit_time for j in inside], dtype=float)
    return {
        "jobs": len(inside),
        "with_duration": len(known),
        "unknown_duration": len(inside) - len(known),
        "log10_duration": np.log10(np.maximum(durations, MIN_DURATION_S)),
        "gpu_class": [gpu_class(j) for j in inside],
        "gaps": np.diff(submits) if len(inside) > 1 else np.zeros(0),
        "arrival_rate_per_hour": len(inside) / span * 3600.0,
        "offered_load": work / (capacity_gpus * span),
        "span_s": span,
    }


def _summary(stats: dict[str, Any]) -> dict[str, Any]:
    keys = ("jobs", "with_duration", "unknown_duration", "arrival_rate_per_hour",
            "offered_load", "span_s")
    return {k: stats[k] for k in keys}


def detect(ref_jobs: Iterable[Job], cur_jobs: Iterable[Job], *, ref_span: tuple[float, float],
           cur_span: tuple[float, float], capacity_gpus: float,
           cfg: DriftConfig = DriftConfig()) -> DriftReport:
    """Tests ``duration``, ``gpu_mix``, ``arrival`` and ``load`` of the current window
    (jobs submitted in ``cur_span``) against the reference (``ref_span``)."""
    ref = window_stats(ref_jobs, *ref_span, capacity_gpus)
    cur = window_stats(cur_jobs, *cur_span, capacity_gpus)
    features = [
        numeric_test(ref["log10_duration"], cur["log10_duration"], cfg, feature="duration"),
        categorical_test(ref["gpu_class"], cur["gpu_class"], cfg, feature="gpu_mix"),
        numeric_test(ref["gaps"], cur["gaps"], cfg, feature="arrival"),
        load_test(ref["offered_load"], cur["offered_load"], ref["with_duration"],
                  cur["with_duration"], cfg),
    ]
    drifted = [f.feature for f in features if f.status == "drift"]
    return DriftReport(features=features, drift_detected=len(drifted) >= cfg.min_drifted,
                       drifted=drifted,
                       windows={"reference": _summary(ref), "current": _summary(cur)})


def performance_signal(live_avg_jct: float, heuristics: dict[str, float],
                       cfg: DriftConfig = DriftConfig()) -> dict[str, Any]:
    """Whether the champion is losing to a heuristic on the recent window: its average JCT
    is above the best heuristic's times ``1 + performance_margin``."""
    if (isinstance(live_avg_jct, bool) or not isinstance(live_avg_jct, int | float | np.number)
            or not math.isfinite(live_avg_jct) or live_avg_jct <= 0):
        raise ConfigError(f"performance signal: the champion's average JCT must be a finite "
                          f"number > 0, got {live_avg_jct!r}")
    if not heuristics:
        raise ConfigError("performance signal: no heuristic to compare the champion with")
    for name, jct in heuristics.items():
        if (isinstance(jct, bool) or not isinstance(jct, int | float | np.number)
                or not math.isfinite(jct) or jct <= 0):
            raise ConfigError(f"performance signal: heuristic {name!r}'s average JCT must be "
                              f"a finite number > 0, got {jct!r}")
    best, best_jct = min(sorted(heuristics.items()), key=lambda kv: kv[1])
    return {"losing": bool(live_avg_jct > best_jct * (1 + cfg.performance_margin)),
            "best": best, "ratio": float(live_avg_jct / best_jct),
            "margin": cfg.performance_margin, "live_avg_jct": float(live_avg_jct),
            "best_avg_jct": float(best_jct)}
