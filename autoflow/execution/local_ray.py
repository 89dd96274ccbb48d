"""A local multi-node Ray cluster shaped like a ``ClusterSpec``: one Ray node per
cluster node, with that node's GPUs as logical GPUs (``num_gpus`` works on a CPU-only
machine), a ``gpu-type:TYPE`` resource and an ``autoflow-node:NAME`` resource. Jobs are pinned to the node the policy chose
by node affinity (``RayBackend``), so Ray's own scheduler never moves them.

The head's GCS port is a free port chosen here, never Ray's default 6379 (a local Redis
may hold it).
"""

from __future__ import annotations

import socket
from typing import Self

from ..cluster import ClusterSpec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# a node whose raylet is killed is declared dead after 3 missed checks 0.5 s apart
# (Ray's defaults take up to half a minute)
HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
WARM_HOLD_S = 1.0
NODE_RESOURCE = "autoflow-node:"  # each Ray node carries autoflow-node:NAME = 1  # each warm-up task holds its worker this long (all run at once)


def _hold(seconds: float) -> None:
    import time

    time.sleep(seconds)


class LocalRayCluster:
    """``with LocalRayCluster(spec) as rc:`` starts the nodes and connects this process;
    ``rc.node_ids[i]`` is the Ray node id of ``spec.nodes[i]``. Leaving the block shuts
    it all down."""

    def __init__(self, spec: ClusterSpec, exit_hooks: bool = True):
        self.spec = spec
        # Ray's exit and SIGTERM hooks for the node processes can be installed from the
        # main thread only; a cluster that grows from another thread (the service's
        # executor) goes without them and is shut down by its owner (the processes also
        # die with this one: Ray ties them to it on Linux)
        self.exit_hooks = exit_hooks
        self.node_ids: list[str] = []
        self._nodes: list = []  # ray.cluster_utils node handles, one per spec node
        self._cluster = None

    def __enter__(self) -> Self:
        import ray
        from ray.cluster_utils import Cluster

        if ray.is_initialized():
            raise RuntimeError("this process is already connected to a Ray cluster")
        self._cluster = Cluster(initialize_head=True, shutdown_at_exit=self.exit_hooks,
                                head_node_args={
            "num_cpus": 1, "num_gpus": 0, "gcs_server_port": free_port(),
            "include_dashboard": False, "_system_config": HEALTH_CHECKS})
        try:
            for node in self.spec.nodes:
                self._add(node)
            self._cluster.wait_for_nodes()
            ray.init(address=self._cluster.address, log_to_driver=False)
            self._warm(self.spec.nodes, self.node_ids)
        except BaseException:
            self._cluster.shutdown()
            raise
        return self

    @property
    def address(self) -> str:
        """The head's address (``HOST:PORT``), for another driver (``--ray-address``)."""
        return self._cluster.address

    def _add(self, node) -> str:
        resources = {f"{NODE_RESOURCE}{node.name}": 1.0}
        if node.gpus:
            resources[f"gpu-type:{node.gpu_type}"] = float(node.gpus)
        added = self._cluster.add_node(num_cpus=1, num_gpus=node.gpus, resources=resources)
        self.node_ids.append(added.node_id)
        self._nodes.append(added)
        return added.node_id

    def add_node(self, node) -> str:
        """Adds a Ray node shaped like ``node`` (a ``cluster.Node``) to the running cluster
        and returns its Ray node id (the service adds nodes as they are registered)."""
        nid = self._add(node)
        self._cluster.wait_for_nodes()
        self._warm([node], [nid])
        return nid

    def _warm(self, nodes, node_ids) -> None:
        """Starts the worker processes the jobs will run in before the first job: as many
        per node as it has GPUs, held at once so that none is reused. (A cold start costs
        0.9-2.7 s on a 2-core machine, 40-135 trace seconds at a time scale of 0.02.)"""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        hold = ray.remote(num_cpus=0, max_retries=0)(_hold)
        refs = [hold.options(num_gpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(
                    nid, soft=False)).remote(WARM_HOLD_S)
                for node, nid in zip(nodes, node_ids)
                for _ in range(node.gpus)]
        ray.get(refs)

    def remove_node(self, i: int) -> None:
        """Kills the Ray node of ``spec.nodes[i]`` (its processes end at once, as in a
        machine failure): for fault tests."""
        self._cluster.remove_node(self._nodes[i], allow_graceful=False)

    def __exit__(self, *exc) -> None:
        import ray

        ray.shutdown()
        self._cluster.shutdown()
