"""The job model: one unit of work submitted to the cluster.

A job is either *training* (batch, preemptible with a restart cost) or *inference*
(a latency-sensitive service with a start-delay SLO, never preempted). A job may be a
stage of a workflow (``workflow_id``) and depend on other jobs (``depends_on``): it is
eligible to start only once every one of them has succeeded (``autoflow.workflow``). Its true
``duration`` is known to the simulator and may only be read by policies marked oracle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .limits import MAX_DURATION_S, MAX_TIME_S

TRAINING = "training"
INFERENCE = "inference"
KINDS = (TRAINING, INFERENCE)
WHOLE_GPU = 1000  # GPU shares are counted in thousandths of one GPU

BOUNDED_SLOWDOWN_MIN_S = 10.0  # jobs shorter than this count as this long in slowdown

@dataclass(slots=True)
class Job:
    """One job as submitted.

    ``gpu_milli`` is the share of each GPU in thousandths: 1000 for whole GPUs, less
    than 1000 only when ``num_gpus == 1`` (a fractionally shared GPU). ``gpu_types`` is
    the set of allowed GPU types; empty means any type.
    """

    job_id: str
    submit_time: float
    duration: float | None
    num_gpus: int = 1
    gpu_milli: int = WHOLE_GPU
    gpu_types: tuple[str, ...] = ()
    kind: str = TRAINING
    qos: str = ""
    cpu_milli: int = 0
    memory_mib: int = 0
    user: str = ""
    group: str = ""
    slo_s: float | None = None
    censored: bool = False
    extra: dict = field(default_factory=dict)
    workflow_id: str = ""  # the workflow (pipeline run) the job is a stage of; "" = none
    depends_on: tuple[str, ...] = ()  # job ids that must succeed before this one may start

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"job {self.job_id}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.job_id in self.depends_on:
            raise ValueError(f"job {self.job_id}: depends_on names the job itself")
        if self.num_gpus < 0:
            raise ValueError(f"job {self.job_id}: num_gpus must be >= 0, got {self.num_gpus}")
        if not 0 <= self.gpu_milli <= WHOLE_GPU:
            raise ValueError(f"job {self.job_id}: gpu_milli must be in 0..1000, got {self.gpu_milli}")
        if self.num_gpus > 1 and self.gpu_milli != WHOLE_GPU:
            raise ValueError(f"job {self.job_id}: only single-GPU jobs may share a GPU "
                             f"(num_gpus={self.num_gpus}, gpu_milli={self.gpu_milli})")
        if self.num_gpus == 0:
            self.gpu_milli = 0
        if self.duration is not None and self.duration < 0:
            raise ValueError(f"job {self.job_id}: negative duration {self.duration}")
        # bounded so that no job can make a load, a cluster size or a metric meaningless
        if self.duration is not None and not (math.isfinite(self.duration)
                                              and self.duration <= MAX_DURATION_S):
            raise ValueError(f"job {self.job_id}: duration {self.duration:g} s is not a finite "
                             f"number <= {MAX_DURATION_S:g} s (about 31.7 years)")
        if not (math.isfinite(self.submit_time) and abs(self.submit_time) <= MAX_TIME_S):
            raise ValueError(f"job {self.job_id}: submit time {self.submit_time:g} s is not a "
                             f"finite number within +-{MAX_TIME_S:g} s")

    @property
    def is_fractional(self) -> bool:
        return self.num_gpus == 1 and self.gpu_milli < WHOLE_GPU

    @property
    def gpu_demand(self) -> float:
        """GPUs held while running (a fractional share counts as its fraction)."""
        if self.num_gpus == 0:
            return 0.0
        return self.num_gpus * self.gpu_milli / WHOLE_GPU

    @property
    def preemptible(self) -> bool:
        return self.kind == TRAINING
