from __future__ import annotations

import pytest
from simdata import mixed_workload, small_cluster

from autoflow.cluster import ClusterSpec
from autoflow.workload import Workload


@pytest.fixture(autouse=True)
def _autoflow_home(tmp_path_factory, monkeypatch):
    """Each test records trusted files in a registry of its own, never the user's, and
    starts with no --trust-file."""
    from autoflow import trust

    monkeypatch.setenv("AUTOFLOW_HOME", str(tmp_path_factory.mktemp("autoflow-home")))
    trust.forget_allowed()
    yield
    trust.forget_allowed()


@pytest.fixture
def workload() -> Workload:
    return mixed_workload()


@pytest.fixture
def cluster() -> ClusterSpec:
    return small_cluster()
