"""A model's files as the registry sees them (``loop.registry``): where its card and its
weights are, the card's sha256 (the model's content hash) and whether the weights match
what the card records; copies that are on disk before they are renamed into place.

Layouts: an adaptive (or rl) model's ``NAME.json`` naming ``NAME.npz`` beside it; a
predictor folder (``model.json``) or an encoder folder (``encoder.json`` +
``encoder.pt``); a generator ``NAME`` with ``NAME.card.json`` beside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import trust
from ..errors import ConfigError

SHA_RE = re.compile(r"[0-9a-f]{64}")
FOLDER_CARDS = (("model.json", None), ("encoder.json", "encoder.pt"))
GENERATOR_CARD = ".card.json"
MAX_CARD_BYTES = 1 << 20


# -- what a path holds ----------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    root: Path  # the folder holding card and weights (the model's own folder if a folder)
    folder: bool  # registered and stored as a whole folder
    card_name: str
    weights_name: str
    load_name: str | None  # the file its loader takes (None: the folder)
    card: dict
    card_sha: str  # the content hash


def _read_card(path: Path) -> tuple[dict, str]:
    try:
        size = path.stat().st_size
        if size > MAX_CARD_BYTES:
            raise ConfigError(f"{path}: a model card larger than {MAX_CARD_BYTES:,} bytes")
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e.strerror or e}") from None
    try:
        card = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a JSON model card ({trust.why(e)})") from None
    if not isinstance(card, dict):
        raise ConfigError(f"{path}: not a model card (a JSON object)")
    return card, trust.sha256_bytes(data)


def _file_beside(name, card_path: Path, field: str) -> str:
    if (not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name
            or "\\" in name or name == card_path.name):
        raise ConfigError(f"{card_path}: its {field} field must name a file beside it, "
                          f"got {name!r}")
    return name


def _recorded_sha(card: dict, card_path: Path) -> None:
    sha = card.get("sha256")
    if not isinstance(sha, str) or not SHA_RE.fullmatch(sha):
        raise ConfigError(f"{card_path}: the card records no sha256 of its weights "
                          f"(64 hex characters), so it cannot be verified")


def inspect_model(path: Path) -> Layout:
    """The card, weights and layout of a model at ``path`` (nothing verified but the
    card's form)."""
    if path.is_dir():
        for card_name, default_weights in FOLDER_CARDS:
            if (path / card_name).is_file():
                break
        else:
            raise ConfigError(f"{path}: a model folder holds model.json (a predictor) or "
                              f"encoder.json (an encoder); this one holds neither")
        card, sha = _read_card(path / card_name)
        weights = _file_beside(card.get("weights", default_weights), path / card_name,
                               "weights")
        _recorded_sha(card, path / card_name)
        return Layout(path, True, card_name, weights, None, card, sha)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file or folder")
    if path.name.endswith(GENERATOR_CARD) and len(path.name) > len(GENERATOR_CARD):
        card, sha = _read_card(path)  # NAME.card.json, for NAME
        gen = _file_beside(card.get("file"), path, "file")
        _recorded_sha(card, path)
        return Layout(path.parent, False, path.name, gen, gen, card, sha)
    beside = path.with_name(path.name + GENERATOR_CARD)
    if beside.is_file():  # a generator named by its file
        card, sha = _read_card(beside)
        if card.get("file") != path.name:
            raise ConfigError(f"{beside}: its file field must name {path.name}, "
                              f"got {card.get('file')!r}")
        _recorded_sha(card, beside)
        return Layout(path.parent, False, beside.name, path.name, path.name, card, sha)
    card, sha = _read_card(path)
    if "weights" not in card:
        raise ConfigError(f"{path}: not a model card (no weights field naming its weights "
                          f"file)")
    weights = _file_beside(card["weights"], path, "weights")
    _recorded_sha(card, path)
    return Layout(path.parent, False, path.name, weights, path.name, card, sha)


def weights_problem(lay: Layout) -> str | None:
    """Why the weights do not match the card (None: they do)."""
    w = lay.root / lay.weights_name
    if not w.is_file():
        return f"its weights file {lay.weights_name} is missing"
    try:
        got = trust.sha256_file(w)
    except OSError as e:
        return f"cannot read {lay.weights_name}: {e.strerror or e}"
    if got != lay.card["sha256"]:
        return (f"{lay.weights_name} does not match the sha256 its card records "
                f"({got[:12]}… vs {lay.card['sha256'][:12]}…: changed or corrupted)")
    return None


def content_hash(path: str | Path) -> str:
    """The registry's key of the model at ``path``: the sha256 of its card."""
    return inspect_model(Path(path).expanduser()).card_sha


def card_schema(card: dict) -> str | None:
    for key in ("feature_schema", "schema_sha256"):  # model cards; generator cards
        if isinstance(card.get(key), str):
            return card[key]
    if isinstance(card.get("features"), dict):  # predictor and encoder cards: the schema
        return schema_hash(card["features"])
    return None


def schema_hash(schema) -> str:
    return trust.sha256_bytes(json.dumps(schema, sort_keys=True).encode())[:16]


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def copy_synced(src, dst) -> str:
    shutil.copyfile(src, dst)
    with open(dst, "rb+") as f:
        os.fsync(f.fileno())
    return str(dst)
