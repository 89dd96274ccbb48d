"""The one feasibility function: where could job J go *now*?

It feeds the placers' candidate sets, the policies (through the placers) and, later,
the Gymnasium environment's action mask and the Kubernetes extender's filter.
"""

from __future__ import annotations

import numpy as np

from .state import ClusterState, Req


def node_mask(state: ClusterState, req: Req) -> np.ndarray:
    """Nodes on which the job fits entirely (single-node placement)."""
    m = state.up & state.type_masks[req.types_key]
    if req.cpu:
        m &= state.cpu_free >= req.cpu
    if req.mem:
        m &= state.mem_free >= req.mem
    if req.num_gpus == 0:
        return m
    if req.fractional:
        return m & (state.gpu_free >= req.milli).any(axis=1)
    return m & (state.whole_free >= req.num_gpus)


def gpu_mask(state: ClusterState, req: Req) -> np.ndarray:
    """For a fractional job: (node, GPU) pairs with enough free share, as a 2-D mask."""
    return node_mask(state, req)[:, None] & (state.gpu_free >= req.milli)


def needs_multi_node(state: ClusterState, req: Req) -> bool:
    """A gang wider than any allowed node runs across whole nodes."""
    return req.num_gpus > state.widest(req.types_key)


def idle_nodes(state: ClusterState, req: Req) -> np.ndarray:
    """Whole idle nodes a multi-node gang may use."""
    m = state.up & state.type_masks[req.types_key] & (state.node_gpus > 0)
    return m & (state.whole_free == state.node_gpus)


def fits_now(state: ClusterState, req: Req) -> bool:
    if needs_multi_node(state, req):
        nodes = idle_nodes(state, req)
        return int(state.node_gpus[nodes].sum()) >= req.num_gpus
    return bool(node_mask(state, req).any())
