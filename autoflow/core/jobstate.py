"""The scheduler core's record of one job: where it is in its life and what it has received.

The true duration of a job is not in it while the job has not completed: ``job`` is the
job as submitted with ``duration=None`` (the core replaces it by the job with its
observed duration at completion), and ``duration`` raises :class:`OracleError` before
then. Only a run whose policy is marked *oracle* is handed the truth up front
(``reveal``), by a backend that knows it (the simulator). So a non-oracle policy, or the
learned agent's observation, cannot read the future by accident.
"""

from __future__ import annotations

from ..errors import AutoflowError
from ..job import Job
from ..state import Placement, Req

WAITING, RUNNING, DONE = "waiting", "running", "done"
HELD = "held"  # submitted, waiting for the jobs it depends on (``autoflow.workflow``)


class OracleError(AutoflowError):
    """Code that is not an oracle read a true duration before the job completed."""


class JobState:
    __slots__ = (
        "attained",
        "failures",
        "finish",
        "first_start",
        "gpu_seconds",
        "idx",
        "job",
        "last_run",
        "placement",
        "predicted",
        "preemptions",
        "priority",
        "progress",
        "queue_since",
        "req",
        "run_seconds",
        "seg_overhead",
        "seg_progress0",
        "seg_start",
        "start_seq",
        "starts",
        "status",
        "submit",
        "truth",
        "version",
    )

    def __init__(self, idx: int, job: Job, req: Req):
        self.idx = idx
        self.job = job
        self.req = req
        self.status = WAITING
        self.submit = job.submit_time
        self.first_start: float | None = None
        self.finish: float | None = None
        self.progress = 0.0  # seconds of useful work done (checkpointed)
        self.attained = 0.0  # GPU-seconds received (Tiresias' 2-D attained service)
        self.seg_start = 0.0  # start of the current run segment
        self.seg_overhead = 0.0  # restart overhead paid at the start of this segment
        self.seg_progress0 = 0.0
        self.version = 0  # bumps at every start and stop; stale completions are ignored
        self.placement: Placement | None = None
        self.preemptions = 0
        self.failures = 0
        self.starts = 0
        self.start_seq = 0  # order of this segment's start among all starts of the run
        self.predicted: float = 0.0  # predicted duration (history estimator)
        self.gpu_seconds = 0.0  # GPU-time allocated, for the conservation invariant
        self.run_seconds = 0.0  # wall time spent running (all segments)
        self.priority = 0  # scratch for policies (LAS: the queue level)
        self.queue_since = job.submit_time
        self.last_run = 0.0  # length of the last run segment
        self.truth: float | None = None  # the true duration, for oracle runs only

    def reveal(self, duration: float) -> None:
        """Hands an oracle policy's run the true duration (simulated backends only)."""
        self.truth = float(duration)

    @property
    def duration(self) -> float:
        """The true duration: in oracle runs, or once the job has completed."""
        if self.truth is not None:
            return self.truth
        if self.status == DONE and self.job.duration is not None:
            return float(self.job.duration)
        raise OracleError(f"the true duration of job {self.job.job_id} was read before it "
                          "completed: only policies marked oracle may read it")

    @property
    def preemptible(self) -> bool:
        return self.job.preemptible

    def running_progress(self, now: float) -> float:
        """Useful work including the current segment (not yet checkpointed)."""
        if self.status != RUNNING:
            return self.progress
        return self.progress + max(0.0, now - self.seg_start - self.seg_overhead)

    def attained_at(self, now: float) -> float:
        if self.status != RUNNING:
            return self.attained
        return self.attained + self.job.gpu_demand * (now - self.seg_start)

    def remaining(self, now: float) -> float:
        """True remaining work: oracle policies only."""
        return max(0.0, self.duration - self.running_progress(now))

    def __repr__(self) -> str:
        return f"JobState({self.job.job_id}, {self.status})"
