"""Workflows: jobs that depend on other jobs (pipelines such as prepare → train →
evaluate → serve).

A job names the jobs it depends on (``Job.depends_on``) and, optionally, the workflow it
belongs to (``Job.workflow_id``). It becomes *eligible* (it joins the waiting queue) once
every job it depends on has succeeded; until then it is *held*. The scheduler core
enforces this for every backend (``core.scheduler``). A job that leaves without
succeeding (cancelled, or failed as its executor reported) takes every job that depends
on it, directly or not, with it: they are cancelled, with the reason naming the parent.
Holding them instead would leave them waiting for an input that will never come.

``check`` refuses a workload whose dependencies cannot be met: a dependency on a job
that is not in it, or a cycle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from .errors import ConfigError
from .job import Job


def check(jobs: Sequence[Job], origin: str = "workload") -> None:
    """A ConfigError naming the job and the field if a dependency is unknown or the
    dependencies form a cycle."""
    ids = {j.job_id for j in jobs}
    for j in jobs:
        for p in j.depends_on:
            if p not in ids:
                raise ConfigError(f"{origin}: job {j.job_id!r} field 'depends_on': no job "
                                  f"{p!r} in the workload")
    order = topological(jobs)
    if len(order) < len(jobs):
        stuck = sorted(ids - {j.job_id for j in order})
        raise ConfigError(f"{origin}: field 'depends_on': jobs {', '.join(stuck[:5])}"
                          f"{' …' if len(stuck) > 5 else ''} depend on each other in a cycle")


def children_of(jobs: Iterable[Job]) -> dict[str, list[str]]:
    """Job id → the ids of the jobs that depend on it directly."""
    out: dict[str, list[str]] = defaultdict(list)
    for j in jobs:
        for p in j.depends_on:
            out[p].append(j.job_id)
    return dict(out)


def topological(jobs: Sequence[Job]) -> list[Job]:
    """The jobs with every job after the ones it depends on (Kahn's algorithm, stable
    in the given order); the jobs of a cycle are left out."""
    by_id = {j.job_id: j for j in jobs}
    need = {j.job_id: sum(1 for p in j.depends_on if p in by_id) for j in jobs}
    kids = children_of(jobs)
    ready = [j.job_id for j in jobs if need[j.job_id] == 0]
    out = []
    i = 0
    while i < len(ready):
        jid = ready[i]
        i += 1
        out.append(by_id[jid])
        for c in kids.get(jid, ()):
            need[c] -= 1
            if need[c] == 0:
                ready.append(c)
    return out


def has_dependencies(jobs: Iterable[Job]) -> bool:
    return any(j.depends_on or j.workflow_id for j in jobs)


def within(jobs: Sequence[Job]) -> list[Job]:
    """The jobs with their dependencies on jobs outside ``jobs`` left out (those ran
    before): for replays of a slice of a run, such as a window of the loop."""
    from dataclasses import replace

    ids = {j.job_id for j in jobs}
    return [j if all(p in ids for p in j.depends_on)
            else replace(j, depends_on=tuple(p for p in j.depends_on if p in ids))
            for j in jobs]
