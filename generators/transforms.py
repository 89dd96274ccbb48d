"""Normal scores through a column's empirical distribution, and back.

Heavy-tailed columns (durations, CPU, memory, SLOs; already on a log scale) are mapped
to standard normal scores before a model is fitted and mapped back after sampling. The
inverse is the column's empirical quantile function (numpy's linear percentile), so a
model that gets the normal scores right reproduces the real p50/p90/p99 and never
invents values beyond the largest one seen.
"""

from __future__ import annotations

import numpy as np

from .normal import ndtr, ndtri

MAX_QUANTILES = 20_000  # stored quantiles per column (every value when fewer)
TAIL = 200  # the largest values are always stored


class NormalScores:
    def fit(self, x: np.ndarray) -> NormalScores:
        xs = np.sort(np.asarray(x, dtype=float))
        n = xs.size
        grid = np.arange(n) / max(n - 1, 1)
        if n > MAX_QUANTILES:
            keep = np.unique(np.r_[np.linspace(0, n - 1, MAX_QUANTILES).astype(int),
                                   np.arange(max(0, n - TAIL), n)])
            grid, xs = grid[keep], xs[keep]
        self.grid, self.xs = grid, xs
        return self

    def forward(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Normal scores; values tied in the data get the middle of their block, or a
        uniform draw inside it with ``rng``."""
        x = np.asarray(x, dtype=float)
        lo = np.interp(np.searchsorted(self.xs, x, side="left"), np.arange(self.xs.size),
                       self.grid, right=1.0)
        hi = np.interp(np.searchsorted(self.xs, x, side="right") - 1, np.arange(self.xs.size),
                       self.grid, left=0.0)
        hi = np.maximum(hi, lo)
        w = rng.random(x.size) if rng is not None else 0.5
        u = lo + w * (hi - lo)
        return ndtri(np.clip(u, 1e-6, 1 - 1e-6))

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.interp(ndtr(np.asarray(z, dtype=float)), self.grid, self.xs)
