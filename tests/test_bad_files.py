"""Issue 15, sections 2-4: bad trace and cluster files end with one ``error: ...`` line
(exit code 2) naming the file, and the row and field where there is one; never a
traceback, never a run without end. gzip traces and a UTF-8 BOM are read."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hardening import assert_one_line_error, invoke

from autoflow.cluster import load_cluster
from autoflow.errors import ClusterError
from autoflow.traces.registry import load_workload

HEADER = "job_id,submission_time,duration,num_gpu\n"
GOOD = HEADER + "a,0,100,1\nb,10,200,2\n"


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


# name -> (file bytes, what the one error line must name)
BAD_TRACES = {
    "non-utf8-row": (GOOD.encode() + b"c,\xff\xfe,1,1\n", [":4", "not UTF-8"]),
    "binary-1mb": (np.random.default_rng(0).bytes(1_000_000), ["binary-1mb", ":1"]),
    "text-garbage-1mb": (("x" * 999 + "\n") * 1000, ["missing column(s) job_id"]),
    "field-over-128k": (HEADER + "a,0,100," + "9" * 140_000 + "\n",
                        [":2", "field over 128 KiB"]),
    "unclosed-quote": (HEADER + 'a,0,100,"1\n' + "x" * 140_000 + "\n",
                       ["field over 128 KiB"]),
    "damaged-gzip": (gzip.compress(GOOD.encode())[:25], ["damaged gzip"]),
    "duration-1e308": (HEADER + "a,0,100,1\nb,5,1e308,1\n", [":3", "duration"]),
    "duration-inf": (HEADER + "a,0,inf,1\n", [":2", "duration", "finite"]),
    "submit-1e308": (HEADER + "a,1e308,100,1\n", [":2", "submit"]),
    "duration-1e12": (HEADER + "a,0,1e12,1\n", [":2", "duration"]),
}


@pytest.mark.parametrize("case", sorted(BAD_TRACES))
def test_inspect_a_bad_trace_is_one_line(tmp_path, case):
    data, needles = BAD_TRACES[case]
    p = _write(tmp_path, f"{case}.csv", data)
    r = invoke("traces", "inspect", f"itp:{p}")
    assert_one_line_error(r, str(p), *needles)


@pytest.mark.parametrize("case", ["non-utf8-row", "binary-1mb", "field-over-128k",
                                  "damaged-gzip", "duration-1e308"])
def test_bench_a_bad_trace_is_one_line(tmp_path, case):
    data, needles = BAD_TRACES[case]
    p = _write(tmp_path, f"{case}.csv", data)
    r = invoke("bench", "--trace", f"itp:{p}", "--policies", "fifo", "--out", tmp_path / "o")
    assert_one_line_error(r, str(p), *needles)


@pytest.mark.parametrize("case", ["binary-1mb", "damaged-gzip"])
def test_train_a_bad_trace_is_one_line(tmp_path, case):
    pytest.importorskip("sb3_contrib")
    data, needles = BAD_TRACES[case]
    p = _write(tmp_path, f"{case}.csv", data)
    r = invoke("train", "--workloads", f"itp:{p}", "--out", tmp_path / "o")
    assert_one_line_error(r, str(p), *needles)


@pytest.mark.parametrize("fmt", ["swf", "helios", "alibaba-openb", "tiresias", "csv"])
def test_every_format_refuses_binary_in_one_line(tmp_path, fmt):
    p = _write(tmp_path, "bin.dat", np.random.default_rng(1).bytes(100_000))
    assert_one_line_error(invoke("traces", "inspect", f"{fmt}:{p}"), str(p))


def test_skip_bad_rows_skips_a_non_utf8_row(tmp_path):
    p = _write(tmp_path, "t.csv", GOOD.encode() + b"c,\xff,1,1\nd,20,5,1\n")
    w = load_workload(f"itp:{p}", skip_bad_rows=True)
    assert len(w) == 3 and w.summary.rows_skipped == 1
    assert any("UTF-8" in k for k in w.summary.skipped)
    swf = _write(tmp_path, "t.swf", b"1 0 0 10 1 -1 -1 1 -1 -1 1 1 1 -1 -1 -1 -1 -1\n\xff\xfe\n")
    assert len(load_workload(f"swf:{swf}", skip_bad_rows=True)) == 1


@pytest.mark.parametrize("name", ["t.csv.gz", "t.csv"])  # by suffix or by magic bytes alone
def test_gzip_traces_are_read(tmp_path, name):
    p = _write(tmp_path, name, gzip.compress(GOOD.encode()))
    w = load_workload(f"itp:{p}")
    assert [j.job_id for j in w] == ["a", "b"]
    r = invoke("traces", "inspect", f"itp:{p}", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["jobs"] == 2


def test_gzip_swf_and_openb_are_read(tmp_path):
    fix = Path(__file__).parent / "fixtures"
    for fmt, name in (("swf", "small.swf"), ("alibaba-openb", "openb_pods_small.csv")):
        plain = load_workload(f"{fmt}:{fix / name}")
        p = _write(tmp_path, name + ".gz", gzip.compress((fix / name).read_bytes()))
        assert [j.job_id for j in load_workload(f"{fmt}:{p}")] == [j.job_id for j in plain]


def test_a_utf8_bom_is_accepted(tmp_path):
    p = _write(tmp_path, "bom.csv", b"\xef\xbb\xbf" + GOOD.encode())
    assert len(load_workload(f"itp:{p}")) == 2


# -- clusters ------------------------------------------------------------------------------
NODE_HEADER = "sn,cpu_milli,memory_mib,gpu,model\n"
BAD_CLUSTERS = {
    "huge-count.yaml": ("nodes:\n - {gpu_type: V100, gpus: 8, count: 1000000000000}\n",
                        ["nodes[0]", "'count'", "1..100,000"]),
    "huge-total.yaml": ("nodes:\n" + " - {gpu_type: V100, gpus: 8, count: 90000}\n" * 2,
                        ["nodes[1]", "'count'", "100,000"]),
    "frac-count.yaml": ("nodes:\n - {gpu_type: V100, gpus: 8, count: 2.7}\n",
                        ["nodes[0]", "'count'", "whole number"]),
    "frac-gpus.yaml": ("nodes:\n - {gpu_type: V100, gpus: 8.9}\n",
                       ["nodes[0]", "'gpus'", "whole number"]),
    "neg-gpus.yaml": ("nodes:\n - {gpu_type: V100, gpus: -8}\n", ["nodes[0]", "'gpus'"]),
    "zero-count.yaml": ("nodes:\n - {gpu_type: V100, gpus: 8, count: 0}\n", ["'count'"]),
    "bool-gpus.yaml": ("nodes:\n - {gpu_type: V100, gpus: true}\n", ["'gpus'"]),
    "too-many-gpus.yaml": ("nodes:\n - {gpu_type: V100, gpus: 100000}\n", ["'gpus'", "128"]),
    "garbage.yaml": (np.random.default_rng(2).bytes(100_000), ["not UTF-8"]),
    "text.yaml": ("just some words", ["expected a mapping"]),
    "broken.yaml": ("nodes: [ {gpu_type: V100", ["not valid YAML"]),
    "latin1.yaml": ("nodes:\n - {gpu_type: V100\xe9, gpus: 8}\n".encode("latin-1"),
                    ["not UTF-8"]),
}
BAD_NODE_LISTS = {
    "neg-gpu.csv": (NODE_HEADER + "n1,1000,1000,8,V100\nn2,1000,1000,-4,V100\n",
                    [":3", "'gpu'", "negative"]),
    "frac-gpu.csv": (NODE_HEADER + "n1,1000,1000,8.5,V100\n", [":2", "'gpu'", "integer"]),
    "huge-gpu.csv": (NODE_HEADER + "n1,1000,1000,1e12,V100\n", [":2", "'gpu'", "maximum"]),
    "inf-cpu.csv": (NODE_HEADER + "n1,inf,1000,8,V100\n", [":2", "'cpu_milli'"]),
    "binary.csv": (np.random.default_rng(3).bytes(50_000), ["binary.csv"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CLUSTERS))
def test_a_bad_cluster_yaml_is_refused_naming_file_and_field(tmp_path, case):
    data, needles = BAD_CLUSTERS[case]
    p = _write(tmp_path, case, data)
    with pytest.raises(ClusterError):
        load_cluster(str(p))
    assert_one_line_error(invoke("clusters", p), str(p), *needles)
    r = invoke("bench", "--trace", "builtin:philly-mix-small:20", "--policies", "fifo",
               "--cluster", p, "--out", tmp_path / "o")
    assert_one_line_error(r, str(p), *needles)


@pytest.mark.parametrize("case", sorted(BAD_NODE_LISTS))
def test_a_bad_alibaba_node_list_is_refused_naming_row_and_field(tmp_path, case):
    data, needles = BAD_NODE_LISTS[case]
    p = _write(tmp_path, case, data)
    assert_one_line_error(invoke("clusters", f"alibaba-openb:{p}"), str(p), *needles)


def test_a_folder_given_as_a_cluster(tmp_path):
    for src in (str(tmp_path), f"alibaba-openb:{tmp_path}"):
        assert_one_line_error(invoke("clusters", src), str(tmp_path), "folder")


def test_integral_floats_and_gzip_node_lists_are_fine(tmp_path):
    p = _write(tmp_path, "ok.yaml", "nodes:\n - {gpu_type: V100, gpus: 8.0, count: 2}\n")
    assert load_cluster(str(p)).total_gpus == 16
    n = _write(tmp_path, "n.csv.gz", gzip.compress(
        (NODE_HEADER + "n1,1000,1000,8,V100\n").encode()))
    assert load_cluster(f"alibaba-openb:{n}").total_gpus == 8


# -- strict JSON ---------------------------------------------------------------------------
def _strict(text: str):
    def bad(c):
        raise ValueError(f"not JSON: {c}")
    return json.loads(text, parse_constant=bad)


def test_jsonsafe_writes_strict_json():
    from autoflow import jsonsafe

    obj = {"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float64(2.0),
           "d": np.array([1, 2]), "e": (np.int64(3),)}
    assert _strict(jsonsafe.dumps(obj)) == {"a": None, "b": [None, 1.5], "c": 2.0,
                                            "d": [1, 2], "e": [3]}


def test_bench_results_and_manifest_are_strict_json(tmp_path):
    r = invoke("bench", "--trace", "builtin:philly-mix-small:30", "--policies", "fifo,sjf",
               "--out", tmp_path)
    assert r.exit_code == 0, r.output
    for name in ("results.json", "manifest.json"):
        data = _strict((tmp_path / name).read_text())
        assert data
    res = _strict((tmp_path / "results.json").read_text())
    assert all(math.isfinite(v) for m in res["policies"].values() for v in m.values()
               if isinstance(v, float))


def test_bench_reads_a_gzip_trace(tmp_path):
    p = _write(tmp_path, "t.csv.gz", gzip.compress(GOOD.encode()))
    r = invoke("bench", "--trace", f"itp:{p}", "--policies", "fifo", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert _strict((tmp_path / "o" / "results.json").read_text())["policies"]["fifo"]["jobs"] == 2
