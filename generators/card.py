"""The card written beside every generator file: what it is, its content hash and the
hash of the table schema it was fitted on.

``NAME.card.json`` beside ``NAME``: ``sha256`` of the generator file, ``schema_sha256``
of the attribute table (``generators.table``'s columns), the model, source, seed and
versions, and for a generator with pipelines what it learned of them (``pipelines``:
shapes, workflows, stages, their share of the jobs). Loading checks the card when it is
there: a file changed since autoflow wrote it, or one fitted on another table schema, is
refused with the reason. (A pickle is unpickled only when its hash is trusted, card or
not: ``autoflow.trust``.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from autoflow import jsonsafe, trust
from autoflow.errors import ConfigError
from autoflow.manifest import versions

from .table import CATEGORICAL, NUMERICAL

CARD_FORMAT = "autoflow-generator-card/1"
MAX_CARD_BYTES = 1 << 20


def schema_hash() -> str:
    """Changes whenever the columns a generator models change."""
    spec = {"categorical": list(CATEGORICAL), "numerical": list(NUMERICAL)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def card_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".card.json")


def write(path: str | Path, data: bytes, file_format: str, describe: dict) -> Path:
    card = {"format": CARD_FORMAT, "file": Path(path).name, "file_format": file_format,
            "sha256": trust.sha256_bytes(data), "schema_sha256": schema_hash(),
            "generator": {k: describe.get(k) for k in ("model", "source", "seed", "table")},
            "versions": versions()}
    if describe.get("pipelines") is not None:
        card["generator"]["pipelines"] = describe["pipelines"]
    out = card_path(path)
    jsonsafe.write(out, card)
    return out


def check(path: str | Path, data: bytes, what: str) -> dict | None:
    """The card beside ``path`` checked against the file's bytes; None when there is none."""
    cp = card_path(path)
    if not cp.is_file():
        return None
    if cp.stat().st_size > MAX_CARD_BYTES:
        raise ConfigError(f"{what}: its card {cp.name} is larger than {MAX_CARD_BYTES:,} bytes")
    try:
        card = json.loads(cp.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{what}: its card {cp.name} is not JSON ({e})") from e
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ConfigError(f"{what}: its card {cp.name} is not a generator card "
                          f"({CARD_FORMAT})")
    if card.get("sha256") != trust.sha256_bytes(data):
        raise ConfigError(f"{what}: does not match the sha256 in its card {cp.name} "
                          f"(changed since it was written); fit it again")
    if card.get("schema_sha256") != schema_hash():
        raise ConfigError(f"{what}: its card records table schema "
                          f"{card.get('schema_sha256')}, this autoflow's is {schema_hash()}; "
                          f"fit it again with `autoflow generate fit`")
    return card
