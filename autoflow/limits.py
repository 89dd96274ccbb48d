"""Documented bounds on what autoflow accepts, and the checks that enforce them.

Every numeric command-line flag has a valid range (``FLAG_RANGES``), checked before
anything runs: a value outside it is a :class:`~autoflow.errors.ConfigError` that the CLI
prints as one ``error: ...`` line (exit code 2). Sizes read from files (cluster node
counts, GPUs per node, job durations and times) are bounded too, so that no input can
make autoflow build something without bound or print a number that means nothing.
The table in ``docs/hardening.md`` lists the cases.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

# -- sizes read from files ------------------------------------------------------------------
MAX_NODES = 100_000  # nodes in one cluster (the Alibaba openb list has 1,213)
MAX_GPUS_PER_NODE = 128  # GPUs on one node (real nodes have 1-16)
MAX_CPU_MILLI = 10**9  # CPU of one node, thousandths of a core (a million cores)
MAX_MEMORY_MIB = 10**12  # memory of one node (about an exabyte)
MAX_DURATION_S = 1e9  # a job's duration: about 31.7 years
MAX_TIME_S = 1e11  # a submit time (absolute epoch seconds fit: about 3,170 years)
MAX_BUILTIN_JOBS = 1_000_000  # builtin:NAME:JOBS
MAX_LOAD_GPUS = 100_000  # GPUs in a cluster that --load builds (and MAX_NODES nodes)


@dataclass(frozen=True)
class Range:
    """A valid range: ``lo``/``hi`` (None = unbounded), open or closed at each end."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        lo = f"{'>' if self.lo_open else '>='} {_num(self.lo)}" if self.lo is not None else ""
        hi = f"{'<' if self.hi_open else '<='} {_num(self.hi)}" if self.hi is not None else ""
        return " and ".join(x for x in (lo, hi) if x)

    def contains(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)


def _num(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:g}"


SEED = Range(0, 2**32 - 1, integer=True)

# flag -> valid range (documented in docs/hardening.md and the --help of each command)
FLAG_RANGES: dict[str, Range] = {
    # bench (and the simulator's SimConfig)
    "--load": Range(0, 100, lo_open=True),
    "--seeds": Range(1, 1000, integer=True),
    "--restart-overhead": Range(0, 86_400),
    "--checkpoint-interval": Range(0, 365 * 86_400),
    "--failure-rate": Range(0, 100),
    "--repair-time": Range(0, 30 * 86_400, lo_open=True),
    "--default-slo": Range(0, 365 * 86_400, lo_open=True),
    "--duration-prior": Range(0, MAX_DURATION_S, lo_open=True),
    # seeds of every command
    "--seed": SEED,
    # train
    "--timesteps": Range(0, 10**9, integer=True),
    "--imitation-episodes": Range(0, 100_000, integer=True),
    "--dagger-rounds": Range(0, 1000, integer=True),
    "--imitation-smoothing": Range(0, 0.5, hi_open=True),
    "--learning-rate": Range(0, 1, lo_open=True),
    "--clip-range": Range(0, 1, lo_open=True, hi_open=True),
    "--n-envs": Range(1, 256, integer=True),
    "--eval-every": Range(1, 10**9, integer=True),
    "--eval-episodes": Range(1, 10_000, integer=True),
    "--jobs-min": Range(1, 100_000, integer=True),
    "--jobs-max": Range(1, 100_000, integer=True),
    "--eval-jobs": Range(1, 100_000, integer=True),
    # generate
    "--epochs": Range(0, 100_000, integer=True),
    "-n": Range(1, 10_000_000, integer=True),
    "--load-scale": Range(0, 1000, lo_open=True),
    "--duration-cv": Range(0.05, 10, lo_open=True),
    "--burstiness": Range(0.05, 10, lo_open=True),
    "--sweep-share": Range(0, 1),
    "--sweep-len": Range(1, 1000),
    # serve (--restart-overhead and --default-slo as for bench)
    "--time-scale": Range(0, 1e6, lo_open=True),
    "--k8s-pod-sync": Range(0, 3600, lo_open=True),
}


def check_flag(flag: str, value: float | None) -> None:
    """Raises ConfigError unless ``value`` (None = not given) is in the flag's range."""
    if value is None:
        return
    r = FLAG_RANGES[flag]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{flag} must be a number, got {value!r}")
    if not r.contains(float(value)):
        extra = "; not a finite number" if not math.isfinite(float(value)) else ""
        raise ConfigError(f"{flag} must be {r.describe()}, got {value}{extra}")


def check_flags(**values: float | None) -> None:
    """``check_flags(restart_overhead=..., failure_rate=...)``: keyword = flag name."""
    for name, value in values.items():
        check_flag("-n" if name == "n" else "--" + name.replace("_", "-"), value)


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """The output folder must be a folder, or creatable, and writable: checked (and
    created) before any work, so that a long run is not lost at the end."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {path}: exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot create the folder: "
                          f"{e.strerror or e}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: the folder is not writable")
    return p


def check_output_file(path: str | Path, flag: str = "--out") -> Path:
    """An output file: not a folder, and its folder exists (or can be made) and is
    writable. An existing file is replaced."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder, expected a file name")
    parent = p.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot create {parent}: {e.strerror or e}") from None
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ConfigError(f"{flag} {path}: not writable")
    return p
