"""The feature schema: the names, order and range of everything the learned scheduler
observes, defined once.

``envs.rows`` writes job and running-job rows by these names, ``envs.observation``
the cluster row; a model written by ``autoflow train`` records ``schema_hash()`` and
``rl:PATH`` refuses a model whose hash differs (other features, or the same names with
another meaning: ``SCHEMA_VERSION`` is raised whenever a feature's meaning changes).
"""

from __future__ import annotations

import hashlib
import json

SCHEMA_VERSION = 1  # raise when a feature keeps its name but changes its meaning

JOB_FEATURES = (
    "present", "fits", "gpus_log", "gpu_share", "demand_of_cluster", "type_constrained",
    "inference", "cpu_only", "wait_log", "attained_log", "level0", "level1", "level2",
    "predicted_log", "predicted_left_log", "preemptions", "slo_slack", "is_head",
    "progress_of_predicted", "fits_by_preempting", "queued_log", "las_choice",
)
RUNNING_FEATURES = (
    "present", "preemptible", "gpus_log", "demand_of_cluster", "inference", "segment_log",
    "attained_log", "level0", "level1", "level2", "predicted_left_log", "started_now",
    "las_victim",
)
TYPE_SLOTS = 4  # GPU types reported one by one (largest first); the rest only in totals
CLUSTER_FEATURES = (
    "free_share", "idle_gpus", "fragmentation", "idle_nodes",
    *(f"type{i}_free" for i in range(TYPE_SLOTS)),
    *(f"type{i}_capacity" for i in range(TYPE_SLOTS)),
    "running_log", "waiting_log", "hidden_log", "waiting_demand", "running_demand",
    "cpu_free", "waiting_inference_log", "running_preemptible", "running_level",
    "shown_fitting", "head_wait_log", "las_waits",
)
CLIP = 10.0  # every feature lies in [-CLIP, CLIP]

JOB = {name: i for i, name in enumerate(JOB_FEATURES)}  # name -> column
RUN = {name: i for i, name in enumerate(RUNNING_FEATURES)}


def row(columns: dict[str, int], **values: float) -> list[float]:
    """A row with the named features set and every other one 0; an unknown name is an
    error, not a silently misplaced column."""
    out = [0.0] * len(columns)
    for name, v in values.items():
        out[columns[name]] = v
    return out


def schema() -> dict:
    return {"version": SCHEMA_VERSION, "jobs": list(JOB_FEATURES),
            "running": list(RUNNING_FEATURES), "cluster": list(CLUSTER_FEATURES),
            "clip": CLIP}


def schema_hash() -> str:
    """A short hash of the schema, recorded in every model ``autoflow train`` writes."""
    return hashlib.sha256(json.dumps(schema(), sort_keys=True).encode()).hexdigest()[:16]
