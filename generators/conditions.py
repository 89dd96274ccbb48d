"""Conditions on sampled jobs: ``COL OP VALUE[@FRACTION]``.

``kind=inference`` keeps only inference jobs; ``num_gpus>=2@0.3`` makes 30% of the jobs
multi-GPU (the rest are drawn from the jobs that are not). Columns are job attributes
(``kind``, ``num_gpus``, ``gpu_milli``, ``gpu_types``, ``qos``, ``user``, ``duration``,
``cpu_milli``, ``memory_mib``); operators ``=``, ``!=``, ``>=``, ``<=``, ``>``, ``<``.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from autoflow.errors import ConfigError
from autoflow.job import Job

FIELDS = {"kind": str, "num_gpus": float, "gpu_milli": float, "gpu_types": str, "qos": str,
          "user": str, "duration": float, "cpu_milli": float, "memory_mib": float}
OPS = {"=": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
       ">": operator.gt, "<": operator.lt}
_PATTERN = re.compile(r"^\s*(\w+)\s*(!=|>=|<=|=|>|<)\s*([^@]+?)\s*(?:@\s*([0-9.]+))?\s*$")


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: object
    fraction: float | None = None  # None: every job satisfies it

    def __call__(self, job: Job) -> bool:
        v = getattr(job, self.column)
        if self.column == "gpu_types":
            v = "|".join(v)
        return OPS[self.op](v, self.value)

    def __str__(self) -> str:
        frac = "" if self.fraction is None else f"@{self.fraction:g}"
        return f"{self.column}{self.op}{self.value}{frac}"


def parse_condition(text: str) -> Condition:
    m = _PATTERN.match(text)
    if not m:
        raise ConfigError(f"condition {text!r}: write COLUMN OP VALUE[@FRACTION], "
                          "e.g. kind=inference or num_gpus>=2@0.3")
    col, op, raw, frac = m.groups()
    if col not in FIELDS:
        raise ConfigError(f"condition {text!r}: unknown column {col!r}; known: "
                          f"{', '.join(FIELDS)}")
    cast = FIELDS[col]
    if cast is str and op not in ("=", "!="):
        raise ConfigError(f"condition {text!r}: column {col!r} takes only = or !=")
    try:
        value = cast(raw)
    except ValueError:
        raise ConfigError(f"condition {text!r}: {raw!r} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"condition {text!r}: {raw!r} is not a finite number")
    fraction = None
    if frac is not None:
        fraction = float(frac)
        if not 0 < fraction <= 1:
            raise ConfigError(f"condition {text!r}: fraction must be in (0, 1], got {frac}")
    return Condition(col, op, value, fraction)
