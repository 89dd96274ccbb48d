"""A loaded predictor made fast for small batches, as a policy predicts them (a few jobs
per scheduling pass, thousands of passes a run).

``models.Predictor.predict`` on a ``gbm`` model converts every tree's lists to arrays
and walks the trees one by one at every call; here the trees of all quantiles are
stacked once into flat node arrays and walked together, one numpy step per tree level
for the whole batch (the same comparisons, so the same leaves: tested equal to
``Predictor.predict``). An ``mlp`` model is called under ``torch.no_grad`` as it is.
"""

from __future__ import annotations

import numpy as np

from .models import Predictor


class FastPredictor:
    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.kind = predictor.kind
        if self.kind == "gbm":
            self._compile(predictor.trees)

    def _compile(self, models: list[dict]) -> None:
        feat, thr, mleft, left, right, leaf, value, roots, owner = ([] for _ in range(9))
        base = 0
        self.baseline = np.asarray([m["baseline"] for m in models], dtype=np.float64)
        for q, m in enumerate(models):
            for t in m["trees"]:
                n = len(t["is_leaf"])
                roots.append(base)
                owner.append(q)
                feat.append(np.asarray(t["feature_idx"], dtype=np.int64))
                thr.append(np.asarray(t["num_threshold"], dtype=np.float64))
                mleft.append(np.asarray(t["missing_go_to_left"], dtype=bool))
                left.append(np.asarray(t["left"], dtype=np.int64) + base)
                right.append(np.asarray(t["right"], dtype=np.int64) + base)
                leaf.append(np.asarray(t["is_leaf"], dtype=bool))
                value.append(np.asarray(t["value"], dtype=np.float64))
                base += n
        self.feat, self.thr = np.concatenate(feat), np.concatenate(thr)
        self.mleft, self.leaf = np.concatenate(mleft), np.concatenate(leaf)
        self.left, self.right = np.concatenate(left), np.concatenate(right)
        self.value = np.concatenate(value)
        self.feat[self.leaf] = 0  # (a leaf's split fields are unused)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.owner = np.asarray(owner, dtype=np.int64)
        self.nq = len(models)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, 3) quantiles of log remaining seconds, as ``Predictor.predict``."""
        x = np.asarray(x, dtype=np.float64)
        if self.kind != "gbm":
            return self.predictor.predict(x)
        n = len(x)
        node = np.repeat(self.roots[:, None], n, axis=1)  # (trees, rows)
        rows = np.broadcast_to(np.arange(n), node.shape)
        while True:
            active = ~self.leaf[node]
            if not active.any():
                break
            v = x[rows, self.feat[node]]
            go_left = np.where(np.isnan(v), self.mleft[node], v <= self.thr[node])
            node = np.where(active, np.where(go_left, self.left[node], self.right[node]),
                            node)
        vals = self.value[node]  # (trees, rows)
        out = np.zeros((n, self.nq))
        for q in range(self.nq):  # summed per quantile in tree order, as trees.predict
            part = np.concatenate([np.full((1, n), self.baseline[q]), vals[self.owner == q]])
            out[:, q] = np.cumsum(part, axis=0)[-1]  # (sequential: the same sums)
        return np.sort(out, axis=1)
