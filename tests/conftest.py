from __future__ import annotations

import pytest

from autoflow.cluster import ClusterSpec
from autoflow.workload import Workload
from simdata import mixed_workload, small_cluster


@pytest.fixture
def workload() -> Workload:
    return mixed_workload()


@pytest.fixture
def cluster() -> ClusterSpec:
    return small_cluster()
