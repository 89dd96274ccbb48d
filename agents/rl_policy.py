"""``rl``: the learned scheduler as a policy of the registry.

``rl`` loads the model shipped with the package (``autoflow/models/rl-default.json`` and
the weights it names, ``rl-default.npz``), ``rl:NAME`` another shipped model
(``rl:workflows``: the one trained on pipelines of dependent jobs; ``rl:slots``),
``rl:PATH`` a model written by ``autoflow train``. Decisions are the masked argmax of the
network's action scores (deterministic); see ``agents.decider`` for the guard. The scores
are computed in numpy (``agents.numpy_actor``).

``PATH`` may be a model card ``NAME.json``, its weights ``NAME.npz`` (both: the safe
export, ``agents.safe_model``; nothing is unpickled) or an SB3 ``NAME.zip``: when the safe
export of that very zip lies beside it (``NAME.json`` records the zip's sha256) the export
is loaded instead; otherwise the zip is a pickle and loads only if trusted
(``autoflow.trust``: a hash autoflow recorded writing it, or ``--trust-file``), then runs
in numpy too, or through torch for a network ``autoflow train`` does not build.
"""

from __future__ import annotations

import io
import math
import re
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
from autoflow.envs.las_choice import las_action
from autoflow.envs.obs_config import ObsConfig
from autoflow.envs.observation import Decision

import autoflow
from autoflow import trust
from autoflow.errors import ConfigError

from . import safe_model
from .decider import DeciderPolicy
from .numpy_actor import NumpyActor

MODELS_DIR = Path(autoflow.__file__).resolve().parent / "models"
# the shipped model: the adaptive scheduler (``agents.adaptive``), a card and its weights
DEFAULT_MODEL = MODELS_DIR / "rl-default.json"
DEFAULT_WEIGHTS = MODELS_DIR / "rl-default.npz"
# the shipped slot model (one start or preemption per decision, cloned from LAS): its card,
# weights and the SB3 zip they were exported from; ``rl:`` + this path runs it
SLOT_MODEL = MODELS_DIR / "rl-slots.json"
SLOT_WEIGHTS = MODELS_DIR / "rl-slots.npz"
SLOT_SB3 = MODELS_DIR / "rl-slots.zip"
TOP_ACTIONS = 5  # choices listed in an explanation
# the other shipped models by name: ``rl:workflows`` (the adaptive scheduler trained on
# pipelines of dependent jobs, ``--objective wct --workflow-features``), ``rl:slots``
SHIPPED_NAME = re.compile(r"[a-z][a-z0-9-]*")


def shipped(arg: str) -> str:
    """``rl:NAME`` -> the card of the shipped model ``autoflow/models/rl-NAME.json`` when
    ``NAME`` is a bare name that is not a file here; ``arg`` unchanged otherwise."""
    if arg and SHIPPED_NAME.fullmatch(arg) and not Path(arg).exists():
        card = MODELS_DIR / f"rl-{arg}.json"
        if card.is_file():
            return str(card)
    return arg


