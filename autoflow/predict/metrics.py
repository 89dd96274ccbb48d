"""Scores of a duration predictor on decision-time examples (log scale, natural log).

* ``spearman``: rank correlation of the predicted median remaining time with the true
  remaining time (0 where either side is constant: no ranking information);
* ``mae_log``: mean ``|log predicted median - log true remaining|``;
* ``pinball``: mean pinball loss over ``QUANTILES`` of the log remaining time;
* ``n``: examples scored.
"""

from __future__ import annotations

import numpy as np

QUANTILES = (0.1, 0.5, 0.9)


def _ranks(v: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions)."""
    order = np.argsort(v, kind="mergesort")
    s = v[order]
    r = np.empty(len(v), dtype=np.float64)
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and s[j + 1] == s[i]:
            j += 1
        r[order[i:j + 1]] = 0.5 * (i + j)
        i = j + 1
    return r


def spearman(pred: np.ndarray, true: np.ndarray) -> float:
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if len(pred) < 2:
        return 0.0
    a, b = _ranks(pred), _ranks(true)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def mae_log(pred_median_log: np.ndarray, true_log: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred_median_log) - np.asarray(true_log))))


def pinball(pred_q_log: np.ndarray, true_log: np.ndarray, quantiles=QUANTILES) -> float:
    q = np.asarray(quantiles, dtype=np.float64)[None, :]
    d = np.asarray(true_log, dtype=np.float64)[:, None] - np.asarray(pred_q_log)
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


def evaluate(pred_q_log: np.ndarray, true_log: np.ndarray) -> dict:
    """The four scores (and the 80% interval's coverage) of (n, 3) log quantiles."""
    pred_q_log = np.asarray(pred_q_log, dtype=np.float64)
    true_log = np.asarray(true_log, dtype=np.float64)
    if not len(true_log):
        return {"spearman": None, "mae_log": None, "pinball": None, "n": 0,
                "coverage_80": None}
    mid = pred_q_log[:, 1]
    inside = (true_log >= pred_q_log[:, 0]) & (true_log <= pred_q_log[:, 2])
    return {"spearman": spearman(mid, true_log), "mae_log": mae_log(mid, true_log),
            "pinball": pinball(pred_q_log, true_log), "n": len(true_log),
            "coverage_80": float(inside.mean())}
