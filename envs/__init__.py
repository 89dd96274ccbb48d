"""Gymnasium environments over autoflow's simulator.

``import autoflow.envs`` registers ``autoflow/ClusterScheduling-v0``.
"""

from gymnasium.envs.registration import register, registry

ENV_ID = "autoflow/ClusterScheduling-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="autoflow.envs.cluster_env:ClusterSchedulingEnv")
