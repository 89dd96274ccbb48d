"""``rl``: the learned scheduler as a policy of the registry.

``rl`` loads the model shipped with the package (``autoflow/models/rl-default.zip``),
``rl:PATH`` a model written by ``autoflow train``. Decisions are the masked argmax of the
network's action scores (deterministic); see ``agents.decider`` for the guard. The scores
are computed in numpy (``agents.numpy_actor``) for the networks ``autoflow train``
builds, through torch for any other.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from autoflow.envs.features import (
    CLUSTER_FEATURES,
    JOB_FEATURES,
    RUNNING_FEATURES,
    schema_hash,
)
from autoflow.envs.obs_config import ObsConfig
from autoflow.envs.observation import Decision

import autoflow
from autoflow.errors import ConfigError

from .decider import DeciderPolicy
from .numpy_actor import NumpyActor

DEFAULT_MODEL = Path(autoflow.__file__).resolve().parent / "models" / "rl-default.zip"


def load_model(path: str):
    """The model in the file at ``path``, cached by the file's content (its SHA-256): a
    model overwritten in place is read again."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"model {path}: file not found (train one with `autoflow train`)")
    if p.is_dir():
        raise ConfigError(f"model {path}: is a folder, expected a model file (.zip)")
    return _load_model(path, hashlib.sha256(p.read_bytes()).hexdigest())


@lru_cache(maxsize=8)
def _load_model(path: str, sha256: str):
    from sb3_contrib import MaskablePPO

    p = Path(path)
    try:
        model = MaskablePPO.load(str(p), device="cpu")
    except Exception as e:  # a zip that is not a model, a model of another version
        raise ConfigError(f"model {path}: cannot be loaded ({type(e).__name__}: {e})") from e
    model.policy.set_training_mode(False)
    _check_features(path, model)
    return model


def _check_features(path: str, model) -> None:
    """A model sees the observation it was trained on: a model written for another
    feature schema (other features, or features whose meaning changed: its recorded
    ``envs.features.schema_hash``) is refused with the reason, not run on the wrong
    inputs."""
    got = (getattr(model, "autoflow_obs", None) or {}).get("schema")
    want = schema_hash()
    if got != want:
        what = f"feature schema {got}" if got else "no feature schema (an older autoflow)"
        raise ConfigError(f"model {path}: it records {what}, this autoflow's is {want}; "
                          f"retrain it with `autoflow train`")
    spaces = getattr(model.observation_space, "spaces", {})
    want = {"jobs": len(JOB_FEATURES), "running": len(RUNNING_FEATURES),
            "cluster": len(CLUSTER_FEATURES)}
    for key, n in want.items():
        got = spaces[key].shape[-1] if key in spaces else None
        if got != n:
            raise ConfigError(f"model {path}: its observation has {got} {key!r} features, "
                              f"this autoflow has {n}; retrain it with `autoflow train`")


def obs_config_of(model) -> ObsConfig:
    spaces = model.observation_space.spaces
    q = spaces["jobs"].shape[0]
    r = spaces["running"].shape[0]
    extra = getattr(model, "autoflow_obs", None) or {}
    return ObsConfig(queue_slots=q, running_slots=r, head_slots=extra.get("head_slots", 4),
                     preemption=extra.get("preemption", True))


class RlPolicy(DeciderPolicy):
    name = "rl"

    def __init__(self, placer, model_path: str | None = None, model=None):
        path = str(model_path or DEFAULT_MODEL)
        self.model = model if model is not None else load_model(path)
        self.model_path = path if model is None else "<in training>"
        try:  # a snapshot of the weights: a model in training is re-read per evaluation
            self.actor: NumpyActor | None = NumpyActor(self.model.policy)
        except TypeError:
            self.actor = None
        super().__init__(placer, obs_config_of(self.model))
        # read-only while deciding: shared, not copied, when the core is copied to plan
        self.shared_in_copies = (self.model, self.actor)

    @property
    def label(self) -> str:
        base = "rl" if self.model_path == str(DEFAULT_MODEL) else f"rl:{self.model_path}"
        return f"{base}+{self.placer.name}"

    def decide(self, d: Decision, ctx) -> int:
        if self.actor is not None:
            logits = self.actor.scores(d.obs)
        else:
            logits = self.torch_scores(d.obs)
        logits = np.where(d.mask, logits, -np.inf)
        return int(np.argmax(logits))

    def torch_scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        policy = self.model.policy
        with torch.no_grad():
            batch = {k: torch.as_tensor(v)[None] for k, v in obs.items()}
            features = policy.pi_features_extractor(batch)  # Box observations: no preprocessing
            return policy.action_net(policy.mlp_extractor.forward_actor(features))[0].numpy()


def from_spec(arg: str, placer) -> RlPolicy:
    """The ``rl`` entry of the policy registry: ``rl`` (the shipped model) or ``rl:PATH``."""
    return RlPolicy(placer, arg or None)
