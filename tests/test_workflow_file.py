"""Workflow templates (issue 21): a pipeline described once in YAML, its runs expanded on
its schedule; every mistake is one error naming the file, the stage and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from hardening import assert_one_line_error, invoke

from autoflow.errors import ConfigError
from autoflow.workflow import check
from autoflow.workflow_file import expand, load, parse

TEMPLATE = """\
name: recsys
schedule: nightly
stages:
  - name: prep-a
    num_gpus: 0
    cpu_milli: 16000
    duration_hint_s: 30m
  - name: prep-b
    num_gpus: 0
    cpu_milli: 8000
    duration_hint_s: 600
  - name: train
    num_gpus: 8
    depends_on: [prep-a, prep-b]
    duration_hint_s: 4h
  - name: evaluate
    depends_on: train
    duration_hint_s: 20m
  - name: serve
    kind: inference
    replicas: 2
    gpu_milli: 500
    slo_s: 60
    depends_on: [evaluate]
    duration_hint_s: 6h
"""


def write(tmp_path: Path, text: str = TEMPLATE, name: str = "recsys.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_template_runs_nightly_as_a_dag(tmp_path):
    t = load(write(tmp_path))
    assert t.every_s == 86400.0 and t.at_s == 7200.0
    jobs = expand(t, 3, seed=1)
    check(jobs)
    assert len(jobs) == 3 * 6  # two serving replicas
    by = {j.job_id: j for j in jobs}
    assert by["recsys-1-train"].depends_on == ("recsys-1-prep-a", "recsys-1-prep-b")
    assert by["recsys-2-serve-1"].depends_on == ("recsys-2-evaluate",)
    assert by["recsys-0-serve-0"].kind == "inference" and by["recsys-0-serve-0"].slo_s == 60
    assert by["recsys-0-prep-a"].num_gpus == 0 and by["recsys-0-train"].num_gpus == 8
    assert {j.workflow_id for j in jobs} == {"recsys-0", "recsys-1", "recsys-2"}
    assert by["recsys-1-train"].group == "recsys/train"
    # runs a day apart at 02:00; every stage of a run submitted with it
    assert [by[f"recsys-{k}-evaluate"].submit_time for k in range(3)] == [7200.0, 93600.0,
                                                                          180000.0]
    # durations drawn around the hints, the same for the same seed
    assert [j.duration for j in expand(t, 3, seed=1)] == [j.duration for j in jobs]
    assert [j.duration for j in expand(t, 3, seed=2)] != [j.duration for j in jobs]
    assert 0.25 < by["recsys-0-train"].duration / 14400 < 4
    # for the service: no true duration, the hint as the estimate
    live = t.jobs("r9", 5.0)
    assert live[2].duration is None and live[2].extra["duration_estimate_s"] == 14400.0


@pytest.mark.parametrize("change, needle", [
    (("    depends_on: [prep-a, prep-b]", "    depends_on: [prep-a, serve]"),
     "stages[2] (train) field 'depends_on': 'serve' is not a stage listed before this one"),
    (("    replicas: 2", "    replicas: 0"), "stages[4] (serve) field 'replicas'"),
    (("  - name: evaluate", "  - name: evaluate\n    colour: red"),
     "stages[3] (evaluate): unknown field 'colour'"),
    (("    num_gpus: 8", "    num_gpus: 8\n    gpu_milli: 500"),
     "stages[2] (train): only single-GPU jobs may share a GPU"),
    (("schedule: nightly", "schedule: weekly"), "field 'schedule'"),
    (("    duration_hint_s: 4h", "    duration_hint_s: soon"),
     "stages[2] (train) field 'duration_hint_s'"),
    (("  - name: prep-b", "  - name: prep-a"), "stages[1] (prep-a) field 'name'"),
    (("    kind: inference", "    kind: batch"), "stages[4] (serve) field 'kind'"),
    (("    num_gpus: 8", "    num_gpus: 8\n    gpu_types: [A100, '']"),
     "stages[2] (train) field 'gpu_types[1]': a GPU type is a non-empty string"),
    (("    num_gpus: 8", "    num_gpus: 8\n    gpu_types: [7]"),
     ("stages[2] (train) field 'gpu_types[0]': a GPU type is a non-empty string (such as "
      "A100), got 7")),
    (("    num_gpus: 8", "    num_gpus: 8\n    gpu_types: [~, A100]"),
     "stages[2] (train) field 'gpu_types[0]'"),
    (("    num_gpus: 8", "    num_gpus: 8\n    gpu_types: ['  ']"),
     "stages[2] (train) field 'gpu_types[0]'"),
    (("    num_gpus: 8", "    num_gpus: 8\n    gpu_types: A100"),
     "stages[2] (train) field 'gpu_types': expected list"),
    (("    num_gpus: 8", "    num_gpus: 8\n    entrypoint: '   '"),
     "stages[2] (train) field 'entrypoint'"),
    (("    num_gpus: 8", "    num_gpus: 8\n    entrypoint: 7"),
     "stages[2] (train) field 'entrypoint': entrypoint must be a string"),
    (("    num_gpus: 8", "    num_gpus: 8\n    runtime_env: [DATA]"),
     "stages[2] (train) field 'runtime_env': a mapping"),
    (("    num_gpus: 8", "    num_gpus: 8\n    runtime_env: {conda: x}"),
     "stages[2] (train) field 'runtime_env.conda': unknown"),
    (("    num_gpus: 8", "    num_gpus: 8\n    runtime_env: {env_vars: {DATA: 3}}"),
     "stages[2] (train) field 'runtime_env.env_vars'"),
    (("    num_gpus: 8", "    num_gpus: 8\n    runtime_env: {env_vars: {AUTOFLOW_RANK: '1'}}"),
     "stages[2] (train) field 'runtime_env.env_vars'"),
    (("    num_gpus: 8", "    num_gpus: 8\n    runtime_env: {pip: [1]}"),
     "stages[2] (train) field 'runtime_env.pip'"),
])
def test_bad_templates_name_the_stage_and_field(tmp_path, change, needle):
    p = write(tmp_path, TEMPLATE.replace(*change))
    with pytest.raises(ConfigError) as e:
        load(p)
    assert needle in str(e.value) and str(p) in str(e.value)
    assert "\n" not in str(e.value)


def test_gpu_types_of_a_stage_are_kept(tmp_path):
    t = load(write(tmp_path, TEMPLATE.replace("    num_gpus: 8",
                                              "    num_gpus: 8\n    gpu_types: [A100, H100]")))
    train = next(j for j in t.jobs("r", 0.0) if j.job_id == "r-train")
    assert train.gpu_types == ("A100", "H100")


def test_not_a_template():
    with pytest.raises(ConfigError, match="no such workflow file"):
        load("/nonexistent/x.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse(["a"], "x")
    with pytest.raises(ConfigError, match="field 'stages'"):
        parse({"name": "a", "stages": []}, "x")


def test_cli_check_and_expand(tmp_path):
    p = write(tmp_path)
    r = invoke("workflows", "check", str(p))
    assert r.exit_code == 0, r.output
    assert "serve x2: inference" in r.output and "after prep-a, prep-b" in r.output
    out = tmp_path / "runs.csv"
    r = invoke("workflows", "expand", str(p), "--runs", "4", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert len(out.read_text().splitlines()) == 1 + 4 * 6
    bad = write(tmp_path, TEMPLATE.replace("    replicas: 2", "    replicas: x"), "bad.yaml")
    assert_one_line_error(invoke("workflows", "check", str(bad)), "field 'replicas'")
    assert_one_line_error(invoke("workflows", "expand", str(p), "--runs", "0", "--out",
                                 str(out)), "runs")


def test_the_shipped_examples_are_valid_templates():
    """Every template in examples/workflows loads and expands into dependent jobs."""
    folder = Path(__file__).resolve().parents[1] / "examples" / "workflows"
    files = sorted(folder.glob("*.yaml"))
    assert files
    for f in files:
        t = load(f)
        jobs = t.jobs(f"{t.name}-0", 0.0)
        check(jobs, str(f))
        assert any(j.depends_on for j in jobs), f


def test_a_stage_carries_what_it_runs_on_ray(tmp_path):
    """``entrypoint`` and ``runtime_env`` are kept for the service's Ray executor, shown by
    ``workflows check``, and ``expand`` says that the CSV leaves them out."""
    text = TEMPLATE.replace("    duration_hint_s: 4h", "    duration_hint_s: 4h\n"
                            "    entrypoint: python train.py --epochs 3\n"
                            "    runtime_env: {env_vars: {DATA: /data/today}, pip: [numpy]}")
    p = write(tmp_path, text)
    t = load(p)
    train = next(st for st in t.stages if st.name == "train")
    assert train.run == {"entrypoint": "python train.py --epochs 3",
                         "runtime_env": {"env_vars": {"DATA": "/data/today"},
                                         "pip": ["numpy"]}}
    assert all(st.run is None for st in t.stages if st.name != "train")
    r = invoke("workflows", "check", p)
    assert r.exit_code == 0, r.output
    assert "runs 'python train.py --epochs 3'" in r.stdout
    r = invoke("workflows", "expand", p, "--runs", "2", "--out", tmp_path / "runs.csv")
    assert r.exit_code == 0, r.output
    assert "entrypoint and runtime_env of train are not in the CSV" in r.stderr
