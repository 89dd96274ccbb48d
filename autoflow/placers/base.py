"""Placer: chooses nodes and GPUs for one job, or says it does not fit now.

Candidates come from :mod:`autoflow.feasibility`; a placer only *scores* them (lower
is better, ties go to the lower node index), the way kube-scheduler separates filter
and score. Subclasses override ``node_scores`` and ``gpu_scores``.
"""

from __future__ import annotations

import numpy as np

from ..feasibility import fit_nodes, gpu_mask, idle_nodes, needs_multi_node
from ..job import WHOLE_GPU
from ..state import ClusterState, Placement, Req


class Placer:
    name = "base"

    def prepare(self, jobs_reqs: list[Req], state: ClusterState) -> None:
        """Called once before a run with every job's requirement (FGD learns its mix)."""

    def node_scores(self, state: ClusterState, req: Req, nodes: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def gpu_scores(self, state: ClusterState, req: Req, nodes: np.ndarray,
                   gpus: np.ndarray) -> np.ndarray:
        """Scores of (node, gpu) candidate pairs for a fractional job."""
        raise NotImplementedError

    def place(self, state: ClusterState, req: Req) -> Placement | None:
        if req.num_gpus == 0:
            cands = fit_nodes(state, req)
            if cands.size == 0:
                return None
            n = int(cands[np.argmin(self.node_scores(state, req, cands))])
            return [(n, (), 0, req.cpu, req.mem)]
        if req.fractional:
            nodes, gpus = np.nonzero(gpu_mask(state, req))
            if nodes.size == 0:
                return None
            k = int(np.argmin(self.gpu_scores(state, req, nodes, gpus)))
            return [(int(nodes[k]), (int(gpus[k]),), req.milli, req.cpu, req.mem)]
        if needs_multi_node(state, req):
            return self._place_multi(state, req)
        cands = fit_nodes(state, req)
        if cands.size == 0:
            return None
        n = int(cands[np.argmin(self.node_scores(state, req, cands))])
        idle = [g for g, free in enumerate(state.gpu_free[n].tolist()) if free == WHOLE_GPU]
        return [(n, tuple(idle[: req.num_gpus]), WHOLE_GPU, req.cpu, req.mem)]

    def _place_multi(self, state: ClusterState, req: Req) -> Placement | None:
        """A gang wider than any node: whole idle nodes, widest first, then by score."""
        cands = np.flatnonzero(idle_nodes(state, req))
        if cands.size == 0 or int(state.node_gpus[cands].sum()) < req.num_gpus:
            return None
        order = cands[np.lexsort((self.node_scores(state, req, cands),
                                  -state.node_gpus[cands]))]
        placement: Placement = []
        left, cpu_left, mem_left = req.num_gpus, req.cpu, req.mem
        for n in order:
            take = min(left, int(state.node_gpus[n]))
            cpu = req.cpu * take // req.num_gpus if left > take else cpu_left
            mem = req.mem * take // req.num_gpus if left > take else mem_left
            if state.cpu_free[n] < cpu or state.mem_free[n] < mem:
                continue
            placement.append((int(n), tuple(range(take)), WHOLE_GPU, cpu, mem))
            left, cpu_left, mem_left = left - take, cpu_left - cpu, mem_left - mem
            if left == 0:
                return placement
        return None
