"""The ``gbm`` baseline's trees as plain JSON and their evaluation in numpy: a fitted
scikit-learn ``HistGradientBoostingRegressor`` is exported (``export``) so that a model
file never holds a pickle, and ``Forest`` walks the exported trees exactly as sklearn's
predictor does (tested to 1e-9 against ``model.predict``), all quantiles at once."""

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
    """One exported model's prediction: the sum of its leaf values, as sklearn's
    predictor walks them (``x <= threshold`` left, NaN follows ``missing_go_to_left``)."""
    return Forest([model]).predict(x)[:, 0]


class Forest:
    """Exported models (one per quantile) compiled once into flat node arrays and walked
    together, one numpy step per tree level for the whole batch: a policy predicts a few
    jobs per scheduling pass, thousands of passes a run (14 ms a small batch walking the
    trees one by one, 0.37 ms so). Each model's sum is taken in tree order from its
    baseline, so the floats are those of a sequential walk."""

    def __init__(self, models: list[dict]):
        feat, thr, mleft, left, right, leaf, value, roots, owner = ([] for _ in range(9))
        base = 0
        self.baseline = np.asarray([m["baseline"] for m in models], dtype=np.float64)
        for q, m in enumerate(models):
            for t in m["trees"]:
                roots.append(base)
                owner.append(q)
                feat.append(np.asarray(t["feature_idx"], dtype=np.int64))
                thr.append(np.asarray(t["num_threshold"], dtype=np.float64))
                mleft.append(np.asarray(t["missing_go_to_left"], dtype=bool))
                left.append(np.asarray(t["left"], dtype=np.int64) + base)
                right.append(np.asarray(t["right"], dtype=np.int64) + base)
                leaf.append(np.asarray(t["is_leaf"], dtype=bool))
                value.append(np.asarray(t["value"], dtype=np.float64))
                base += len(t["is_leaf"])
        cat = (lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dtype=dt))
        self.feat, self.thr = cat(feat, np.int64), cat(thr, np.float64)
        self.mleft, self.leaf = cat(mleft, bool), cat(leaf, bool)
        self.left, self.right = cat(left, np.int64), cat(right, np.int64)
        self.value = cat(value, np.float64)
        self.feat[self.leaf] = 0  # (a leaf's split fields are unused)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.owner = np.asarray(owner, dtype=np.int64)
        self._of = [np.nonzero(self.owner == q)[0] for q in range(len(models))]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, models): each model's sum of leaf values."""
        x = np.asarray(x, dtype=np.float64)
        n = len(x)
        node = np.repeat(self.roots[:, None], n, axis=1)  # (trees, rows)
        rows = np.broadcast_to(np.arange(n), node.shape)
        while node.size:
            active = ~self.leaf[node]
            if not active.any():
                break
            v = x[rows, self.feat[node]]
            go_left = np.where(np.isnan(v), self.mleft[node], v <= self.thr[node])
            node = np.where(active, np.where(go_left, self.left[node], self.right[node]),
                            node)
        vals = self.value[node]  # (trees, rows)
        out = np.empty((n, len(self.baseline)))
        for q, idx in enumerate(self._of):  # cumsum adds in tree order: sequential sums
            part = np.concatenate([np.full((1, n), self.baseline[q]), vals[idx]])
            out[:, q] = np.cumsum(part, axis=0)[-1]
        return out
