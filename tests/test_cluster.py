from __future__ import annotations

import pytest
from simdata import shared_trace

from autoflow.cluster import builtin_names, load_cluster, scale_to_load
from autoflow.errors import ClusterError
from autoflow.job import Job
from autoflow.workload import Workload


def test_builtin_and_yaml_clusters(tmp_path):
    assert {"philly-64", "itp-8gpu", "hetero-mix"} <= set(builtin_names())
    assert load_cluster("philly-64").total_gpus == 64
    assert load_cluster("builtin:hetero-mix").gpu_types == ["A10", "T4", "V100M32"]
    f = tmp_path / "c.yaml"
    f.write_text("nodes:\n  - {count: 3, gpu_type: A100, gpus: 8}\n")
    assert load_cluster(str(f)).total_gpus == 24


@pytest.mark.parametrize("text,msg", [
    ("nodes: []\n", "non-empty 'nodes'"),
    ("nodes:\n  - {gpus: 8}\n", "lacks 'gpu_type'"),
    ("nodes:\n  - {gpu_type: A, gpus: x}\n", "nodes\\[0\\]"),
    ("nodes: [\n", "not valid YAML"),
])
def test_bad_cluster_yaml_names_the_problem(tmp_path, text, msg):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ClusterError, match=msg):
        load_cluster(str(f))


def test_unknown_cluster():
    with pytest.raises(ClusterError, match="unknown cluster"):
        load_cluster("no-such-cluster")


def test_scale_to_load_hits_the_target_and_keeps_the_widest_job():
    jobs = [Job(str(i), i * 100.0, 1000.0, num_gpus=1) for i in range(100)]
    jobs.append(Job("wide", 50.0, 10.0, num_gpus=32))
    w = Workload(jobs)
    spec = scale_to_load(load_cluster("itp-8gpu"), w, 0.5)
    offered = w.offered_gpu_seconds() / w.span
    assert spec.total_gpus >= 32  # the 32-GPU job can still run
    small = scale_to_load(load_cluster("itp-8gpu"), Workload(jobs[:-1]), 0.5)
    assert small.total_gpus / 8 == pytest.approx(offered / 0.5 / 8, abs=1)
    with pytest.raises(ClusterError):
        scale_to_load(load_cluster("itp-8gpu"), w, 0)


def test_openb_node_list_and_scaling_keeps_every_job_runnable():
    nodes = shared_trace("alibaba-openb", "openb_node_list_gpu_node.csv")
    spec = load_cluster(f"alibaba-openb:{nodes}")
    assert len(spec.nodes) == 1213 and spec.total_gpus == 6212
    jobs = [Job(str(i), i * 10.0, 100.0) for i in range(1000)]
    jobs += [Job("a10", 5.0, 100.0, gpu_types=("A10",)), Job("cpu", 6.0, 100.0, num_gpus=0,
                                                                cpu_milli=90_000)]
    small = scale_to_load(spec, Workload(jobs), 0.9)
    assert "A10" in small.gpu_types  # a type some job needs stays
    assert any(n.cpu_milli >= 90_000 for n in small.nodes)
    assert len(small.nodes) < 100
