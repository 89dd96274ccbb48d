"""Runs jobs as Ray tasks pinned where the scheduler placed them, and reports how they end.

One job is one task per node of its placement, holding exactly that node's share of GPUs
(``num_gpus``: the GPU count, or the fraction of one GPU for a shared one) and never
moved by Ray's own scheduler: a job on one node is one task pinned there by
``NodeAffinitySchedulingStrategy(soft=False)`` (all its GPUs in one process: packed); a
gang over several nodes is a placement group with one bundle per node, each held to its
node (``STRICT_SPREAD``, a ``ray.io/node-id`` label selector per bundle), so that its
parts start together. What a task runs is ``tasks.trace_job`` (a
replayed trace job) or, for a job with an entrypoint (a command or ``module:function``,
with its environment variables and Ray runtime environment), ``tasks.entry_job``.

``stop`` asks the job to checkpoint and stop (a graceful ``ray.cancel``); a job that has
not stopped within ``grace_s`` wall seconds is killed. A job launched again while its
stopped tasks still run waits for them (it resumes from the checkpoint they write).

``poll`` collects what ended: a job's last part done (``Finished``), a stopped job's
last part ended (``Stopped``), a node that died
(``NodeLost``: its jobs' other parts are killed; they keep their last checkpoint) or a
task that failed on a live node (``Failed``). Every task that ran is kept in
``segments``: job, node, Ray node, launched / began / ended (wall), the progress it
resumed from and reached, and how it ended.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import checkpoints
from .tasks import entry_job, trace_job

DEATH_NOTICE_S = 5.0  # wall seconds Ray may take to mark a node dead after its tasks fail
GRACE_S = 10.0  # wall seconds a stopped job has to checkpoint before it is killed


def parts_of(placement) -> list[tuple[int, float]]:
    """(node index, Ray ``num_gpus``) for each node of a core placement: the GPU count,
    or the fraction of one GPU for a shared one."""
    return [(node, float(len(gpus)) if milli >= 1000 else milli / 1000.0)
            for node, gpus, milli, _cpu, _mem in placement]


@dataclass
class Finished:
    key: str
    token: object  # what the caller passed to launch (e.g. the run segment's version)
    info: dict = field(default_factory=dict)  # rank 0's segment: where, when, progress


@dataclass
class Stopped:
    key: str
    token: object
    info: dict = field(default_factory=dict)


@dataclass
class NodeLost:
    node: int
    keys: list[str]  # the jobs that ran on it, killed everywhere
    lost_s: dict[str, float]  # trace seconds of work each lost (since its last checkpoint)


@dataclass
class Failed:
    key: str
    token: object
    message: str


@dataclass
class _Job:
    key: str
    token: object
    parts: dict  # ObjectRef -> node index (the parts still running)
    launched: float  # wall time of the launch
    nodes: frozenset = frozenset()  # every node of its placement
    stop_at: float | None = None  # wall time by which a stopped job must have ended
    lost_node: int | None = None  # the dead node that ended it
    info: dict = field(default_factory=dict)  # rank 0's segment, once it ended
    pg: object = None  # a gang's placement group, removed once its parts have ended
    ranks: dict = field(default_factory=dict)  # ObjectRef -> (rank, GPUs it holds)


class RayRunner:
    def __init__(self, node_ids: list[str], folder: str, scale: float, interval: float,
                 grace_s: float = GRACE_S):
        import ray

        self.ray = ray
        self.task = ray.remote(num_cpus=0, max_retries=0)(trace_job)
        self.entry_task = ray.remote(num_cpus=0, max_retries=0)(entry_job)
        self.node_ids = list(node_ids)
        self.node_index = {nid: i for i, nid in enumerate(node_ids)}
        self.folder = str(folder)
        self.scale = scale
        self.interval = interval
        self.grace_s = grace_s
        self.running: dict[str, _Job] = {}
        self.stopping: dict[str, _Job] = {}
        self.deferred: dict[str, tuple] = {}  # key -> launch arguments, until its stop ends
        self.dead: set[int] = set()
        self.segments: list[dict] = []
        self._owner: dict = {}  # ObjectRef -> _Job

    # -- commands --------------------------------------------------------------------------
    def launch(self, key: str, token: object, parts: list[tuple[int, float]], duration: float,
               overhead: float, entry: dict | None = None) -> None:
        """Runs job ``key`` on ``parts`` (node index, GPUs: a count or a fraction of one):
        with ``entry`` (``entrypoint``, optional ``env`` and ``runtime_env``), that
        entrypoint; else a trace job for what is left of ``duration`` after its checkpoint,
        plus ``overhead`` (trace seconds)."""
        if key in self.running:
            raise RuntimeError(f"job {key} launched while it runs")
        if key in self.stopping:
            self.deferred[key] = (token, parts, duration, overhead, entry)
            return
        self._launch(key, token, parts, duration, overhead, entry)

    def _launch(self, key, token, parts, duration, overhead, entry=None) -> None:
        job = _Job(key, token, {}, time.time(), frozenset(n for n, _ in parts))
        wheres = self._gang(job, parts) if len(parts) > 1 else [self._pin(parts[0][0])]
        for rank, ((node, gpus), where) in enumerate(zip(parts, wheres)):
            if entry is None:
                ref = self.task.options(num_gpus=gpus, name=f"job-{key}",
                                        scheduling_strategy=where).remote(
                    key, rank, duration, overhead, self.scale, self.folder, self.interval)
            else:
                opts = {"runtime_env": entry["runtime_env"]} if entry.get("runtime_env") else {}
                ref = self.entry_task.options(num_gpus=gpus, name=f"job-{key}",
                                              scheduling_strategy=where, **opts).remote(
                    key, rank, entry["entrypoint"], entry.get("env") or {}, self.folder,
                    self.grace_s)
            job.parts[ref] = node
            job.ranks[ref] = (rank, gpus)
            self._owner[ref] = job
        self.running[key] = job

    def _pin(self, node: int):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(self.node_ids[node], soft=False)

    def _gang(self, job: _Job, parts: list[tuple[int, float]]) -> list:
        """A gang over several nodes: one placement group, one bundle per node, each
        bundle held to its node by a label selector (``ray.io/node-id``), so that its
        parts start together once every node's share is free, never on other nodes."""
        from ray.util.placement_group import NODE_ID_LABEL_KEY, placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        job.pg = placement_group(
            [{"GPU": gpus} for _node, gpus in parts], strategy="STRICT_SPREAD",
            bundle_label_selector=[{NODE_ID_LABEL_KEY: self.node_ids[node]}
                                   for node, _gpus in parts])
        return [PlacementGroupSchedulingStrategy(job.pg, placement_group_bundle_index=i)
                for i in range(len(parts))]

    def stop(self, key: str) -> None:
        """Asks job ``key`` to checkpoint and stop (a launch still waiting is dropped)."""
        self.deferred.pop(key, None)
        job = self.running.pop(key, None)
        if job is None:
            return
        job.stop_at = time.time() + self.grace_s
        self.stopping[key] = job
        for ref in job.parts:
            self.ray.cancel(ref, force=False)

    def busy(self) -> bool:
        return bool(self._owner)

    # -- what ended -------------------------------------------------------------------------
    def poll(self, timeout: float) -> list:
        """Waits up to ``timeout`` wall seconds for tasks to end; returns the events."""
        now = time.time()
        for job in list(self.stopping.values()):
            if job.stop_at is not None and now > job.stop_at:
                job.stop_at = None  # killed once
                for ref in job.parts:
                    self.ray.cancel(ref, force=True)
        refs = list(self._owner)
        if not refs:
            time.sleep(timeout)
            return []
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=timeout)
        events: list = []
        for ref in ready:
            job = self._owner.pop(ref, None)
            if job is not None:
                self._ended(job, ref, events)
        return events

    def _ended(self, job: _Job, ref, events: list) -> None:
        ray = self.ray
        node = job.parts.pop(ref)
        rank, gpus = job.ranks.pop(ref)
        seg = {"job": job.key, "rank": rank, "node": node, "gpus": gpus,
               "launched": job.launched}
        try:
            info = ray.get(ref)
            seg |= info
            seg["outcome"] = "stopped" if info["stopped"] else "finished"
        except ray.exceptions.TaskCancelledError as e:
            seg["outcome"] = "lost" if node == job.lost_node else "killed"
            seg["error"] = type(e).__name__
        except ray.exceptions.RayError as e:
            if job.key in self.stopping:
                seg["outcome"] = "lost" if node == job.lost_node else "killed"
            elif isinstance(e, (ray.exceptions.NodeDiedError,
                                ray.exceptions.TaskUnschedulableError)):
                seg["outcome"] = "lost"  # Ray says the node is gone
            else:  # a node that dies may show first as a crashed worker
                seg["outcome"] = "lost" if self._dead(node) else "failed"
            seg["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        if job.pg is not None:
            seg["placement_group"] = job.pg.id.hex()
            if not job.parts:
                from ray.util.placement_group import remove_placement_group

                remove_placement_group(job.pg)
        self.segments.append(seg)
        if rank == 0:
            job.info = seg
        key = job.key
        if key in self.stopping and self.stopping[key] is job:
            if not job.parts:  # the stop is complete: a launch that waited goes now
                del self.stopping[key]
                if job.lost_node is None:
                    events.append(Stopped(key, job.token, job.info))
                args = self.deferred.pop(key, None)
                if args is not None:
                    self._launch(key, *args)
            return
        if self.running.get(key) is not job:
            return
        if seg["outcome"] == "lost":
            self.dead.add(node)
            events.append(self._node_lost(node))
            return
        if seg["outcome"] == "failed":
            self._kill(job)
            events.append(Failed(key, job.token, seg.get("error", seg["outcome"])))
            return
        if not job.parts:
            del self.running[key]
            events.append(Finished(key, job.token, job.info))

    def _dead(self, node: int) -> bool:
        """Whether the node has died; Ray may learn of it a moment after its tasks fail,
        so a node still alive is asked again for up to ``DEATH_NOTICE_S``."""
        if node in self.dead:
            return True
        nid = self.node_ids[node]
        deadline = time.monotonic() + DEATH_NOTICE_S
        while True:
            if not any(n["NodeID"] == nid and n["Alive"] for n in self.ray.nodes()):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)

    def _kill(self, job: _Job) -> None:
        """Ends every part of ``job`` at once (no checkpoint): its gang is broken."""
        self.running.pop(job.key, None)
        if job.parts:
            job.stop_at = None
            self.stopping[job.key] = job
            for ref in job.parts:
                self.ray.cancel(ref, force=True)

    def _node_lost(self, node: int) -> NodeLost:
        now = time.time()
        keys, lost = [], {}
        for job in list(self.running.values()):
            if node in job.nodes:
                keys.append(job.key)
                job.lost_node = node
                ck = checkpoints.read(self.folder, job.key)
                since = ck["wall"] if ck is not None and ck["wall"] >= job.launched else None
                lost[job.key] = 0.0 if since is None else max(0.0, (now - since) / self.scale)
                self._kill(job)
        return NodeLost(node, keys, lost)
