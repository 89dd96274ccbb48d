"""``builtin:ml-pipelines`` (workflows of dependent jobs) and the normalized CSV's
``workflow_id`` / ``depends_on`` columns."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from autoflow import workflow
from autoflow.cluster import load_cluster
from autoflow.errors import ConfigError, TraceError
from autoflow.evaluate import evaluate
from autoflow.job import INFERENCE, TRAINING, Job
from autoflow.load import offered_load
from autoflow.traces import builtin, normalized
from autoflow.traces.cli import app
from autoflow.traces.registry import load_workload
from autoflow.workload import Workload

TEMPLATES = {t.name: t for t in builtin.PIPELINES}
MAX_RUN_JOBS = max(len(t.prepare) + 2 + t.replicas for t in builtin.PIPELINES)


def _load(n: int | None = None, seed: int = 0) -> Workload:
    return load_workload(f"builtin:ml-pipelines{'' if n is None else f':{n}'}", seed=seed)


def _stage(j: Job) -> str:
    """'prepare', 'train', 'evaluate' or 'serve' (from the group TEMPLATE/STAGE)."""
    return j.group.split("/")[1].split("-")[0]


def _runs(w: Workload) -> dict[str, list[Job]]:
    runs: dict[str, list[Job]] = defaultdict(list)
    for j in w:
        if j.workflow_id:
            runs[j.workflow_id].append(j)
    return dict(runs)


# ---------------------------------------------------------------- the builtin workload

def test_listed_with_its_default_size():
    assert "ml-pipelines" in builtin.BUILTIN_NAMES
    assert builtin.DEFAULT_JOBS["ml-pipelines"] == 600
    assert "ml-pipelines" in builtin.__doc__


def test_deterministic_per_seed_and_differs_across_seeds():
    a, b, c = _load(seed=7), _load(seed=7), _load(seed=8)
    assert a.jobs == b.jobs
    assert [(j.job_id, j.submit_time, j.duration) for j in a] != \
        [(j.job_id, j.submit_time, j.duration) for j in c]


@pytest.mark.parametrize("n", [1, 7, 50, 600, 1234])
def test_at_least_n_jobs_in_whole_pipelines(n):
    w = _load(n, seed=3)
    assert n <= len(w) <= n + MAX_RUN_JOBS - 1
    for run in _runs(w).values():  # no pipeline cut short
        t = TEMPLATES[run[0].group.split("/")[0]]
        assert len(run) == len(t.prepare) + 2 + t.replicas


def test_smaller_workload_is_the_start_of_a_larger_one():
    small, big = _load(300, seed=5), _load(900, seed=5)
    assert big.jobs[:len(small)] == small.jobs


def test_ids_unique_dependencies_inside_and_acyclic():
    w = _load(2000, seed=1)
    ids = [j.job_id for j in w]
    assert len(set(ids)) == len(ids)
    known = set(ids)
    by_id = {j.job_id: j for j in w}
    for j in w:
        for p in j.depends_on:
            assert p in known
            assert by_id[p].workflow_id == j.workflow_id != ""  # within its own pipeline
    workflow.check(w.jobs)  # raises on an unknown dependency or a cycle
    assert len(workflow.topological(w.jobs)) == len(w)


def test_stage_shapes():
    w = _load(seed=2)
    runs = _runs(w)
    assert len(runs) >= 2 * len(builtin.PIPELINES)
    dags = 0
    for wf, run in runs.items():
        stages = defaultdict(list)
        for j in run:
            stages[_stage(j)].append(j)
            assert j.submit_time == run[0].submit_time  # submitted together at the start
            assert j.job_id.startswith(f"{wf}-") and j.duration > 0
        (train,), (ev,) = stages["train"], stages["evaluate"]
        prep, serve = stages["prepare"], stages["serve"]
        assert set(stages) == {"prepare", "train", "evaluate", "serve"}
        dags += len(prep) > 1
        for p in prep:
            assert p.num_gpus == 0 and p.gpu_milli == 0 and p.gpu_demand == 0
            assert p.cpu_milli >= 8000 and p.memory_mib > 0 and p.kind == TRAINING
            assert p.depends_on == ()
        assert train.num_gpus in (2, 4, 8) and train.gpu_milli == 1000
        assert set(train.depends_on) == {p.job_id for p in prep}
        assert ev.num_gpus == 1 and ev.depends_on == (train.job_id,)
        assert 1 <= len(serve) <= 2
        for s in serve:
            assert s.kind == INFERENCE and s.slo_s == 60.0 and s.qos == "LS"
            assert s.num_gpus == 1 and s.gpu_milli in (250, 500, 1000)
            assert s.depends_on == (ev.job_id,)
            assert s.duration >= 3600  # a long-lived service, hours
    assert dags > 0  # two parallel prepare stages joining into train
    gangs = {j.num_gpus for j in w if j.group.endswith("/train")}
    assert gangs == {2, 4, 8}
    assert {j.gpu_milli for j in w if j.group.endswith("/serve")} == {250, 500, 1000}
    independent = [j for j in w if not j.workflow_id]
    assert independent and all(not j.depends_on and not j.group for j in independent)
    assert {j.kind for j in independent} == {TRAINING, INFERENCE}


def test_stage_durations_follow_the_documented_medians():
    w = _load(4000, seed=4)
    by_group = defaultdict(list)
    for j in w:
        if j.workflow_id:
            by_group[j.group].append(j.duration)
    for name, t in TEMPLATES.items():
        for stage, median in (("train", t.train_median_s), ("evaluate", t.eval_median_s),
                              ("serve", t.serve_median_s),
                              (t.prepare[0][0], t.prepare_median_s)):
            d = by_group[f"{name}/{stage}"]
            assert len(d) >= 40
            assert np.median(d) == pytest.approx(median, rel=0.15), (name, stage)


def test_nightly_recurrence():
    """Each template starts every night at its own time, about 24 h after the night
    before (plus ad-hoc runs at random times)."""
    w = _load(seed=6)
    starts = defaultdict(list)
    for run in _runs(w).values():
        starts[run[0].group.split("/")[0]].append(run[0].submit_time)
    last_day = int(w.jobs[-1].submit_time // builtin.DAY_S)
    assert last_day >= 5  # the default size spans about a week
    for i, t in enumerate(builtin.PIPELINES):
        s = np.array(starts[t.name])
        nightly = []
        for day in range(last_day):  # whole days before the last submission
            nominal = day * builtin.DAY_S + builtin.NIGHTLY_FIRST_S + i * builtin.NIGHTLY_SPACING_S
            near = s[np.abs(s - nominal) <= builtin.NIGHTLY_JITTER_S]
            assert len(near), (t.name, day)
            nightly.append(near[np.argmin(np.abs(near - nominal))])
        gaps = np.diff(nightly)
        assert np.all(np.abs(gaps - builtin.DAY_S) <= 2 * builtin.NIGHTLY_JITTER_S), t.name
        assert len(set(np.round(gaps))) > 1  # jittered, not exactly 24 h
    adhoc = len(_runs(w)) - len(builtin.PIPELINES) * last_day
    assert adhoc > 0


def test_sized_for_the_target_load():
    # the expectation, exactly: pipelines per day plus the independent stream
    offered = (builtin.pipelines_gpu_seconds_per_day() / builtin.DAY_S
               + builtin.independent_rate() * builtin.independent_gpu_seconds_per_job())
    assert offered == pytest.approx(builtin.TARGET_LOAD * builtin.CLUSTER_GPUS)
    share = builtin.pipelines_gpu_seconds_per_day() / builtin.DAY_S / offered
    assert 0.05 < share < 0.5  # the pipelines are a real part of the load, not all of it
    # one sample: the heavy-tailed Philly durations of the ad-hoc training make the
    # realized load of 600 jobs vary; over 300 seeds it ranged 0.60..1.21 (median 0.86,
    # a little under 0.9 because the load span adds the mean duration to the spread of
    # the submit times), so each seed is held to 0.55..1.3 and the mean of ten seeds
    # (standard error about 0.04) to 0.75..1.0
    cluster = load_cluster("philly-64")
    assert cluster.total_gpus == builtin.CLUSTER_GPUS
    loads = [offered_load(_load(seed=s), cluster) for s in range(10)]
    assert all(0.55 < x < 1.3 for x in loads), loads
    assert 0.75 < float(np.mean(loads)) < 1.0, loads


def test_fifo_runs_every_stage_after_its_parents():
    w = _load(seed=0)
    ev = evaluate("fifo", w, load_cluster("philly-64"))
    states = ev.result.jobs
    assert len(states) == len(w)
    finish = {js.job.job_id: js.finish for js in states}
    held = 0
    for js in states:
        assert js.first_start is not None and js.finish is not None, js.job.job_id
        for p in js.job.depends_on:
            assert js.first_start >= finish[p], (js.job.job_id, p)
            held += finish[p] > js.submit
    assert held > 0  # stages were submitted before their parents finished: the hold mattered


# ---------------------------------------------------------------- normalized CSV

def test_csv_round_trip_keeps_workflows(tmp_path):
    w = _load(200, seed=9)
    out = tmp_path / "jobs.csv"
    normalized.write(w, out)
    with open(out, newline="") as f:
        header = next(csv.reader(f))
    assert header == normalized.COLUMNS + normalized.OPTIONAL
    assert header[-4:] == ["group", "censored", "workflow_id", "depends_on"]
    again = load_workload(f"csv:{out}")
    assert [replace(j, extra={}) for j in again] == [replace(j, extra={}) for j in w]
    assert any(len(j.depends_on) == 2 for j in again)  # a join: two ids with "|"
    assert sum(bool(j.workflow_id) for j in again) > 0


def _csv(tmp_path, rows: str, name: str = "w.csv"):
    p = tmp_path / name
    p.write_text("job_id,submit_time,duration,num_gpus,workflow_id,depends_on\n" + rows)
    return p


def test_csv_reads_the_columns_and_leaves_them_optional(tmp_path):
    p = _csv(tmp_path, "a,0,10,0,w1,\nb,0,20,1,w1, a \nc,0,5,1,w1,a|b|a\nd,1,5,1,,\n")
    jobs = {j.job_id: j for j in load_workload(f"csv:{p}")}
    assert jobs["b"].depends_on == ("a",) and jobs["b"].workflow_id == "w1"
    assert jobs["c"].depends_on == ("a", "b")  # a repeated id counts once
    assert jobs["d"].depends_on == () and jobs["d"].workflow_id == ""
    plain = tmp_path / "plain.csv"
    plain.write_text("job_id,submit_time,duration,num_gpus\nx,0,1,1\n")
    (x,) = load_workload(f"csv:{plain}")
    assert x.depends_on == () and x.workflow_id == ""


def _one_line(e: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_csv_unknown_dependency(tmp_path):
    p = _csv(tmp_path, "a,0,10,1,,\nb,0,10,1,,a|ghost\n")
    with pytest.raises(ConfigError) as e:
        load_workload(f"csv:{p}")
    _one_line(e, str(p), "'b'", "'depends_on'", "'ghost'")


def test_csv_cycle(tmp_path):
    p = _csv(tmp_path, "a,0,10,1,,c\nb,0,10,1,,a\nc,0,10,1,,b\nd,0,10,1,,\n")
    with pytest.raises(ConfigError) as e:
        load_workload(f"csv:{p}")
    _one_line(e, str(p), "'depends_on'", "jobs a, b, c depend on each other in a cycle")


def test_csv_self_dependency_names_line_and_field(tmp_path):
    p = _csv(tmp_path, "a,0,10,1,,\nb,0,10,1,,a|b\n")
    with pytest.raises(TraceError) as e:
        load_workload(f"csv:{p}")
    assert e.value.line == 3 and e.value.column == "depends_on"
    _one_line(e, f"{p}:3 column 'depends_on'", "'b' depends on itself")


def test_csv_errors_are_one_line_on_the_command_line(tmp_path):
    runner = CliRunner()
    for rows, needles in (("a,0,10,1,,zz\n", ("'a'", "'depends_on'", "'zz'")),
                          ("a,0,10,1,,b\nb,0,10,1,,a\n", ("'depends_on'", "cycle")),
                          ("a,0,10,1,,a\n", (":2 column 'depends_on'",))):
        p = _csv(tmp_path, rows)
        r = runner.invoke(app, ["inspect", f"csv:{p}"])
        assert r.exit_code == 2, r.output
        err = r.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in r.output
        for n in needles:
            assert n in err, err


def test_csv_skip_bad_rows_drops_the_dependants_of_a_skipped_row(tmp_path):
    # b's row is bad (a negative duration): with skip_bad_rows, c (needs b) and d (needs
    # c) go too, counted; a and e stay
    p = _csv(tmp_path, "a,0,10,1,,\nb,0,-1,1,,a\nc,0,10,1,,b\nd,0,10,1,,c\ne,0,10,1,,a\n")
    with pytest.raises(TraceError):
        load_workload(f"csv:{p}")
    w = load_workload(f"csv:{p}", skip_bad_rows=True)
    assert [j.job_id for j in w] == ["a", "e"]
    assert w.summary.skipped["depends on a job not in the trace"] == 2
    assert w.summary.rows_skipped == 3


def test_csv_write_refuses_an_id_it_cannot_separate(tmp_path):
    w = Workload([Job("x|y", 0.0, 10.0), Job("z", 0.0, 10.0, depends_on=("x|y",))])
    with pytest.raises(ConfigError, match=r"job 'z' field 'depends_on'.*'x\|y'"):
        normalized.write(w, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
