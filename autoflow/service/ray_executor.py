"""``--executor ray``: the service's decisions carried out as Ray tasks.

Like any executor it follows the decision feed from a cursor and reports outcomes
through the engine's ``report`` (what ``POST /v1/jobs/{id}/events`` calls). A start
decision launches the job through a :class:`~autoflow.execution.ray_runner.RayRunner`:
one task per node of its placement, pinned to that node's Ray node, holding that node's
GPUs or GPU share. The job runs its ``entrypoint`` (a command or ``module:function``,
with its ``runtime_env``), or, without one, holds its GPUs for its
``duration_estimate_s`` (else the duration the scheduler predicted) on the service's
clock, checkpointing its progress. A preempt decision asks it to checkpoint and stop;
``preempted`` is reported once it has. A task that fails is reported ``failed``; a Ray
node that dies is reported as the autoflow node's failure (its jobs wait again and
resume from their checkpoints).

Where the Ray nodes come from:

- embedded (no ``--ray-address``): a local Ray cluster started with the service, one Ray
  node per registered node (logical GPUs, ``gpu-type:TYPE``, ``autoflow-node:NAME``),
  added as nodes are registered;
- ``--ray-address ADDRESS`` (``auto``: the cluster this machine belongs to): an existing
  Ray cluster. The autoflow node NAME is the Ray node that carries the custom resource
  ``autoflow-node:NAME``, else the one whose hostname or IP address is NAME. A start on a
  node that matches none is reported ``failed`` with the reason.

After a restart of the service, the jobs it had running are launched again on their
placements and resume from their checkpoints (the previous driver's tasks ended with
it: Ray ends the tasks of a driver that exits).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..cluster import Node
from ..core.jobstate import RUNNING
from ..errors import AutoflowError, ConfigError
from .engine import Engine

log = logging.getLogger("autoflow.service")

POLL_S = 0.05  # wall seconds between looks at the running tasks, at most
IDLE_WAIT_S = 0.5
CONNECT_S = 5.0  # wall seconds a --ray-address HOST:PORT has to accept a connection  # wall seconds between looks at the decision feed when nothing runs
NEEDS_RAY = "--executor ray needs the ray extra: pip install 'autoflow[ray]'"


class RayExecutor:
    def __init__(self, engine: Engine, address: str | None, checkpoint_dir: str | Path,
                 checkpoint_interval_s: float):
        try:
            import ray  # noqa: F401
        except ImportError as e:
            raise ConfigError(f"{NEEDS_RAY} ({e})") from None
        self.engine = engine
        self.address = address
        self.folder = Path(checkpoint_dir)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--checkpoint-dir {checkpoint_dir}: cannot create the folder: "
                              f"{e.strerror or e}") from None
        self.interval = checkpoint_interval_s
        self.cluster = None  # the embedded local cluster
        self.runner = None
        self.names: list[str] = []  # autoflow node name of each runner node index
        self.cursor = engine.seq
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="autoflow-ray-executor",
                                        daemon=True)
        engine.listeners.append(lambda seq: self._wake.set())
        self._connect()  # before the service listens: a bad address is a one-line error

    # -- start and stop --------------------------------------------------------------------
    def _connect(self) -> None:
        import ray

        from ..cluster import ClusterSpec
        from ..execution.local_ray import LocalRayCluster
        from ..execution.ray_runner import RayRunner

        if ray.is_initialized():
            raise ConfigError("--executor ray: this process is already connected to Ray")
        if self.address is None:
            self.cluster = LocalRayCluster(ClusterSpec("autoflow-serve", []),
                                           exit_hooks=False).__enter__()
        else:
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, log_to_driver=False)
            except Exception as e:  # noqa: BLE001 - Ray's own errors, said in one line
                raise ConfigError(f"--ray-address {self.address}: cannot connect: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
        self.runner = RayRunner([], str(self.folder), 1.0 / self.engine.clock.scale,
                                self.interval)

    def start(self) -> None:
        eng = self.engine
        with eng.lock:  # jobs running before a restart run again from their checkpoints
            self.cursor = eng.seq
            restart = [js.job.job_id for js in eng.core.running.values()]
        for job_id in restart:
            self._start_job(job_id, 0)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        import ray

        if self.cluster is not None:
            self.cluster.__exit__(None, None, None)
            self.cluster = None
        elif ray.is_initialized():
            ray.shutdown()

    # -- nodes -----------------------------------------------------------------------------
    def node_index(self, name: str) -> int:
        """The runner's index of autoflow node ``name`` (its Ray node found or added)."""
        if name in self.names:
            return self.names.index(name)
        if self.cluster is not None:
            eng = self.engine
            spec = eng.spec.nodes[eng.node_index[name]]
            nid = self.cluster.add_node(Node(name, spec.gpu_type, spec.gpus))
        else:
            nid = self._find_ray_node(name)
        self.names.append(name)
        self.runner.node_ids.append(nid)
        self.runner.node_index[nid] = len(self.names) - 1
        return len(self.names) - 1

    def _find_ray_node(self, name: str) -> str:
        import ray

        from ..execution.local_ray import NODE_RESOURCE

        alive = [n for n in ray.nodes() if n.get("Alive")]
        for match in (lambda n: f"{NODE_RESOURCE}{name}" in n.get("Resources", {}),
                      lambda n: n.get("NodeManagerHostname") == name,
                      lambda n: n.get("NodeManagerAddress") == name):
            found = [n for n in alive if match(n)]
            if len(found) == 1:
                return found[0]["NodeID"]
            if len(found) > 1:
                raise AutoflowError(f"node {name}: {len(found)} Ray nodes match it; give "
                                    f"one of them the resource {NODE_RESOURCE}{name}")
        raise AutoflowError(f"node {name}: no live Ray node carries the resource "
                            f"{NODE_RESOURCE}{name} or has that hostname or address")

    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop:
            try:
                self._follow()
                if self.runner.busy():
                    events = self.runner.poll(POLL_S)
                else:
                    self._wake.wait(IDLE_WAIT_S)
                    self._wake.clear()
                    events = []
                for ev in events:
                    self._event(ev)
            except Exception:
                log.exception("ray executor: a step failed")
                self._wake.wait(IDLE_WAIT_S)

    def _follow(self) -> None:
        rows = self.engine.store.decisions_after(self.cursor, 500)
        for d in rows:
            self.cursor = d["seq"]
            if d["action"] == "start":
                self._start_job(d["job_id"], d["seq"])
            elif d["action"] == "preempt":
                self.runner.stop(d["job_id"])

    def _start_job(self, job_id: str, seq: int) -> None:
        from ..execution.ray_runner import parts_of

        eng = self.engine
        with eng.lock:
            js = eng.job(job_id)
            if js is None or js.placement is None:
                return  # ended or stopped since the decision
            placement = list(js.placement)
            duration = float(js.job.extra.get("duration_estimate_s") or js.predicted)
            overhead = js.seg_overhead
        row = eng.store.job(job_id) or {}
        spec = row.get("spec") or {}
        entry = None
        if spec.get("entrypoint"):
            renv = spec.get("runtime_env") or {}
            entry = {"entrypoint": spec["entrypoint"], "env": renv.get("env_vars") or {},
                     "runtime_env": {k: v for k, v in renv.items() if v} or None}
        try:
            parts = [(self.node_index(eng.node_names[n]), gpus)
                     for n, gpus in parts_of(placement)]
        except AutoflowError as e:
            self._report(job_id, "failed", {"message": str(e)})
            return
        self.runner.launch(job_id, seq, parts, duration, overhead, entry)
        self._report(job_id, "started")

    def _event(self, ev) -> None:
        from ..execution.ray_runner import Failed, Finished, NodeLost, Stopped

        if isinstance(ev, Finished):
            self._report(ev.key, "finished", _detail(ev.info))
        elif isinstance(ev, Stopped):
            # confirms the preempt decision, unless the job runs again already: then the
            # report would read as the new run's loss (the engine takes an unasked
            # "preempted" for a running job as lost)
            runner = self.runner
            js = self.engine.job(ev.key)
            again = ev.key in runner.running or ev.key in runner.deferred
            if not again and (js is None or js.status != RUNNING):
                self._report(ev.key, "preempted", _detail(ev.info))
        elif isinstance(ev, Failed):
            self._report(ev.key, "failed", {"message": ev.message})
        elif isinstance(ev, NodeLost):
            name = self.names[ev.node]
            log.warning("ray executor: the Ray node of %s died; its jobs %s wait again",
                        name, ", ".join(ev.keys) or "(none)")
            try:
                self.engine.node_action(name, "failure")
            except AutoflowError as e:
                log.info("ray executor: node %s failure not accepted: %s", name, e)

    def _report(self, job_id: str, event: str, detail: dict | None = None) -> None:
        try:
            self.engine.report(job_id, event, detail=detail)
        except AutoflowError as e:  # e.g. cancelled meanwhile: nothing to report
            log.info("ray executor: %s %s not accepted: %s", job_id, event, e)


def _check_reachable(address: str) -> None:
    """A HOST:PORT address must accept a connection within ``CONNECT_S`` (Ray itself retries
    an unreachable one for minutes); ``auto`` and ``ray://`` are left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_S):
            pass
    except OSError as e:
        raise ConfigError(f"--ray-address {address}: nothing answers there "
                          f"({e.strerror or e}); is the Ray head running?") from None


def _detail(info: dict) -> dict:
    """What an event's detail says of the task that ended: where it ran, the progress it
    resumed from and reached (cluster seconds; None for an entrypoint) and its exit."""
    keep = ("ray_node", "resumed_from", "reached", "returncode", "began", "ended")
    return {k: info[k] for k in keep if info.get(k) is not None}
