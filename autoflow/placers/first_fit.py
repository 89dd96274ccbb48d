"""first-fit: the lowest-numbered node (and GPU) where the job fits."""

from __future__ import annotations

import numpy as np

from .base import Placer


class FirstFit(Placer):
    name = "first-fit"

    def node_scores(self, state, req, nodes):
        return nodes.astype(np.float64)

    def gpu_scores(self, state, req, nodes, gpus):
        return (nodes * state.gpu_free.shape[1] + gpus).astype(np.float64)
