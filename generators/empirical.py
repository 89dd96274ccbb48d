"""``empirical``: a Gaussian copula over the empirical marginals, in numpy alone.

The permissive fallback when SDV is not installed; it needs only the base install (the
normal CDF and its inverse are ``normal.ndtr`` and ``normal.ndtri``). Each column is
mapped to normal scores through its own empirical distribution (categories by their
frequency intervals, with a uniform jitter inside the interval; numbers by
``transforms.NormalScores``); the dependence between columns is the correlation of those scores. Sampling draws correlated
normals and maps them back through each column's empirical quantiles, so every marginal
(the tails of durations included) is the real one and only the joint structure is
approximated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .normal import ndtr, ndtri
from .table import CATEGORICAL
from .transforms import NormalScores


class EmpiricalCopula:
    name = "empirical"

    def fit(self, df: pd.DataFrame, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        n = len(df)
        self.columns = list(df.columns)
        self.marginals: dict[str, object] = {}
        scores = np.empty((n, len(self.columns)))
        for k, col in enumerate(self.columns):
            if col in CATEGORICAL:
                values = df[col].astype(str).to_numpy()
                cats, idx, counts = np.unique(values, return_inverse=True, return_counts=True)
                order = np.argsort(-counts, kind="stable")  # most frequent first
                rank = np.empty_like(order)
                rank[order] = np.arange(order.size)
                hi = np.cumsum(counts[order]) / n
                lo = hi - counts[order] / n
                r = rank[idx]
                u = lo[r] + rng.random(n) * (hi[r] - lo[r])
                scores[:, k] = ndtri(np.clip(u, 1e-9, 1 - 1e-9))
                self.marginals[col] = (cats[order], hi)
            else:
                ns = NormalScores().fit(df[col].to_numpy(dtype=float))
                scores[:, k] = ns.forward(df[col].to_numpy(dtype=float), rng)
                self.marginals[col] = ns
        corr = np.corrcoef(scores, rowvar=False) if n > 1 else np.eye(len(self.columns))
        corr = np.nan_to_num(np.atleast_2d(corr), nan=0.0)
        np.fill_diagonal(corr, 1.0)
        w, v = np.linalg.eigh(corr)  # nearest positive definite: clip the eigenvalues
        corr = (v * np.maximum(w, 1e-6)) @ v.T
        d = np.sqrt(np.diag(corr))
        self.chol = np.linalg.cholesky(corr / np.outer(d, d))

    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, len(self.columns))) @ self.chol.T
        out = {}
        for k, col in enumerate(self.columns):
            m = self.marginals[col]
            if isinstance(m, NormalScores):
                out[col] = m.inverse(z[:, k])
            else:
                cats, hi = m
                out[col] = cats[np.minimum(np.searchsorted(hi, ndtr(z[:, k]), side="right"),
                                           len(cats) - 1)]
        return pd.DataFrame(out, columns=self.columns)
