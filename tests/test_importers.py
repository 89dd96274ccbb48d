"""Importers on small shipped fixtures, on the real traces (when present), and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from autoflow.cli import app as cli_app
from autoflow.errors import ConfigError, TraceError
from autoflow.job import INFERENCE, TRAINING
from autoflow.traces import builtin
from autoflow.traces.registry import load_workload
from autoflow.traces.summary import describe, render

FIX = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces"


def load(source: str, **kw):
    return load_workload(source, **kw)


def by_id(w) -> dict:
    return {j.job_id: j for j in w}


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ---------------------------------------------------------------- fixtures, per format

def test_itp_fixture():
    w = load(f"itp:{FIX / 'itp_small.csv'}")
    assert len(w) == 8 and w.kinds()[TRAINING] == 8
    assert w.gpu_mix() == {1: 4, 2: 1, 4: 1, 8: 1, 16: 1}
    assert w.summary.rows_read == 8 and w.summary.rows_skipped == 0


def test_openb_fixture():
    w = load(f"alibaba-openb:{FIX / 'openb_pods_small.csv'}")
    s = w.summary
    assert (s.rows_read, len(w)) == (10, 8)
    assert s.skipped == {"never scheduled (no observed run time)": 2}
    assert s.notes["censored"] == 4  # every pod still Running when observed
    jobs = by_id(w)
    assert {j for j, x in jobs.items() if x.censored} == \
        {"openb-pod-0000", "openb-pod-0001", "openb-pod-0003", "openb-pod-0009"}
    assert w.kinds() == {INFERENCE: 4, TRAINING: 4}
    ls = jobs["openb-pod-0001"]
    assert (ls.kind, ls.qos, ls.slo_s, ls.gpu_milli, ls.is_fractional) == \
        (INFERENCE, "LS", 60.0, 460, True)
    be = jobs["openb-pod-0002"]
    assert be.kind == TRAINING and be.slo_s is None
    assert be.gpu_types == ("V100M32", "A10") and be.gpu_milli == 810
    assert be.submit_time == 500000 and be.duration == 503600 - 500120  # no queueing
    assert jobs["openb-pod-0003"].gpu_milli == 1000 and jobs["openb-pod-0003"].num_gpus == 8
    assert jobs["openb-pod-0004"].num_gpus == 0 and jobs["openb-pod-0004"].gpu_milli == 0
    assert jobs["openb-pod-0004"].extra["pod_phase"] == "Failed"  # failed tasks are kept
    assert jobs["openb-pod-0005"].kind == TRAINING and jobs["openb-pod-0005"].gpu_types == ("T4",)
    assert sum(j.is_fractional for j in w) == 3


def test_dlrm_fixture():
    w = load(f"alibaba-dlrm:{FIX / 'dlrm_small.csv'}")
    s = w.summary
    assert (s.rows_read, len(w)) == (12, 9)
    assert s.skipped == {"never scheduled (no observed run time)": 1,
                         "started before trace window (no creation or scheduled time)": 2}
    assert s.notes["censored"] == 3 and s.notes["trace_end_s"] == 2644017.0
    assert w.kinds() == {INFERENCE: 9}
    jobs = by_id(w)
    half = jobs["instance_7"]
    assert (half.num_gpus, half.gpu_milli, half.is_fractional) == (1, 500, True)
    assert (jobs["instance_8"].num_gpus, jobs["instance_8"].gpu_milli) == (2, 1000)
    cn = jobs["instance_6"]
    assert (cn.num_gpus, cn.cpu_milli, cn.memory_mib, cn.user, cn.group) == \
        (0, 96000, 480 * 1024, "app_136", "CN")
    early = jobs["instance_3"]  # created before the window: submitted when scheduled
    assert early.submit_time == 1435629.0 and early.duration == 131.0
    alive = jobs["instance_5"]
    assert alive.censored and alive.duration == 2644017.0 - 2633347.0
    assert jobs["instance_2"].censored and jobs["instance_2"].submit_time == 1200.0
    assert all(j.slo_s == 60.0 and j.qos == "LS" for j in w)


def test_helios_fixture():
    w = load(f"helios:{FIX / 'helios_small.csv'}")
    s = w.summary
    assert (s.rows_read, len(w)) == (9, 7)
    assert s.skipped == {"never ran (duration 0)": 2}
    assert s.notes["states"] == {"CANCELLED": 1, "COMPLETED": 3, "FAILED": 1, "NODE_FAIL": 1,
                                 "TIMEOUT": 1}
    jobs = by_id(w)
    # relative to the earliest submit in the file (job 5 at 07:00, which never ran)
    assert jobs["1"].submit_time == 3600.0 and jobs["6"].submit_time == 17 * 3600.0
    assert (jobs["1"].num_gpus, jobs["1"].cpu_milli, jobs["1"].user, jobs["1"].group) == \
        (8, 48000, "ua1", "vc01")
    assert jobs["3"].duration == 36000.0 and jobs["4"].num_gpus == 0
    assert w.kinds() == {TRAINING: 7}


def test_tiresias_fixture():
    w = load(f"tiresias:{FIX / 'tiresias_small.csv'}")
    assert len(w) == 6 and w.kinds() == {TRAINING: 6}
    j = by_id(w)["4"]
    assert (j.num_gpus, j.submit_time, j.duration, j.group, j.extra["model"]) == \
        (8, 900.0, 28800.0, "resnet50", "resnet50")
    assert j.extra["iterations"] == 20000


def test_swf_fixture():
    w = load(f"swf:{FIX / 'small.swf'}")
    s = w.summary
    assert (s.rows_read, len(w)) == (8, 6)
    assert s.skipped == {"unknown run time": 1, "unknown processor count": 1}
    jobs = by_id(w)
    assert jobs["4"].num_gpus == 2  # allocated -1 -> requested
    assert (jobs["1"].num_gpus, jobs["1"].duration, jobs["1"].user, jobs["1"].group) == \
        (4, 3600.0, "1", "1")
    assert jobs["6"].user == "" and jobs["8"].num_gpus == 32


def test_normalized_fixture():
    w = load(f"csv:{FIX / 'normalized_small.csv'}")
    assert len(w) == 5
    jobs = by_id(w)
    assert jobs["n2"].gpu_types == ("T4", "A10") and jobs["n2"].gpu_milli == 500
    assert jobs["n3"].censored and jobs["n4"].duration is None


# ---------------------------------------------------------------- real traces

def _real(rel: str) -> Path:
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"real trace {rel} not available")
    return p


@pytest.mark.parametrize("name,jobs", [("cluster01", 1595), ("cluster02", 5778),
                                       ("cluster03", 3011), ("cluster05", 3629),
                                       ("cluster06", 2396), ("cluster08", 13047)])
def test_real_itp(name, jobs):
    w = load(f"itp:{_real(f'itp/{name}.csv')}")
    assert len(w) == jobs and w.summary.rows_skipped == 0


def test_real_itp_cluster08_figures():
    w = load(f"itp:{_real('itp/cluster08.csv')}")
    assert float(np.median(w.durations())) == 13677.0
    assert max(j.num_gpus for j in w) == 32
    assert w.span / 86400 == pytest.approx(42.4, abs=0.05)


def test_real_openb():
    w = load(f"alibaba-openb:{_real('alibaba-openb/openb_pod_list_default.csv')}")
    s = w.summary
    assert s.rows_read == 8152
    assert s.skipped == {"never scheduled (no observed run time)": 897}
    assert len(w) == 8152 - 897
    assert s.notes["censored"] == 5193 == sum(j.censored for j in w)
    assert w.kinds() == {INFERENCE: 4193, TRAINING: 3062}
    assert sum(j.is_fractional for j in w) == 2573
    d = describe(w)
    assert d["duration_s"]["p50"] == 616.0 and d["rows_skipped"] == 897


# ---------------------------------------------------------------- bad input

def test_malformed_row_names_file_line_column(tmp_path):
    p = write(tmp_path, "bad.csv", "job_id,submission_time,duration,num_gpu\n"
              "a,1,10,1\nb,2,ten,1\n")
    with pytest.raises(TraceError) as e:
        load(f"itp:{p}")
    assert (e.value.path, e.value.line, e.value.column) == (str(p), 3, "duration")
    assert str(e.value) == f"{p}:3 column 'duration': not a number: 'ten'"


def test_skip_bad_rows_counts_per_reason(tmp_path):
    p = write(tmp_path, "bad.csv", "job_id,submission_time,duration,num_gpu\n"
              "a,1,10,1\nb,2,ten,1\nc,3,-5,1\nd,4,eleven,2\ne,5,10\nf,6,10,1\n")
    w = load(f"itp:{p}", skip_bad_rows=True)
    assert len(w) == 2 and w.summary.rows_read == 6
    assert w.summary.skipped == {"bad duration: not a number": 2, "bad duration: negative": 1,
                                 "bad num_gpu: missing": 1}


def test_negative_duration(tmp_path):
    p = write(tmp_path, "neg.csv", "job_id,submission_time,duration,num_gpu\na,1,-5,1\n")
    with pytest.raises(TraceError, match=r"neg.csv:2 column 'duration': negative value -5"):
        load(f"itp:{p}")


def test_openb_deleted_before_scheduled(tmp_path):
    head = (FIX / "openb_pods_small.csv").read_text().splitlines()[0]
    p = write(tmp_path, "o.csv", head + "\np0,1000,1024,1,500,,BE,Failed,10,20,30\n")
    with pytest.raises(TraceError, match="column 'deletion_time': negative duration"):
        load(f"alibaba-openb:{p}")


def test_openb_unknown_qos(tmp_path):
    head = (FIX / "openb_pods_small.csv").read_text().splitlines()[0]
    p = write(tmp_path, "o.csv", head + "\np0,1000,1024,1,500,,XX,Running,10,40,30\n")
    with pytest.raises(TraceError, match=r"o.csv:2 column 'qos': unknown qos 'XX'"):
        load(f"alibaba-openb:{p}")


def test_dlrm_fraction_above_one(tmp_path):
    head = (FIX / "dlrm_small.csv").read_text().splitlines()[0]
    p = write(tmp_path, "d.csv", head + "\ni0,HN,app,8,8,1.5,1.5,25,25,40,40,85,100,4,1,2,3\n")
    with pytest.raises(TraceError, match="column 'gpu_request': fractional request above"):
        load(f"alibaba-dlrm:{p}")


def test_helios_bad_timestamp_names_column(tmp_path):
    head = (FIX / "helios_small.csv").read_text().splitlines()[0]
    p = write(tmp_path, "h.csv", head + "\n1,u,vc,1,6,1,COMPLETED,2020-04-01 08:00:00,"
              "2020/04/01 08:00,2020-04-01 09:00:00,3600,0\n")
    with pytest.raises(TraceError) as e:
        load(f"helios:{p}")
    assert (e.value.line, e.value.column) == (2, "start_time")
    assert "not a timestamp" in e.value.reason


def test_swf_wrong_field_count(tmp_path):
    p = write(tmp_path, "x.swf", "; header\n1 0 5 3600 4 -1 -1 4 7200 -1 1 1 1 -1 1 -1 -1 -1\n"
              "2 60 0 120 1\n")
    with pytest.raises(TraceError, match=r"x.swf:3: 5 fields, expected 18"):
        load(f"swf:{p}")
    w = load(f"swf:{p}", skip_bad_rows=True)
    assert len(w) == 1 and w.summary.skipped == {"bad row: 5 fields, expected 18": 1}


def test_swf_bad_field_uses_swf_name(tmp_path):
    p = write(tmp_path, "x.swf", "1 0 5 abc 4 -1 -1 4 7200 -1 1 1 1 -1 1 -1 -1 -1\n")
    with pytest.raises(TraceError, match=r"x.swf:1 column 'run_time': not a number"):
        load(f"swf:{p}")


def test_csv_extra_field(tmp_path):
    p = write(tmp_path, "t.csv", (FIX / "tiresias_small.csv").read_text() + "7,1,2,3,m,4,5,6\n")
    with pytest.raises(TraceError, match=r"t.csv:8: 8 fields, expected 7"):
        load(f"tiresias:{p}")


@pytest.mark.parametrize("fmt", ["itp", "alibaba-openb", "alibaba-dlrm", "helios", "tiresias",
                                 "swf", "csv"])
def test_missing_file(tmp_path, fmt):
    with pytest.raises(TraceError, match="file not found"):
        load(f"{fmt}:{tmp_path / 'nope.csv'}")


@pytest.mark.parametrize("fmt,fixture", [("itp", "itp_small.csv"),
                                         ("alibaba-openb", "openb_pods_small.csv"),
                                         ("alibaba-dlrm", "dlrm_small.csv"),
                                         ("helios", "helios_small.csv"),
                                         ("tiresias", "tiresias_small.csv"),
                                         ("swf", "small.swf")])
def test_empty_trace(tmp_path, fmt, fixture):
    header = (FIX / fixture).read_text().splitlines()[0]
    p = write(tmp_path, "empty", header + "\n")
    with pytest.raises(TraceError, match="empty trace: no jobs"):
        load(f"{fmt}:{p}")


def test_empty_file_and_missing_column(tmp_path):
    with pytest.raises(TraceError, match="empty file"):
        load(f"itp:{write(tmp_path, 'e.csv', '')}")
    p = write(tmp_path, "m.csv", "job_id,duration\na,1\n")
    with pytest.raises(TraceError, match="missing column"):
        load(f"itp:{p}")


def test_only_documented_skips_empty_trace(tmp_path):
    head = (FIX / "openb_pods_small.csv").read_text().splitlines()[0]
    p = write(tmp_path, "o.csv", head + "\np0,1000,1024,1,500,,BE,Pending,10,40,\n")
    with pytest.raises(TraceError, match=r"empty trace: no jobs \(1 rows skipped\)"):
        load(f"alibaba-openb:{p}")


def test_unknown_format():
    with pytest.raises(ConfigError, match="unknown trace format 'nope'"):
        load("nope:x.csv")


# ---------------------------------------------------------------- builtin workloads

def _key(w) -> list:
    return [(j.job_id, j.submit_time, j.duration, j.num_gpus, j.gpu_milli, j.gpu_types, j.kind)
            for j in w]


@pytest.mark.parametrize("name", builtin.BUILTIN_NAMES)
def test_builtin_deterministic(name):
    a, b = load(f"builtin:{name}", seed=7), load(f"builtin:{name}", seed=7)
    assert _key(a) == _key(b)
    assert _key(a) != _key(load(f"builtin:{name}", seed=8))


def test_builtin_philly_mix():
    w = load("builtin:philly-mix", seed=1)
    assert len(w) == 2000 and w.jobs[0].submit_time == 0.0
    inf = [j for j in w if j.kind == INFERENCE]
    train = [j for j in w if j.kind == TRAINING]
    assert len(inf) / len(w) == pytest.approx(0.2, abs=0.03)
    assert all(j.num_gpus == 1 and j.gpu_milli in (250, 500, 1000) and j.slo_s == 60.0
               for j in inf)
    mix = np.bincount([j.num_gpus for j in train], minlength=9) / len(train)
    for g, p in builtin.PHILLY_GPU_MIX.items():
        assert mix[g] == pytest.approx(p, abs=0.04)
    d = np.array([j.duration for j in train])
    assert d.min() >= 60 * 10 ** 1.5 and d.max() <= 60 * 10 ** 4
    assert np.mean(d < 60 * 10 ** 3) == pytest.approx(0.8, abs=0.04)
    assert np.median([j.duration for j in inf]) == pytest.approx(3600, rel=0.15)
    load_ = w.offered_gpu_seconds() / (w.span * builtin.CLUSTER_GPUS)
    assert 0.7 < load_ < 1.15


def test_builtin_small_and_count_suffix():
    assert len(load("builtin:philly-mix-small")) == 200
    assert len(load("builtin:philly-mix:50")) == 50
    w = load("builtin:shared-gpu:3000", seed=3)
    assert len(w) == 3000
    gpu_jobs = [j for j in w if j.num_gpus > 0]
    typed = [j for j in gpu_jobs if j.gpu_types]
    assert len(typed) / len(gpu_jobs) == pytest.approx(builtin.SHARED_TYPED_P, abs=0.03)
    assert all(set(j.gpu_types) <= set(builtin.SHARED_GPU_TYPES) for j in typed)
    single = [j for j in w if j.num_gpus == 1]
    frac = sum(j.is_fractional for j in single) / len(single)
    assert frac == pytest.approx(builtin.SHARED_FRACTIONAL_P, abs=0.04)
    assert w.kinds()[INFERENCE] / len(w) == pytest.approx(0.57, abs=0.04)


@pytest.mark.parametrize("name", ["nope", "philly-mix:0", "philly-mix:x"])
def test_builtin_bad_names(name):
    with pytest.raises(ConfigError) as e:
        load(f"builtin:{name}")
    if name == "nope":
        assert all(n in str(e.value) for n in builtin.BUILTIN_NAMES)


# ---------------------------------------------------------------- summary

def test_describe_and_render():
    w = load(f"alibaba-openb:{FIX / 'openb_pods_small.csv'}")
    d = describe(w)
    assert d["jobs"] == 8 and d["jobs_by_kind"] == {"training": 4, "inference": 4}
    assert d["gpu_mix"] == {"0": 1, "1": 4, "2": 1, "4": 1, "8": 1}
    assert d["gpu_mix_fraction"]["1"] == 0.5 and d["fractional_gpu_jobs"] == 3
    assert d["rows_read"] == 10 and d["rows_skipped"] == 2
    assert d["skipped"] == {"never scheduled (no observed run time)": 2}
    assert d["notes"]["censored"] == 4 == d["censored_jobs"]
    assert d["span_days"] == pytest.approx(d["span_s"] / 86400)
    assert d["offered_gpu_hours"] == pytest.approx(w.offered_gpu_seconds() / 3600)
    assert d["duration_s"]["p50"] <= d["duration_s"]["p90"] <= d["duration_s"]["p99"]
    from rich.console import Console
    console = Console(record=True, width=120)
    console.print(render(d))
    text = console.export_text()
    assert "never scheduled" in text and "fractional-GPU jobs" in text


# ---------------------------------------------------------------- normalized CSV: defaults

def test_normalized_four_columns_take_the_defaults(tmp_path):
    p = write(tmp_path, "four.csv", "job_id,submit_time,duration,num_gpus\n"
              "a,0,3600,2\nb,10.5,,1\nc,20,60,0\n")
    jobs = by_id(load(f"csv:{p}"))
    a = jobs["a"]
    assert (a.submit_time, a.duration, a.num_gpus, a.gpu_milli, a.gpu_types, a.kind) == \
        (0.0, 3600.0, 2, 1000, (), TRAINING)
    assert (a.qos, a.cpu_milli, a.memory_mib, a.user, a.group, a.slo_s, a.censored) == \
        ("", 0, 0, "", "", None, False)
    assert jobs["b"].duration is None and jobs["c"].gpu_milli == 0


def test_normalized_optional_columns_in_any_order(tmp_path):
    p = write(tmp_path, "some.csv", "kind,num_gpus,job_id,duration,submit_time,gpu_milli\n"
              "inference,1,a,60,5,250\n,1,b,60,6,\n")
    jobs = by_id(load(f"csv:{p}"))
    assert (jobs["a"].kind, jobs["a"].gpu_milli) == (INFERENCE, 250)
    assert (jobs["b"].kind, jobs["b"].gpu_milli) == (TRAINING, 1000)  # empty = default


def test_normalized_missing_required_column_names_file_and_column(tmp_path):
    p = write(tmp_path, "three.csv", "job_id,submit_time,num_gpus,kind\na,0,1,training\n")
    with pytest.raises(TraceError) as e:
        load(f"csv:{p}")
    assert str(e.value).startswith(f"{p}:1: missing column(s) duration;")
    p = write(tmp_path, "two.csv", "job_id,duration\na,1\n")
    with pytest.raises(TraceError, match=r"two.csv:1: missing column\(s\) submit_time, num_gpus;"):
        load(f"csv:{p}")


def test_normalized_bad_value_names_line_and_column(tmp_path):
    p = write(tmp_path, "bad.csv", "job_id,submit_time,duration,num_gpus\na,0,60,1\nb,1,60,x\n")
    with pytest.raises(TraceError) as e:
        load(f"csv:{p}")
    assert str(e.value) == f"{p}:3 column 'num_gpus': not a number: 'x'"
    p = write(tmp_path, "kind.csv", "job_id,submit_time,duration,num_gpus,kind\na,0,60,1,batch\n")
    with pytest.raises(TraceError, match=r"kind.csv:2 column 'kind': must be training or "
                       "inference, got 'batch'"):
        load(f"csv:{p}")


# ---------------------------------------------------------------- openb variants without times

@pytest.mark.parametrize("header", ["name,cpu_milli,memory_mib,num_gpu,gpu_milli",
                                    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec"])
def test_openb_variant_without_times_says_what_it_is(tmp_path, header):
    p = write(tmp_path, "openb_pod_list_multigpu50.csv",
              header + "\nopenb-pod-0000,12000,16384,1,1000" + ("," if "spec" in header else "")
              + "\n")
    with pytest.raises(TraceError) as e:
        load(f"alibaba-openb:{p}")
    msg = str(e.value)
    assert msg.startswith(f"{p}:1: an Alibaba openb pod list variant without times")
    assert "FGD" in msg and "static packing" in msg
    assert "no creation_time, deletion_time, scheduled_time" in msg
    assert "cannot be replayed over time" in msg
    r = CliRunner().invoke(cli_app, ["bench", "--trace", f"alibaba-openb:{p}", "--policies",
                                     "fifo", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "without times" in r.output and r.exception is not None \
        and isinstance(r.exception, SystemExit)


# ---------------------------------------------------------------- GPU counts are integers

GPU_COUNT_FILES = {  # format -> (header, a row with 1.5 GPUs, the GPU column)
    "itp": ("job_id,submission_time,duration,num_gpu", "a,0,60,1.5", "num_gpu"),
    "tiresias": ("job_id,num_gpu,submit_time,iterations,model_name,duration,interval",
                 "1,1.5,0,10,m,60,0", "num_gpu"),
    "csv": ("job_id,submit_time,duration,num_gpus", "a,0,60,1.5", "num_gpus"),
    "alibaba-openb": (("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
                       "creation_time,deletion_time,scheduled_time"),
                      "p,1000,1024,1.5,1000,,BE,Running,0,60,0", "num_gpu"),
    "helios": (("job_id,user,vc,gpu_num,cpu_num,node_num,state,submit_time,start_time,"
                "end_time,duration,queue"),
               ("1,u,vc,1.5,6,1,COMPLETED,2020-04-01 08:00:00,2020-04-01 08:00:05,"
                "2020-04-01 08:01:05,60,5"), "gpu_num"),
}


@pytest.mark.parametrize("fmt", sorted(GPU_COUNT_FILES))
def test_a_fractional_gpu_count_is_rejected_not_truncated(tmp_path, fmt):
    header, row, col = GPU_COUNT_FILES[fmt]
    good = row.replace("1.5", "2", 1)
    p = write(tmp_path, "g.csv", f"{header}\n{row}\n{good}\n")
    with pytest.raises(TraceError) as e:
        load(f"{fmt}:{p}")
    assert str(e.value) == f"{p}:2 column '{col}': not an integer: '1.5'"
    w = load(f"{fmt}:{p}", skip_bad_rows=True)
    assert [j.num_gpus for j in w] == [2]
    assert w.summary.skipped == {f"bad {col}: not an integer": 1}


def test_swf_fractional_processors_rejected(tmp_path):
    p = write(tmp_path, "x.swf", "1 0 5 3600 1.5 -1 -1 4 7200 -1 1 1 1 -1 1 -1 -1 -1\n")
    with pytest.raises(TraceError, match=r"x.swf:1 column 'allocated_processors': not an "
                       "integer: '1.5'"):
        load(f"swf:{p}")
