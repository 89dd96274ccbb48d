"""The scheduler core: state, queue, running set, bookkeeping and the policy's pass, on
whatever backend carries the decisions out (``backend.Backend``)."""

from .backend import Backend, Meter, NullMeter
from .jobstate import DONE, RUNNING, WAITING, JobState, OracleError
from .plan import Preempt, Start, plan
from .scheduler import SchedulerCore, SchedulingError

__all__ = ["DONE", "RUNNING", "WAITING", "Backend", "JobState", "Meter", "NullMeter",
           "OracleError", "Preempt", "SchedulerCore", "SchedulingError", "Start", "plan"]