def resolve(path: str) -> tuple[str, Path]:
    """(kind, file) that ``rl:PATH`` loads: ("safe", card) or ("sb3", zip)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"model {path}: file not found (train one with `autoflow train`)")
    if p.is_dir():
        raise ConfigError(f"model {path}: is a folder, expected a model file (.json, .npz or "
                          ".zip)")
    suffix = p.suffix.lower()
    if suffix in (".json", ".npz"):
        card = p.with_suffix(".json")
        if not card.is_file():
            raise ConfigError(f"model {path}: its card {card.name} is missing beside it")
        return "safe", card
    if suffix == ".zip":
        card = p.with_suffix(".json")
        if card.is_file():
            try:
                c = safe_model.read_card(card)
            except ConfigError:  # not a card: the zip alone, then
                c = {}
            sb3 = c.get("sb3_zip")
            if safe_model.is_safe_card(c) and isinstance(sb3, dict) and \
                    sb3.get("sha256") == trust.sha256_file(p):
                return "safe", card
        return "sb3", p
    raise ConfigError(f"model {path}: expected a model card (.json), its weights (.npz) or "
                      f"an SB3 zip (.zip)")


def load_model(path: str):
    """The model ``rl:PATH`` names: a :class:`~agents.safe_model.SafeModel`, or a trusted
    SB3 model. Cached by the files' content (their SHA-256): a model overwritten in place
    is read again."""
    kind, p = resolve(path)
    if kind == "safe":
        card = safe_model.read_card(p)
        from . import adaptive
        if adaptive.is_adaptive_card(card):  # the adaptive scheduler's (checked whole)
            return adaptive.load(p)
        w = p.parent / str(card.get("weights", ""))
        key = trust.sha256_file(p) + (trust.sha256_file(w) if w.is_file() else "")
        return _load_safe(str(p), key)
    data = trust.read_trusted(p, f"model {path}", "use the .json/.npz export autoflow "
                              "train writes beside its zips")
    key = (str(p), trust.sha256_bytes(data))
    if key not in _SB3_CACHE:
        while len(_SB3_CACHE) >= 8:
            _SB3_CACHE.pop(next(iter(_SB3_CACHE)))
        _SB3_CACHE[key] = _load_sb3(str(p), data)
    return _SB3_CACHE[key]


@lru_cache(maxsize=8)
def _load_safe(card: str, key: str):
    return safe_model.load(card)


_SB3_CACHE: dict[tuple[str, str], object] = {}


def _load_sb3(path: str, data: bytes):
    from sb3_contrib import MaskablePPO

    try:  # the bytes that were hashed and trusted, not the file again
        model = MaskablePPO.load(io.BytesIO(data), device="cpu")
    except Exception as e:  # a zip that is not a model, a model of another version
        raise ConfigError(f"model {path}: cannot be loaded ({trust.why(e)})") from e
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
                     preemption=extra.get("preemption", True),
                     estimator=extra.get("estimator", "history"))


class RlPolicy(DeciderPolicy):
    name = "rl"

    def __init__(self, placer, model_path: str | None = None, model=None):
        path = str(model_path or SLOT_MODEL)  # ``rl`` itself is the adaptive scheduler
        loaded = model if model is not None else load_model(path)
        self.model_path = path if model is None else "<in training>"
        if isinstance(loaded, safe_model.SafeModel):
            self.model = None  # no torch module: the safe export holds the actor alone
            self.actor: NumpyActor | None = loaded.actor
            obs = loaded.obs
        else:  # an SB3 model (in training, or a trusted zip)
            self.model = loaded
            try:  # a snapshot of the weights: a model in training is re-read per evaluation
                self.actor = NumpyActor(self.model.policy)
            except TypeError:
                self.actor = None
            obs = obs_config_of(self.model)
        super().__init__(placer, obs)
        # read-only while deciding: shared, not copied, when the core is copied to plan
        self.shared_in_copies = tuple(x for x in (self.model, self.actor) if x is not None)
        self._last: tuple | None = None  # (decision, masked scores, action) of ``decide``

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
        action = int(np.argmax(logits))
        self._last = (d, logits, action)  # for ``explain``: what this decision computed
        return action

    def explain(self, ctx, js) -> dict | None:
        """What the network said at the decision that started ``js`` (the service attaches
        it to the start's explanation): the action probabilities of its top choices (the
        softmax of the masked scores, as the trained policy's distribution), the action
        taken, and whether LAS (``envs.las_choice``, in the same state) would have done
        the same. Read from the last decision: the network is not run again."""
        last = self._last
        if last is None:
            return None
        d, logits, chosen = last
        slot = next((i for i, q in enumerate(d.queue) if q is js), None)
        if slot is None or d.now != ctx.now:
            return None  # not started by the last decision (e.g. another pass since)
        cfg = self.observer.config
        finite = np.isfinite(logits)
        z = np.where(finite, logits - logits[finite].max(), -np.inf)
        p = np.exp(z)
        p /= p.sum()
        top = [int(a) for a in np.argsort(-p, kind="stable")[:TOP_ACTIONS] if p[a] > 0]
        las = las_action(d, cfg)

        def said(a: int) -> dict:  # probabilities rounded down: the listed ones sum to <= 1
            return {**self._describe(d, a), "probability": math.floor(p[a] * 1e6) / 1e6,
                    "score": round(float(logits[a]), 4)}

        return {
            "name": self.label.split("+")[0],
            "top": [said(a) for a in top],
            "chosen": said(slot),
            "model_choice": self._describe(d, chosen),
            "guard": chosen != slot,  # the guard overrode the network's choice
            "las_choice": self._describe(d, las),
            "agrees_with_las": las == slot,
        }

    def _describe(self, d: Decision, a: int) -> dict:
        q, cfg = len(d.queue), self.observer.config
        if a < q:
            js = d.queue[a]
            return {"action": "start", "job_id": js.job.job_id if js is not None else None}
        if a < cfg.wait_action:
            js = d.running[a - q]
            return {"action": "preempt", "job_id": js.job.job_id if js is not None else None}
        return {"action": "wait", "job_id": None}

    def torch_scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self.model is None:
            raise ConfigError("torch_scores: a safe model export has no torch network")
        policy = self.model.policy
        with torch.no_grad():
            batch = {k: torch.as_tensor(v)[None] for k, v in obs.items()}
            features = policy.pi_features_extractor(batch)  # Box observations: no preprocessing
            return policy.action_net(policy.mlp_extractor.forward_actor(features))[0].numpy()


def from_spec(arg: str, placer):
    """The ``rl`` entry of the policy registry: ``rl`` (the shipped model) or ``rl:PATH``.
    A card of the adaptive scheduler (``agents.adaptive``) gives that policy; any other
    model file, the slot policy (``RlPolicy``)."""
    name, arg = ("rl" if not arg else f"rl:{arg}"), shipped(arg)
    path = Path(arg) if arg else DEFAULT_MODEL
    card = path.with_suffix(".json") if path.suffix.lower() in (".json", ".npz") else None
    if card is not None and card.is_file():
        from . import adaptive
        try:
            head = safe_model.read_card(card)
        except ConfigError:
            head = {}
        if adaptive.is_adaptive_card(head):
            return adaptive.from_card(card, placer, name)
    return RlPolicy(placer, arg or None)


def export_sb3(zip_path: str | Path, stem: str | Path | None = None) -> Path:
    """``autoflow models export``: writes the safe export (``STEM.npz`` + ``STEM.json``;
    default: beside the zip, same name) of a trusted SB3 zip and returns the card's path.
    Fields of a card already at ``STEM.json`` (training command, validation results) are
    kept."""
    zip_path = Path(zip_path)
    if zip_path.suffix.lower() != ".zip":
        raise ConfigError(f"model {zip_path}: expected an SB3 zip (.zip) to export")
    if not zip_path.is_file():
        raise ConfigError(f"model {zip_path}: file not found")
    data = trust.read_trusted(zip_path, f"model {zip_path}", "export it where it was trained")
    model = _load_sb3(str(zip_path), data)
    try:
        actor = NumpyActor(model.policy)
    except TypeError as e:
        raise ConfigError(f"model {zip_path}: cannot be exported ({e})") from e
    card_path, _ = safe_model.paths_of(stem or zip_path)
    extra = {}
    if card_path.is_file():
        try:
            old = safe_model.read_card(card_path)
        except ConfigError:
            old = {}
        extra = {k: v for k, v in old.items() if k not in ("sha256",)}
    rel = zip_path.name if zip_path.parent.resolve() == card_path.parent.resolve() \
        else str(zip_path)
    safe_model.export(actor, obs_config_of(model), card_path,
                      sb3_zip=(rel, trust.sha256_bytes(data)), extra=extra)
    return card_path
