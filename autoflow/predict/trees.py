"""The ``gbm`` baseline's trees as plain JSON and their evaluation in numpy: a fitted
scikit-learn ``HistGradientBoostingRegressor`` is exported (``export``) so that a model
file never holds a pickle, and ``predict`` walks the exported trees exactly as sklearn's
predictor does (tested to 1e-9 against ``model.predict``)."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

_NODE_FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left",
                "right", "is_leaf")



def export(model) -> dict:
    """The fitted trees as plain lists (numerical splits only; no categorical features)."""
    out = []
    for (pred,) in model._predictors:
        nodes = pred.nodes
        if nodes["is_categorical"].any():  # pragma: no cover - no categorical features
            raise ConfigError("gbm: categorical splits cannot be exported")
        out.append({f: nodes[f].tolist() for f in _NODE_FIELDS})
    return {"baseline": float(np.ravel(model._baseline_prediction)[0]), "trees": out}


def predict(model: dict, x: np.ndarray) -> np.ndarray:
    """Sum of leaf values, as sklearn's predictor walks them (``x <= threshold`` left,
    NaN follows ``missing_go_to_left``)."""
    total = np.full(len(x), model["baseline"], dtype=np.float64)
    rows = np.arange(len(x))
    for t in model["trees"]:
        feat = np.asarray(t["feature_idx"], dtype=np.int64)
        thr = np.asarray(t["num_threshold"], dtype=np.float64)
        mleft = np.asarray(t["missing_go_to_left"], dtype=bool)
        left = np.asarray(t["left"], dtype=np.int64)
        right = np.asarray(t["right"], dtype=np.int64)
        leaf = np.asarray(t["is_leaf"], dtype=bool)
        node = np.zeros(len(x), dtype=np.int64)
        for _ in range(len(leaf)):
            active = ~leaf[node]
            if not active.any():
                break
            v = x[rows, feat[node]]
            go_left = np.where(np.isnan(v), mleft[node], v <= thr[node])
            node = np.where(active, np.where(go_left, left[node], right[node]), node)
        total += np.asarray(t["value"], dtype=np.float64)[node]
    return total
