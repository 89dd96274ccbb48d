"""Trace sources: ``FORMAT:PATH`` (or ``builtin:NAME``) -> Workload."""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from ..workload import Workload
from .base import ImportOptions

# format name -> module (inside autoflow.traces) with ``load(path, opts) -> Workload``
FORMATS: dict[str, str] = {
    "itp": "itp",
    "alibaba-openb": "alibaba_openb",
    "alibaba-dlrm": "alibaba_dlrm",
    "helios": "helios",
    "tiresias": "tiresias",
    "swf": "swf",
    "csv": "normalized",
    "builtin": "builtin",
}


def parse_source(source: str) -> tuple[str, str]:
    if ":" not in source:
        raise ConfigError(f"trace source {source!r} must be FORMAT:PATH (formats: "
                          f"{', '.join(FORMATS)}), e.g. itp:cluster08.csv or builtin:philly-mix")
    fmt, _, path = source.partition(":")
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown trace format {fmt!r} in {source!r}; known formats: "
                          f"{', '.join(FORMATS)}")
    if not path:
        raise ConfigError(f"trace source {source!r} names no path")
    return fmt, path


def load_workload(source: str, *, skip_bad_rows: bool = False, seed: int = 0) -> Workload:
    fmt, path = parse_source(source)
    module = importlib.import_module(f".{FORMATS[fmt]}", __package__)
    return module.load(path, ImportOptions(skip_bad_rows=skip_bad_rows, seed=seed))
