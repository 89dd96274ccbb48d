"""best-fit: the node (and GPU) left with the least free capacity after placement.

Packs jobs tightly so that large gangs and whole GPUs stay available.
"""

from __future__ import annotations

import numpy as np

from .base import Placer


class BestFit(Placer):
    name = "best-fit"

    def node_scores(self, state, req, nodes):
        if req.num_gpus == 0:
            return (state.cpu_free[nodes] - req.cpu).astype(np.float64)
        return (state.free_milli[nodes] - req.demand_milli).astype(np.float64)

    def gpu_scores(self, state, req, nodes, gpus):
        # least leftover on the GPU first, then the fullest node
        left = (state.gpu_free[nodes, gpus] - req.milli).astype(np.float64)
        return left * 1e6 + state.free_milli[nodes]
