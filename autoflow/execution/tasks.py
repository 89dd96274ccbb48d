"""What one part of a job runs inside a Ray worker.

``trace_job`` is a replayed trace job: it holds its GPUs for its remaining duration,
scaled to wall time, and checkpoints its progress (``checkpoints``) as a training job
would: when its work begins (after the restart overhead), every ``interval`` trace
seconds, when it is asked to stop and when it ends. It resumes from its checkpoint.

Stopping: ``ray.cancel(ref, force=False)`` raises ``KeyboardInterrupt`` in the task, but
only between Python instructions, so the task sleeps in slices of ``SLICE_S``: a stop is
felt within one slice, the job checkpoints its exact progress and returns, and its
worker process lives on for the next job (a forced cancel kills the worker; starting a
new one costs a second or more).
"""

from __future__ import annotations

import time

from . import checkpoints

SLICE_S = 0.02  # wall seconds a task sleeps between looks for a stop request


def _sleep_until(deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(SLICE_S, left))


def trace_job(key: str, rank: int, duration: float, overhead: float, scale: float,
              folder: str, interval: float) -> dict:
    """Part ``rank`` of job ``key``: ``overhead`` trace seconds of restart, then the work
    left of ``duration`` after its checkpoint; all in trace seconds, slept at ``scale``
    wall seconds each. Returns what happened: where and when it ran, the progress it
    resumed from and reached, and whether it was stopped before the end. An ``interval``
    of 0 checkpoints only at the start of the work, at a stop and at the end."""
    import ray

    began = time.time()
    node = ray.get_runtime_context().get_node_id()
    resumed = min(duration, checkpoints.progress(folder, key))
    reached, stopped, work0 = resumed, False, None
    try:
        _sleep_until(time.monotonic() + overhead * scale)
        work0 = time.monotonic()
        if rank == 0:
            checkpoints.write(folder, key, resumed, time.time())
        done = resumed
        while done < duration:
            done = min(duration, done + interval) if interval > 0 else duration
            _sleep_until(work0 + (done - resumed) * scale)
            reached = done
            if rank == 0:
                checkpoints.write(folder, key, done, time.time())
    except KeyboardInterrupt:  # asked to stop: checkpoint the exact progress
        stopped = True
        if work0 is not None:
            reached = min(duration, resumed + (time.monotonic() - work0) / scale)
            if rank == 0:
                checkpoints.write(folder, key, reached, time.time())
    return {"ray_node": node, "began": began, "ended": time.time(), "resumed_from": resumed,
            "reached": reached, "stopped": stopped}


def entry_job(key: str, rank: int, entrypoint: str, env: dict, folder: str,
              grace_s: float) -> dict:
    """Part ``rank`` of job ``key`` that has an entrypoint (a command or
    ``module:function``, ``entrypoints.run_entrypoint``): its checkpoints go to its own
    folder under ``folder``; a stop request reaches it as SIGTERM (a command) or
    ``KeyboardInterrupt`` (a function)."""
    import ray

    from .entrypoints import run_entrypoint

    node = ray.get_runtime_context().get_node_id()
    out = run_entrypoint(key, rank, entrypoint, env, folder, grace_s)
    return {"ray_node": node, "resumed_from": None, "reached": None} | out
