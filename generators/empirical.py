"""``empirical``: a Gaussian copula over the empirical marginals, in numpy and scipy.

The permissive fallback when SDV is not installed. Each column is mapped to normal
scores through its own empirical distribution (categories by their frequency intervals,
with a uniform jitter inside the interval; numbers by rank); the dependence between
columns is the correlation of those scores. Sampling draws correlated normals and maps
them back through each column's empirical quantiles, so every marginal (the tails of
durations included, up to the largest value seen) is the real one and only the joint
structure is approximated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from .table import CATEGORICAL

MAX_QUANTILES = 20_000  # stored quantiles per numeric column (all values below this)


class EmpiricalCopula:
    name = "empirical"

    def fit(self, df: pd.DataFrame, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        n = len(df)
        self.columns = list(df.columns)
        self.marginals: dict[str, tuple] = {}
        scores = np.empty((n, len(self.columns)))
        for k, col in enumerate(self.columns):
            if col in CATEGORICAL:
                values = df[col].astype(str).to_numpy()
                cats, counts = np.unique(values, return_counts=True)
                order = np.argsort(-counts, kind="stable")
                cats, counts = cats[order], counts[order]
                hi = np.cumsum(counts) / n
                lo = hi - counts / n
                code = {c: i for i, c in enumerate(cats)}
                idx = np.fromiter((code[v] for v in values), dtype=int, count=n)
                u = lo[idx] + rng.random(n) * (hi[idx] - lo[idx])
                self.marginals[col] = ("cat", cats, hi)
            else:
                x = df[col].to_numpy(dtype=float)
                ranks = np.empty(n)
                ranks[np.lexsort((rng.random(n), x))] = np.arange(n)  # ties broken at random
                u = (ranks + 0.5) / n
                xs = np.sort(x)
                if n > MAX_QUANTILES:
                    keep = np.unique(np.r_[np.linspace(0, n - 1, MAX_QUANTILES).astype(int),
                                           np.arange(max(0, n - 200), n)])  # the tail whole
                    grid, xs = (keep + 0.5) / n, xs[keep]
                else:
                    grid = (np.arange(n) + 0.5) / n
                self.marginals[col] = ("num", grid, xs)
            scores[:, k] = ndtri(np.clip(u, 1e-9, 1 - 1e-9))
        corr = np.corrcoef(scores, rowvar=False) if n > 1 else np.eye(len(self.columns))
        corr = np.nan_to_num(corr, nan=0.0)
        np.fill_diagonal(corr, 1.0)
        w, v = np.linalg.eigh(corr)  # nearest positive definite: clip eigenvalues
        corr = (v * np.maximum(w, 1e-6)) @ v.T
        d = np.sqrt(np.diag(corr))
        self.chol = np.linalg.cholesky(corr / np.outer(d, d))

    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        u = ndtr(rng.standard_normal((n, len(self.columns))) @ self.chol.T)
        out = {}
        for k, col in enumerate(self.columns):
            m = self.marginals[col]
            if m[0] == "cat":
                _, cats, hi = m
                out[col] = cats[np.minimum(np.searchsorted(hi, u[:, k], side="right"),
                                           len(cats) - 1)]
            else:
                _, grid, xs = m
                out[col] = np.interp(u[:, k], grid, xs)
        return pd.DataFrame(out, columns=self.columns)
