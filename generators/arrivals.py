"""The arrival model: when jobs are submitted, apart from what they are.

Fitted to a trace's submit times: a rate for each hour of the week (hour of the day when
the trace covers less than a week), and the *rescaled gaps* between arrivals — each gap
measured in expected arrivals under that rate, so that the busy hours' short gaps and the
quiet hours' long ones become comparable. Sampling replays those rescaled gaps in blocks
of consecutive gaps (a block bootstrap keeps the bursts: a sweep of jobs submitted in
the same second stays together) and maps them back through the rate profile. Scaling the
load multiplies the rate; the job mix is untouched.
"""

from __future__ import annotations

import numpy as np

from autoflow.errors import ConfigError

HOUR = 3600.0
DAY, WEEK = 24 * HOUR, 7 * 24 * HOUR
BLOCK = 32  # consecutive gaps replayed together
MAX_GAPS = 200_000  # stored rescaled gaps (the latest ones beyond this are dropped)


class ArrivalModel:
    def fit(self, submit_times: np.ndarray) -> ArrivalModel:
        t = np.sort(np.asarray(submit_times, dtype=float))
        if t.size < 2:
            raise ConfigError(f"arrival model: need at least 2 submit times, got {t.size}")
        self.origin = float(t[0])
        span = float(t[-1] - t[0])
        if span <= 0:
            raise ConfigError("arrival model: every job was submitted at the same instant")
        self.period = WEEK if span >= WEEK else DAY
        self.bins = int(self.period // HOUR)
        # exposure: seconds of trace time that fell in each hour bin
        edges = np.arange(np.floor(t[0] / HOUR) * HOUR, t[-1] + HOUR, HOUR)
        lo, hi = np.maximum(edges[:-1], t[0]), np.minimum(edges[1:], t[-1])
        exposure = np.bincount(self._bin(edges[:-1]), weights=np.maximum(hi - lo, 0.0),
                               minlength=self.bins)
        counts = np.bincount(self._bin(t), minlength=self.bins).astype(float)
        mean_rate = (t.size - 1) / span
        rate = np.where(exposure > 0, counts / np.maximum(exposure, 1e-9), mean_rate)
        self.rate = np.maximum(rate, 1e-3 * mean_rate)  # per second, by hour bin
        self.cum = np.r_[0.0, np.cumsum(self.rate * HOUR)]  # expected arrivals, one period
        gaps = np.diff(self._Lambda(t))
        self.gaps = gaps[-MAX_GAPS:].astype(np.float64)
        self.n_fitted = int(t.size)
        return self

    def _bin(self, t: np.ndarray) -> np.ndarray:
        return (np.mod(t, self.period) // HOUR).astype(int) % self.bins

    def _Lambda(self, t: np.ndarray) -> np.ndarray:
        """Expected arrivals from time 0 of the periodic profile up to ``t``."""
        periods, rem = np.divmod(np.asarray(t, dtype=float), self.period)
        return periods * self.cum[-1] + np.interp(rem, np.arange(self.bins + 1) * HOUR, self.cum)

    def _inverse(self, v: np.ndarray) -> np.ndarray:
        periods, rem = np.divmod(v, self.cum[-1])
        return periods * self.period + np.interp(rem, self.cum, np.arange(self.bins + 1) * HOUR)

    def sample(self, n: int, rng: np.random.Generator, load_scale: float = 1.0) -> np.ndarray:
        """``n`` submit times (seconds, on the trace's clock, from its first arrival)."""
        if n < 1:
            raise ConfigError(f"number of jobs must be at least 1, got {n}")
        if not load_scale > 0:
            raise ConfigError(f"load scale must be positive, got {load_scale}")
        g = self.gaps
        blocks = -(-(n - 1) // BLOCK) if n > 1 else 0
        starts = rng.integers(0, max(1, g.size - BLOCK + 1), size=blocks)
        picked = (starts[:, None] + np.arange(BLOCK)[None, :]).ravel()[: n - 1]
        gaps = g[np.minimum(picked, g.size - 1)] / load_scale
        v = self._Lambda(np.array([self.origin]))[0] + np.r_[0.0, np.cumsum(gaps)]
        return self._inverse(v)

    def hourly_profile(self) -> np.ndarray:
        """Share of arrivals by hour of day implied by the rate profile."""
        by_hour = self.rate.reshape(-1, 24).sum(axis=0)
        return by_hour / by_hour.sum()


def restore(meta: dict, rate: np.ndarray, cum: np.ndarray, gaps: np.ndarray,
            what: str) -> ArrivalModel:
    """An arrival model from its saved parts (``meta``: origin, period, bins, n_fitted;
    the arrays already checked to be finite numbers), each checked before use; ``what``
    names the file and the section in the ConfigError."""
    arr = ArrivalModel()
    arr.origin, arr.period = float(meta["origin"]), float(meta["period"])
    arr.bins, arr.n_fitted = int(meta["bins"]), int(meta["n_fitted"])
    if arr.period not in (DAY, WEEK) or arr.bins != int(arr.period // HOUR) or \
            not np.isfinite(arr.origin):
        raise ConfigError(f"{what}: period must be a day or a week of hour bins")
    arr.rate, arr.cum, arr.gaps = rate, cum, gaps
    if arr.rate.shape != (arr.bins,) or arr.cum.shape != (arr.bins + 1,) or \
            not (arr.rate > 0).all() or (np.diff(arr.cum) <= 0).any() or \
            arr.gaps.size < 1 or (arr.gaps < 0).any():
        raise ConfigError(f"{what}: rate, cumulative rate or gaps malformed")
    return arr
