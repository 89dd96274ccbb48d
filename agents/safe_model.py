"""The learned scheduler in a file that carries no code: weights as arrays, the rest JSON.

``autoflow train`` writes each model twice: ``NAME.zip`` (stable-baselines3's format,
to continue training; a pickle, loaded only when trusted: ``autoflow.trust``) and, beside
it, the *safe export* that ``rl:PATH`` loads without unpickling anything:

* ``NAME.npz``: the actor's weights (``NumpyActor.arrays``: float32 arrays, named as in
  ``numpy_actor.array_shapes``), read with ``numpy.load(allow_pickle=False)``;
* ``NAME.json``: the card: ``format`` (``autoflow-model/1``), ``weights`` (the npz's file
  name), ``sha256`` (of the npz), ``feature_schema`` (``envs.features.schema_hash``),
  ``obs`` (queue/running/head slots, preemption, the duration estimator it reads), ``network`` (kind, width, features per
  row), ``sb3_zip`` (file name and sha256 of the zip it was exported from) and whatever
  the writer adds (training command, validation results).

Every field, the npz's members, shapes, dtypes and values are checked before use; a card
and weights that do not match (by hash) are refused. The shipped model is
``autoflow/models/rl-default.json`` + ``rl-default.npz``, exported with
``autoflow models export autoflow/models/rl-default.zip``.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from autoflow.envs.features import CLUSTER_FEATURES, JOB_FEATURES, RUNNING_FEATURES, schema_hash
from autoflow.envs.obs_config import ObsConfig

from autoflow import atomic, trust
from autoflow.errors import ConfigError

from .numpy_actor import NumpyActor, array_shapes

FORMAT = "autoflow-model/1"
KIND = "slot-policy"
MAX_CARD_BYTES = 1 << 20
MAX_DIM = 1024
MAX_SLOTS = 4096


@dataclass(frozen=True)
class SafeModel:
    actor: NumpyActor
    obs: ObsConfig
    card: dict
    path: str  # the card's path


def features() -> dict[str, int]:
    return {"jobs": len(JOB_FEATURES), "running": len(RUNNING_FEATURES),
            "cluster": len(CLUSTER_FEATURES)}


def paths_of(stem: str | Path) -> tuple[Path, Path]:
    """(card, weights) of a model written as ``stem`` (any suffix is replaced)."""
    stem = Path(stem)
    return stem.with_suffix(".json"), stem.with_suffix(".npz")


def export(actor: NumpyActor, obs: ObsConfig, stem: str | Path, sb3_zip: tuple[str, str]
           | None = None, extra: dict | None = None) -> dict:
    """Writes ``stem.npz`` and ``stem.json`` (atomically, weights first) and returns the
    card. ``sb3_zip``: (file name, sha256) of the zip the actor comes from; ``extra``:
    more card fields (the format's own fields win)."""
    if obs.estimator not in ("history", "ssl"):
        raise ConfigError(f"a model trained on estimator {obs.estimator!r} cannot be exported: "
                          f"its card may name only history or ssl (the shipped predictor)")
    card_path, npz_path = paths_of(stem)
    sha = write_weights(actor.arrays, npz_path)
    card = dict(extra or {})
    for stale in ("model",):  # a pre-export card's name of the zip
        card.pop(stale, None)
    card |= {
        "format": FORMAT,
        "weights": npz_path.name,
        "sha256": sha,
        "feature_schema": schema_hash(),
        "obs": {"queue_slots": obs.queue_slots, "running_slots": obs.running_slots,
                "head_slots": obs.head_slots, "preemption": obs.preemption,
                "estimator": obs.estimator},
        "network": {"kind": KIND, "dim": actor.dim, "features": features()},
    }
    if sb3_zip:
        card["sb3_zip"] = {"file": sb3_zip[0], "sha256": sb3_zip[1]}
    atomic.write_text(card_path, json.dumps(card, indent=2) + "\n")
    return card


def write_weights(arrays: dict[str, np.ndarray], npz_path: Path) -> str:
    """Writes the arrays as float32 members of ``npz_path`` (atomically) and returns the
    file's sha256, which the card records (``read_weights`` checks it)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()})
    data = buf.getvalue()
    atomic.write_bytes(npz_path, data)
    return trust.sha256_bytes(data)


def read_card(card_path: Path) -> dict:
    """The card at ``card_path``, parsed but not yet checked."""
    what = f"model {card_path}"
    if not card_path.is_file():
        raise ConfigError(f"{what}: file not found (train one with `autoflow train`)")
    if card_path.stat().st_size > MAX_CARD_BYTES:
        raise ConfigError(f"{what}: a card larger than {MAX_CARD_BYTES:,} bytes")
    try:
        card = json.loads(card_path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what}: not a JSON model card ({trust.why(e)})") from e
    if not isinstance(card, dict):
        raise ConfigError(f"{what}: not a model card (a JSON object)")
    return card


def is_safe_card(card: dict) -> bool:
    return card.get("format") == FORMAT


def load(card_path: str | Path) -> SafeModel:
    """The model of the card at ``card_path`` and the weights it names, checked."""
    card_path = Path(card_path)
    what = f"model {card_path}"
    card = read_card(card_path)
    if not is_safe_card(card):
        raise ConfigError(f"{what}: not an autoflow model card (format {FORMAT!r}); export "
                          f"an SB3 zip with `autoflow models export`")
    schema = card.get("feature_schema")
    if schema != schema_hash():
        raise ConfigError(f"{what}: it records feature schema {schema}, this autoflow's is "
                          f"{schema_hash()}; retrain it with `autoflow train`")
    net, obs_d = card.get("network"), card.get("obs")
    if not isinstance(net, dict) or net.get("kind") != KIND:
        raise ConfigError(f"{what}: network must be {{\"kind\": \"{KIND}\", ...}}")
    dim = net.get("dim")
    if type(dim) is not int or not 1 <= dim <= MAX_DIM:
        raise ConfigError(f"{what}: network.dim must be an integer in [1, {MAX_DIM}]")
    if net.get("features") != features():
        raise ConfigError(f"{what}: its observation has features {net.get('features')}, "
                          f"this autoflow has {features()}; retrain it with `autoflow train`")
    obs = _obs_config(obs_d, what)
    shapes = array_shapes(net["features"]["jobs"], net["features"]["running"],
                          net["features"]["cluster"], dim)
    arrays = read_weights(card, card_path, shapes, what)
    actor = NumpyActor.from_arrays(arrays, obs.queue_slots, obs.running_slots, dim)
    return SafeModel(actor, obs, card, str(card_path))


def read_weights(card: dict, card_path: Path, shapes: dict[str, tuple],
                 what: str) -> dict[str, np.ndarray]:
    """The arrays of the npz the card names (``weights``: a file beside the card): no
    larger than ``shapes`` allow, matching the card's ``sha256``, exactly those members,
    float32 and finite (``_read_arrays``)."""
    weights = card.get("weights")
    if not isinstance(weights, str) or Path(weights).name != weights or \
            not weights.endswith(".npz"):
        raise ConfigError(f"{what}: weights must name an .npz file beside the card")
    npz_path = card_path.parent / weights
    if not npz_path.is_file():
        raise ConfigError(f"{what}: its weights {npz_path} are missing")
    limit = sum(4 * int(np.prod(s)) + 512 for s in shapes.values()) + 64 * 1024
    if npz_path.stat().st_size > limit:
        raise ConfigError(f"{what}: {npz_path} is larger than the weights of this network")
    data = npz_path.read_bytes()
    if trust.sha256_bytes(data) != card.get("sha256"):
        raise ConfigError(f"{what}: {npz_path.name} does not match the sha256 in its card "
                          f"(changed since it was written); export or train the model again")
    return _read_arrays(data, shapes, f"{what}: {npz_path.name}")


def _obs_config(d, what: str) -> ObsConfig:
    if not isinstance(d, dict):
        raise ConfigError(f"{what}: obs must be an object")
    q, r, h, p = (d.get(k) for k in ("queue_slots", "running_slots", "head_slots",
                                      "preemption"))
    for name, v, lo in (("queue_slots", q, 1), ("running_slots", r, 1), ("head_slots", h, 0)):
        if type(v) is not int or not lo <= v <= MAX_SLOTS:
            raise ConfigError(f"{what}: obs.{name} must be an integer in [{lo}, {MAX_SLOTS}]")
    if h > q:
        raise ConfigError(f"{what}: obs.head_slots ({h}) exceeds obs.queue_slots ({q})")
    if type(p) is not bool:
        raise ConfigError(f"{what}: obs.preemption must be true or false")
    est = d.get("estimator", "history")  # cards before issue 19: the history estimate
    if est not in ("history", "ssl"):  # a card names no other file to load
        raise ConfigError(f"{what}: obs.estimator must be history or ssl (the predictor "
                          f"shipped with autoflow), got {est!r}")
    return ObsConfig(queue_slots=q, running_slots=r, head_slots=h, preemption=p,
                     estimator=est)


def _read_arrays(data: bytes, shapes: dict[str, tuple], what: str) -> dict[str, np.ndarray]:
    """The arrays of an npz, exactly the members ``shapes`` names, each float32 of its
    shape and finite; members are size-checked before any is read (no zip bomb)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = {i.filename: i for i in z.infolist()}
            want = {f"{k}.npy" for k in shapes}
            if set(infos) != want:
                extra, missing = sorted(set(infos) - want), sorted(want - set(infos))
                raise ConfigError(f"{what}: unexpected members {extra[:3]} or missing "
                                  f"{missing[:3]}")
            for k, s in shapes.items():
                if infos[f"{k}.npy"].file_size > 4 * int(np.prod(s)) + 512:
                    raise ConfigError(f"{what}: member {k} is larger than its shape {s}")
        out = {}
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            for k, s in shapes.items():
                a = npz[k]
                if a.dtype != np.float32 or a.shape != s:
                    raise ConfigError(f"{what}: {k} must be float32 of shape {s}, got "
                                      f"{a.dtype} {a.shape}")
                if not np.isfinite(a).all():
                    raise ConfigError(f"{what}: {k} holds a value that is not finite")
                out[k] = a
    except ConfigError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        # allow_pickle=False: an object array is a ValueError here, never unpickled
        raise ConfigError(f"{what}: not a valid weights file ({trust.why(e)})") from e
    return out
