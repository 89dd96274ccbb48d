"""Which files autoflow may unpickle.

Loading a pickle (an SB3 ``.zip``: its ``data`` entry holds cloudpickled objects; an SDV
generator) can run any code the file's author chose. Autoflow writes what it can in
formats that carry no code (``.npz`` arrays read with ``allow_pickle=False`` and JSON:
the ``rl`` model export, the ``empirical`` generator) and unpickles a file only when

1. its SHA-256 is one autoflow recorded when it wrote the file, in the user's registry
   ``trusted.json`` under ``$AUTOFLOW_HOME`` (default ``$XDG_DATA_HOME/autoflow``, i.e.
   ``~/.local/share/autoflow``), or in a card shipped inside the package
   (``autoflow/models/*.json``: as trusted as the package's own code); or
2. the user named it with ``--trust-file PATH`` on this command (:func:`allow`).

The bytes are read once, hashed, and the very bytes hashed are unpickled (no window in
which the file could be swapped). A card written beside a model is *not* a source of
trust: whoever can plant a file can plant its card too. See the README, "Loading models
and generators", for the threat model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

from . import atomic
from .errors import ConfigError

REGISTRY_FORMAT = "autoflow-trusted/1"
MODELS_DIR = Path(__file__).resolve().parent / "models"
MAX_PICKLE_BYTES = 1 << 30  # a file to unpickle is read whole: refuse larger ones

_allowed: set[str] = set()  # resolved paths named by --trust-file in this process


class UntrustedFileError(ConfigError):
    """A file that would have to be unpickled and that nothing vouches for."""


def home() -> Path:
    """Autoflow's per-user data folder (``$AUTOFLOW_HOME``, else XDG data home)."""
    if os.environ.get("AUTOFLOW_HOME"):
        return Path(os.environ["AUTOFLOW_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "autoflow"


def registry_path() -> Path:
    return home() / "trusted.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_registry() -> dict:
    try:
        data = json.loads(registry_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def recorded_hashes() -> set[str]:
    """SHA-256s autoflow recorded writing (user registry) or ships (package cards)."""
    return set(_read_registry()) | shipped_hashes()


def shipped_hashes() -> set[str]:
    """The SB3 zips the package ships, by the hash their (package) cards record."""
    out = set()
    for card in MODELS_DIR.glob("*.json"):
        try:
            sha = json.loads(card.read_text(encoding="utf-8")).get("sb3_zip", {}).get("sha256")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(sha, str):
            out.add(sha)
    return out


def record(path: str | Path, sha256: str, kind: str) -> bool:
    """Adds a file autoflow just wrote to the user's registry. A registry that cannot be
    written is a warning (the file then loads with ``--trust-file``), not a failure."""
    reg = registry_path()
    try:
        reg.parent.mkdir(parents=True, exist_ok=True)
        with _locked(reg.with_name(reg.name + ".lock")):
            files = _read_registry()
            files[sha256] = {"kind": kind, "path": str(Path(path).resolve()),
                             "written": datetime.now(UTC).isoformat(timespec="seconds")}
            atomic.write_text(reg, json.dumps({"format": REGISTRY_FORMAT, "files": files},
                                              indent=1, sort_keys=True))
    except OSError as e:
        warnings.warn(f"could not record {path} in {reg} ({e.strerror or e}): load it "
                      f"with --trust-file {path}", stacklevel=2)
        return False
    return True


@contextlib.contextmanager
def _locked(lock: Path):
    with open(lock, "a") as f:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX: no lock
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def allow(path: str | Path) -> None:
    """``--trust-file PATH``: this process may unpickle the file at ``path``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--trust-file {path}: no such file")
    _allowed.add(str(p.resolve()))


def allow_all(paths) -> None:
    for p in paths or ():
        allow(p)


def forget_allowed() -> None:
    """Drops every ``--trust-file`` of this process (tests; a long-lived service)."""
    _allowed.clear()


def read_trusted(path: str | Path, what: str, alternative: str) -> bytes:
    """The bytes of ``path``, to be unpickled, if something vouches for them; otherwise an
    :class:`UntrustedFileError` saying why and what to do. ``what`` names the file in the
    message (``generator g.pkl``); ``alternative``: the safe way, for the message."""
    p = Path(path)
    size = p.stat().st_size
    if size > MAX_PICKLE_BYTES:
        raise ConfigError(f"{what}: {size:,} bytes, more than autoflow loads "
                          f"({MAX_PICKLE_BYTES:,})")
    data = p.read_bytes()
    if str(p.resolve()) in _allowed:
        return data
    sha = sha256_bytes(data)
    if sha in recorded_hashes():
        return data
    raise UntrustedFileError(
        f"{what}: refusing to unpickle it (a pickle can run code): autoflow did not record "
        f"writing this file (sha256 {sha[:16]}…, not in {registry_path()}); if you trust "
        f"its author pass --trust-file {path}, or {alternative}")


def why(e: Exception) -> str:
    """A loader's exception in words for a one-line error (no exception class names)."""
    msg = " ".join(str(e).split())
    if "allow_pickle" in msg:
        return "it holds an object array (a pickle), which autoflow never loads"
    return msg or type(e).__name__.removesuffix("Error").lower()
