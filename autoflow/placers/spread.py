"""spread: the node (and GPU) with the most free capacity — balances load across nodes."""

from __future__ import annotations

import numpy as np

from .base import Placer


class Spread(Placer):
    name = "spread"

    def node_scores(self, state, req, nodes):
        if req.num_gpus == 0:
            return -state.cpu_free[nodes].astype(np.float64)
        return -state.free_milli[nodes].astype(np.float64)

    def gpu_scores(self, state, req, nodes, gpus):
        return -(state.gpu_free[nodes, gpus].astype(np.float64) * 1e6 + state.free_milli[nodes])
