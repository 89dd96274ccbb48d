"""fgd: fragmentation-gradient packing for shared GPUs ("Beware of Fragmentation",
Weng et al., USENIX ATC '23).

A node's fragmentation for a task class m is the free GPU share that m cannot use
there: all of the node's free share if m does not fit at all, otherwise the free share
on GPUs too small for m. The node's fragmentation is the expectation over the target
workload's classes (their frequencies in the replayed workload). FGD places a job where
this expectation grows least.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..job import WHOLE_GPU
from ..state import ClusterState, Req
from .base import Placer

MAX_CLASSES = 16  # the most frequent (GPUs, share) classes make up the target mix


class FragmentationGradient(Placer):
    name = "fgd"

    def __init__(self) -> None:
        self.need = np.array([1], dtype=np.int64)  # GPUs of each class
        self.thresh = np.array([WHOLE_GPU], dtype=np.int64)  # per-GPU share of each class
        self.prob = np.array([1.0])

    def prepare(self, jobs_reqs: list[Req], state: ClusterState) -> None:
        mix = Counter((r.num_gpus, r.milli) for r in jobs_reqs if r.num_gpus > 0)
        if not mix:
            return
        top = mix.most_common(MAX_CLASSES)
        self.need = np.array([g for (g, _), _ in top], dtype=np.int64)
        self.thresh = np.array([m for (_, m), _ in top], dtype=np.int64)
        p = np.array([c for _, c in top], dtype=np.float64)
        self.prob = p / p.sum()

    def _summaries(self, free: np.ndarray):
        """Per node and class: total free S, usable GPUs U, free share on unusable GPUs B."""
        f = np.maximum(free, 0).astype(np.int64)  # (C, G); padding counts as 0
        usable = f[:, :, None] >= self.thresh[None, None, :]  # (C, G, K)
        usable &= f[:, :, None] > 0
        s = f.sum(axis=1)  # (C,)
        u = usable.sum(axis=1)  # (C, K)
        b = (f[:, :, None] * ~usable).sum(axis=1)  # (C, K)
        return s, u, b

    def _frag(self, s, u, b):
        return (np.where(u < self.need[None, :], s[:, None], b) * self.prob).sum(axis=1)

    def node_scores(self, state, req, nodes):
        if req.num_gpus == 0:
            return (state.cpu_free[nodes] - req.cpu).astype(np.float64)
        s, u, b = self._summaries(state.gpu_free[nodes])
        before = self._frag(s, u, b)
        # taking k idle GPUs: they leave S and stop being usable; B is unchanged
        k = req.num_gpus
        after = self._frag(s - k * WHOLE_GPU, u - k * (self.thresh[None, :] <= WHOLE_GPU), b)
        return after - before + 1e-9 * nodes

    def gpu_scores(self, state, req, nodes, gpus):
        free = state.gpu_free[nodes, gpus].astype(np.int64)
        # GPUs with the same free share on the same node score alike: score each once
        _, first, back = np.unique(nodes * (WHOLE_GPU + 1) + free, return_index=True,
                                   return_inverse=True)
        n1, a1 = nodes[first], free[first]
        uniq, inv = np.unique(n1, return_inverse=True)
        s, u, b = self._summaries(state.gpu_free[uniq])
        before = self._frag(s, u, b)[inv]
        s, u, b = s[inv], u[inv], b[inv]
        a = a1[:, None]
        a2 = a - req.milli
        t = self.thresh[None, :]
        was, now = a >= t, (a2 >= t) & (a2 > 0)
        u2 = u - was + now
        b2 = b - a * ~was + a2 * ~now
        delta = self._frag(s - req.milli, u2, b2) - before
        return delta[back] + 1e-9 * (nodes * state.gpu_free.shape[1] + gpus)
