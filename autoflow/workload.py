"""Workload: an ordered collection of jobs plus where it came from."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .job import INFERENCE, TRAINING, Job


@dataclass
class ImportSummary:
    """What an importer read, kept and skipped (and why). Nothing is dropped silently."""

    source: str = ""
    rows_read: int = 0
    jobs: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> rows
    notes: dict = field(default_factory=dict)  # documented choices, e.g. {"censored": 123}

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict:
        return {"source": self.source, "rows_read": self.rows_read, "jobs": self.jobs,
                "rows_skipped": self.rows_skipped, "skipped": dict(self.skipped),
                "notes": dict(self.notes)}


@dataclass
class Workload:
    jobs: list[Job]
    source: str = ""
    summary: ImportSummary = field(default_factory=ImportSummary)

    def __post_init__(self) -> None:
        # stable order by submit time, then by position in the source
        self.jobs = sorted(self.jobs, key=lambda j: j.submit_time)

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def __getitem__(self, i: int) -> Job:
        return self.jobs[i]

    @property
    def span(self) -> float:
        """Seconds from the first to the last submission (at least 1)."""
        if not self.jobs:
            return 0.0
        return max(1.0, self.jobs[-1].submit_time - self.jobs[0].submit_time)

    def durations(self) -> np.ndarray:
        return np.array([j.duration for j in self.jobs if j.duration is not None], dtype=float)

    def offered_gpu_seconds(self) -> float:
        return float(sum(j.gpu_demand * (j.duration or 0.0) for j in self.jobs))

    def kinds(self) -> Counter:
        return Counter(j.kind for j in self.jobs)

    def gpu_mix(self) -> Counter:
        return Counter(j.num_gpus for j in self.jobs)

    def shifted(self) -> Workload:
        """A copy whose first submission is at t=0."""
        if not self.jobs:
            return self
        t0 = self.jobs[0].submit_time
        from dataclasses import replace
        return Workload([replace(j, submit_time=j.submit_time - t0) for j in self.jobs],
                        self.source, self.summary)

    def head(self, n: int) -> Workload:
        return Workload(self.jobs[:n], self.source, self.summary)

    def with_unknown_durations(self) -> list[Job]:
        return [j for j in self.jobs if j.duration is None]

    def training_share(self) -> float:
        c = self.kinds()
        n = c[TRAINING] + c[INFERENCE]
        return c[TRAINING] / n if n else 0.0
