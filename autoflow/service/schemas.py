"""Request and response bodies of the API (pydantic): the names are interfaces."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..limits import MAX_CPU_MILLI, MAX_DURATION_S, MAX_GPUS_PER_NODE, MAX_MEMORY_MIB, MAX_NODES

MAX_EVENTS_PER_REQUEST = 1000
NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"
MAX_JOB_GPUS = 100_000
MAX_DEPENDS_ON = 1000  # parents of one job
RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"  # a workflow run's id (its jobs: RUN-STAGE[-r])
JobId = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class NodeIn(Strict):
    name: str = Field(min_length=1, max_length=200, pattern=NAME)
    gpu_type: str = Field(min_length=1, max_length=100)
    gpus: int = Field(ge=0, le=MAX_GPUS_PER_NODE)
    cpu_milli: int = Field(0, ge=0, le=MAX_CPU_MILLI, description="0: not tracked")
    memory_mib: int = Field(0, ge=0, le=MAX_MEMORY_MIB, description="0: not tracked")


class ClusterIn(Strict):
    name: str = Field(min_length=1, max_length=200, pattern=NAME)
    nodes: list[NodeIn] = Field(min_length=1, max_length=MAX_NODES)

    @model_validator(mode="after")
    def unique_names(self):
        seen: set[str] = set()
        for i, n in enumerate(self.nodes):
            if n.name in seen:
                raise ValueError(f"nodes[{i}].name: {n.name!r} appears twice")
            seen.add(n.name)
        return self


class RuntimeEnvIn(Strict):
    """What a job's processes need beyond the worker's environment (Ray's runtime_env,
    the keys autoflow passes through)."""

    env_vars: dict[str, str] = Field(default_factory=dict, max_length=200)
    working_dir: str | None = Field(None, min_length=1, max_length=1000)
    pip: list[str] = Field(default_factory=list, max_length=200)


class JobIn(Strict):
    """A job as submitted: the normalized job fields except its true duration."""

    job_id: str | None = Field(None, min_length=1, max_length=200, pattern=NAME,
                               description="optional; generated when absent")
    num_gpus: int = Field(1, ge=0, le=MAX_JOB_GPUS)
    gpu_milli: int = Field(1000, ge=1, le=1000,
                           description="share of each GPU in thousandths (single-GPU jobs)")
    gpu_types: list[str] = Field(default_factory=list, max_length=64,
                                 description="allowed GPU types; empty: any")
    kind: Literal["training", "inference"] = "training"
    qos: str = Field("", max_length=100)
    cpu_milli: int = Field(0, ge=0, le=MAX_CPU_MILLI)
    memory_mib: int = Field(0, ge=0, le=MAX_MEMORY_MIB)
    user: str = Field("", max_length=200)
    slo_s: float | None = Field(None, gt=0, le=31_536_000,
                                description="start-delay SLO of an inference job")
    duration_estimate_s: float | None = Field(None, gt=0, le=MAX_DURATION_S)
    entrypoint: str | None = Field(None, min_length=1, max_length=4000,
                                   description="what the job runs under --executor ray: a "
                                   "command, or module:function; without one it holds its "
                                   "GPUs for duration_estimate_s")
    runtime_env: RuntimeEnvIn | None = None
    workflow_id: str | None = Field(None, min_length=1, max_length=200, pattern=NAME,
                                    description="the workflow (pipeline run) the job is a "
                                    "stage of")
    depends_on: list[JobId] = Field(default_factory=list, max_length=MAX_DEPENDS_ON,
                                    description="ids of jobs that must succeed before this "
                                    "one may start (each must exist)")

    @model_validator(mode="after")
    def parents(self):
        seen: set[str] = set()
        for i, p in enumerate(self.depends_on):
            if p in seen:
                raise ValueError(f"depends_on[{i}]: {p!r} appears twice")
            if p == self.job_id:
                raise ValueError(f"depends_on[{i}]: the job cannot depend on itself")
            seen.add(p)
        return self

    @model_validator(mode="after")
    def runnable(self):
        from ..execution.entrypoints import check_env, parse_entrypoint

        if self.entrypoint is not None:
            parse_entrypoint(self.entrypoint)  # its errors name the entrypoint
        try:
            if self.runtime_env is not None:
                check_env(self.runtime_env.env_vars)
        except ValueError as e:
            raise ValueError(f"runtime_env.env_vars: {str(e).removeprefix('env: ')}") from None
        return self

    @model_validator(mode="after")
    def shares(self):
        if self.num_gpus > 1 and self.gpu_milli != 1000:
            raise ValueError("gpu_milli: only single-GPU jobs may share a GPU "
                             f"(num_gpus={self.num_gpus}, gpu_milli={self.gpu_milli})")
        if any(not t or len(t) > 100 for t in self.gpu_types):
            raise ValueError("gpu_types: each type is 1..100 characters")
        return self


class JobAccepted(BaseModel):
    job_id: str
    state: str


class WorkflowIn(Strict):
    """One run of a workflow template (``POST /v1/workflows``)."""

    template: dict[str, Any] = Field(description="a workflow template: {name, schedule?, "
                                     "stages: [...]} as autoflow.workflow_file reads it")
    run: str | None = Field(None, min_length=1, max_length=100, pattern=RUN_ID,
                            description="the run's id (its workflow_id); default "
                            "NAME-<12 hex>")


class WorkflowCreated(BaseModel):
    workflow_id: str
    jobs: list[str]


class EventIn(Strict):
    event: Literal["started", "finished", "failed", "preempted"]
    time: float | None = Field(None, ge=-1e11, le=1e11,
                               description="cluster seconds; default: when received")
    message: str | None = Field(None, max_length=2000)


class JobEventIn(EventIn):
    job_id: str = Field(min_length=1, max_length=200)


class EventsIn(Strict):
    """Several executor events in one request (``POST /v1/events``)."""

    events: list[JobEventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class PolicyIn(Strict):
    policy: str = Field(min_length=1, max_length=500,
                        description="any registered policy, rl:PATH included")
