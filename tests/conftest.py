from __future__ import annotations

import pytest
from simdata import mixed_workload, small_cluster

from autoflow.cluster import ClusterSpec
from autoflow.workload import Workload


@pytest.fixture
def workload() -> Workload:
    return mixed_workload()


@pytest.fixture
def cluster() -> ClusterSpec:
    return small_cluster()
