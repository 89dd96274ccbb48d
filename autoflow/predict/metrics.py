"""Scores of a duration predictor on decision-time examples (log scale, natural log).

* ``spearman``: rank correlation of the predicted median remaining time with the true
  remaining time (0 where either side is constant: no ranking information);
* ``mae_log``: mean ``|log predicted median - log true remaining|``;
* ``pinball``: mean pinball loss over ``QUANTILES`` of the log remaining time;
* ``n``: examples scored;
* ``queue_concordance`` (where submit times are given): over pairs of jobs submitted
  within ``WINDOW_S`` of each other, both at attained 0 — jobs that wait for the same
  GPUs, whose order is what sjf-like policies need — the share whose predicted order
  matches their true order (ties in the prediction count half; 0.5 is a coin). A global
  Spearman mostly measures how durations drift over weeks, which a queue never sees
  (``benchmarks/experiments/sjf_estimators.py``).
"""

from __future__ import annotations

import numpy as np

QUANTILES = (0.1, 0.5, 0.9)
WINDOW_S = 3600.0  # jobs submitted this close together count as waiting together
MAX_OFFSET = 5000  # pairs are looked for at most this many submissions apart


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


def queue_concordance(pred: np.ndarray, true: np.ndarray, submit: np.ndarray,
                      window_s: float = WINDOW_S) -> float | None:
    """Share of pairs submitted within ``window_s`` of each other (and with different
    true values) that the prediction orders as the truth does; None without such pairs."""
    order = np.argsort(np.asarray(submit, dtype=np.float64), kind="mergesort")
    t = np.asarray(submit, dtype=np.float64)[order]
    p = np.asarray(pred, dtype=np.float64)[order]
    y = np.asarray(true, dtype=np.float64)[order]
    hits = pairs = 0.0
    for k in range(1, min(len(t), MAX_OFFSET + 1)):
        close = (t[k:] - t[:-k]) <= window_s
        if not close.any():
            break
        dy = np.sign(y[k:] - y[:-k])[close]
        dp = np.sign(p[k:] - p[:-k])[close]
        keep = dy != 0
        pairs += keep.sum()
        hits += (dy[keep] == dp[keep]).sum() + 0.5 * (dp[keep] == 0).sum()
    return float(hits / pairs) if pairs else None


def evaluate(pred_q_log: np.ndarray, true_log: np.ndarray,
             submit: np.ndarray | None = None, attained: np.ndarray | None = None) -> dict:
    """The four scores (and the 80% interval's coverage) of (n, 3) log quantiles; with
    ``submit`` and ``attained`` (per example), ``queue_concordance`` over the examples at
    attained 0."""
    pred_q_log = np.asarray(pred_q_log, dtype=np.float64)
    true_log = np.asarray(true_log, dtype=np.float64)
    if not len(true_log):
        return {"spearman": None, "mae_log": None, "pinball": None, "n": 0,
                "coverage_80": None}
    mid = pred_q_log[:, 1]
    inside = (true_log >= pred_q_log[:, 0]) & (true_log <= pred_q_log[:, 2])
    out = {"spearman": spearman(mid, true_log), "mae_log": mae_log(mid, true_log),
           "pinball": pinball(pred_q_log, true_log), "n": len(true_log),
           "coverage_80": float(inside.mean())}
    if submit is not None and attained is not None:
        at0 = np.asarray(attained) == 0
        out["queue_concordance"] = queue_concordance(mid[at0], true_log[at0],
                                                     np.asarray(submit)[at0])
    return out
