"""Helpers for the Ray tests: Ray required in CI (never skipped there), and replays with a
hang guard on their wall time."""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest

HANG_S = 600.0  # a hang guard on each replay's wall time, not a speed test


def need_ray():
    """The ray module; a skip where it is not installed, unless ``CI`` is set."""
    if os.environ.get("CI"):
        import ray  # in CI Ray must be there: these tests never skip

        return ray
    return pytest.importorskip("ray")


def replay_on_ray(*args, **kwargs):
    from autoflow.execution.replay import replay_on_ray as replay

    return replay(*args, timeout_s=HANG_S, **kwargs)


@contextmanager
def local_cluster(spec):
    """A started ``LocalRayCluster`` for ``spec``; a skip where Ray cannot start on this
    machine, unless ``CI`` is set (then its error fails the test)."""
    from autoflow.execution.local_ray import LocalRayCluster

    rc = LocalRayCluster(spec)
    try:
        rc.__enter__()
    except Exception as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Ray cannot start here: {type(e).__name__}: {e}")
    try:
        yield rc
    finally:
        rc.__exit__(None, None, None)
