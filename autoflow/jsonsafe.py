"""Strict JSON for every file autoflow writes (results, manifests, summaries, reports).

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which are not JSON: other
readers reject the file. ``dumps`` replaces a non-finite float by ``null`` (a metric that
has no value, e.g. a percentile of no jobs), converts numpy scalars and arrays, and
serializes with ``allow_nan=False`` so that nothing non-finite can slip through.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def finite(obj: Any) -> Any:
    """A copy of ``obj`` with non-finite floats as None and numpy values as Python ones."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k if isinstance(k, str | int | float | bool) or k is None else str(k): finite(v)
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return finite(tolist())
    return obj


def dumps(obj: Any, *, indent: int | None = 2, default=None, **kw) -> str:
    """``json.dumps`` that always writes strict JSON (see the module docstring)."""
    return json.dumps(finite(obj), indent=indent, default=default, allow_nan=False, **kw)


def write(path: str | Path, obj: Any, **kw) -> None:
    """Strict JSON, saved atomically (``autoflow.atomic``: a temporary file, then a rename)."""
    from .atomic import write_text

    write_text(path, dumps(obj, **kw) + "\n")
