"""Generators and workflows (issue 21): a generator fitted on a trace with pipelines
learns them (shapes, per-stage attributes, share, arrivals) and samples whole pipelines
with valid dependencies; the safe file keeps them and refuses a bad pipeline section;
a generator fitted without workflows is what it always was."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np
import pytest
from autoflow.generators import fit_generator, load_generator
from autoflow.generators import pipelines as pl
from autoflow.generators.card import card_path
from autoflow.generators.conditions import parse_condition
from autoflow.generators.generator import META
from autoflow.generators.sdv_models import sdv_available
from autoflow.generators.table import from_table
from simdata import mixed_workload
from typer.testing import CliRunner

from autoflow import workflow
from autoflow.cli import app
from autoflow.core.jobstate import DONE
from autoflow.errors import ConfigError
from autoflow.policies import make_policy
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.traces.registry import load_workload
from autoflow.workload import Workload

runner = CliRunner()
N = 800


@pytest.fixture(scope="module")
def source() -> Workload:
    return load_workload(f"builtin:ml-pipelines:{N}", seed=0)


@pytest.fixture(scope="module")
def gen(source):
    return fit_generator(source, "empirical", seed=0)


def flows_of(w: Workload) -> dict[str, list]:
    out = defaultdict(list)
    for j in w:
        if j.workflow_id:
            out[j.workflow_id].append(j)
    return out


def label_graph(stages: list) -> tuple:
    """A workflow's shape, free of job ids and stage order: its labels and its edges
    between labels."""
    by_id = {j.job_id: (j.group, j.kind) for j in stages}
    return (tuple(sorted(Counter(by_id.values()).items())),
            tuple(sorted(Counter((by_id[p], by_id[j.job_id]) for j in stages
                                 for p in j.depends_on).items())))


def rows(w: Workload) -> list[tuple]:
    return [(j.job_id, j.submit_time, j.duration, j.num_gpus, j.gpu_milli, j.kind, j.group,
             j.cpu_milli, j.memory_mib, j.slo_s, j.workflow_id, j.depends_on) for j in w]


def test_the_generator_learns_the_pipelines(gen, source):
    d = gen.describe()["pipelines"]
    truth = pl.count(source.jobs)
    assert d["workflows"] == truth["workflows"] and d["stages"] == truth["stages"]
    assert d["shapes"] == len({label_graph(f) for f in flows_of(source).values()}) == 5
    assert d["job_share"] == pytest.approx(truth["job_share"], abs=1e-3)
    # the attribute and arrival models learned the independent jobs only
    assert gen.table["rows"] == truth["independent"]
    assert gen.info["attributes_fitted_on"] == "independent jobs"
    assert gen.arrivals.n_fitted == truth["independent"]


@pytest.mark.parametrize("seed", [1, 2])
def test_samples_hold_valid_pipelines_like_the_source(gen, source, seed):
    w = gen.sample(N, seed=seed)
    assert len(w) == N  # exactly n, whole pipelines
    ids = [j.job_id for j in w]
    assert len(set(ids)) == len(ids)
    workflow.check(w.jobs, origin="sample")
    by_id = {j.job_id: j for j in w}
    flows = flows_of(w)
    for j in w:
        for p in j.depends_on:
            assert by_id[p].workflow_id == j.workflow_id != ""
    # every sampled shape is a fitted one, and one the source had
    fitted = set(gen.pipelines.shape_labels())
    real = {label_graph(f) for f in flows_of(source).values()}
    for stages in flows.values():
        order = pl.canonical(stages)
        key = (tuple((j.group, j.kind) for j in order), pl.edges_of(order))
        assert key in fitted
        assert label_graph(stages) in real
    # the pipeline share and the per-stage durations match the source's
    share = pl.count(w.jobs)["job_share"]
    assert share == pytest.approx(pl.count(source.jobs)["job_share"], abs=0.05)
    assert len(flows) >= 40

    def medians(x: Workload) -> dict:
        d = defaultdict(list)
        for j in x:
            if j.workflow_id:
                d[j.group].append(j.duration)
        return {g: float(np.median(v)) for g, v in d.items() if len(v) >= 5}

    # (a larger sample: each stage's median then settles near its resampled source's)
    m_real, m_syn = medians(source), medians(gen.sample(5 * N, seed=seed))
    assert set(m_syn) <= {j.group for j in source if j.workflow_id}
    assert len(set(m_real) & set(m_syn)) >= 10
    for g in set(m_real) & set(m_syn):
        assert 1 / 1.5 <= m_syn[g] / m_real[g] <= 1.5, g
    # stages keep what the source's stages of their group had
    real_gpus = defaultdict(set)
    for j in source:
        real_gpus[j.group].add((j.num_gpus, j.gpu_milli, j.kind, j.cpu_milli))
    for j in w:
        if j.workflow_id:
            assert (j.num_gpus, j.gpu_milli, j.kind, j.cpu_milli) in real_gpus[j.group]


def test_same_seed_same_sample_other_seed_other(gen):
    a, b, c = gen.sample(300, seed=7), gen.sample(300, seed=7), gen.sample(300, seed=8)
    assert rows(a) == rows(b)
    assert rows(a) != rows(c)


def test_small_and_large_n_are_respected(gen):
    for n in (1, 3, 7, 2500):
        w = gen.sample(n, seed=3)
        assert len(w) == n
        workflow.check(w.jobs)
    assert pl.count(gen.sample(2500, seed=3).jobs)["job_share"] == \
        pytest.approx(gen.pipelines.share, abs=0.01)


def test_load_scale_works_and_conditions_are_refused(gen):
    a, b = gen.sample(600, seed=1), gen.sample(600, seed=1, load_scale=2.0)
    assert b.span == pytest.approx(a.span / 2, rel=0.25)
    workflow.check(b.jobs)
    with pytest.raises(ConfigError, match="not supported by a generator with pipelines"):
        gen.sample(100, seed=1, conditions=[parse_condition("kind=inference")])


def test_save_and_load_keep_the_pipelines(tmp_path, gen):
    path = tmp_path / "p.gen"
    gen.save(path)
    back = load_generator(path)
    assert back.pipelines is not None
    assert rows(back.sample(500, seed=4)) == rows(gen.sample(500, seed=4))
    card = json.loads(card_path(path).read_text())
    assert card["generator"]["pipelines"]["shapes"] == 5
    with zipfile.ZipFile(path) as z:  # arrays and JSON only
        assert all(n.endswith(".npy") for n in z.namelist())
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz[META].tobytes())
    assert meta["pipelines"]["share"] == pytest.approx(gen.pipelines.share)


def _rewrite(path, change) -> None:
    """The generator file at ``path`` with ``change(arrays, meta)`` applied, written
    without its card (so that the pipeline checks, not the hash, must refuse it)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop(META).tobytes())
    change(arrays, meta)
    arrays[META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    card_path(path).unlink(missing_ok=True)


def _backward_edge(a, m):
    a["pipelines.edges"] = a["pipelines.edges"][:, ::-1].copy()


def _kind_out_of_range(a, m):
    a["pipelines.kind"] = a["pipelines.kind"] + 10_000


def _rows_short(a, m):
    a["pipelines.row.duration"] = a["pipelines.row.duration"][:-1]


def _share_bad(a, m):
    m["pipelines"]["share"] = 2.0


def _missing(a, m):
    del a["pipelines.counts"]


def _nan_duration(a, m):
    a["pipelines.row.duration"] = a["pipelines.row.duration"] * np.nan


def _shared_gang(a, m):
    a["pipelines.row.gpu_milli"] = np.full_like(a["pipelines.row.gpu_milli"], 500)


def _object_array(a, m):
    a["pipelines.strings"] = np.array(["training", 1], dtype=object)


@pytest.mark.parametrize("change, needle", [
    (_backward_edge, "must go forward"), (_kind_out_of_range, "kind"),
    (_rows_short, "stage rows"), (_share_bad, "share"), (_missing, "counts is missing"),
    (_nan_duration, "row.duration"), (_shared_gang, "share a GPU"),
    (_object_array, "not a valid generator file")])
def test_a_bad_pipeline_section_is_refused(tmp_path, gen, change, needle):
    path = tmp_path / "bad.gen"
    gen.save(path)
    _rewrite(path, change)
    with pytest.raises(ConfigError, match=needle) as e:
        load_generator(path)
    assert str(path) in str(e.value)


def test_a_tampered_file_is_refused_by_its_card(tmp_path, gen):
    path = tmp_path / "t.gen"
    gen.save(path)
    _rewrite(path, lambda a, m: a.update({"pipelines.row.duration":
                                          a["pipelines.row.duration"] * 100}))
    gen.save(tmp_path / "other.gen")  # a card from a genuine file, put beside this one
    card_path(path).write_bytes(card_path(tmp_path / "other.gen").read_bytes())
    with pytest.raises(ConfigError, match="does not match the sha256") as e:
        load_generator(path)
    assert str(path) in str(e.value)


def test_a_generator_without_workflows_is_unchanged(tmp_path):
    """Fitted on a trace without workflows: no pipeline model, nothing about pipelines
    in its file or card, and its samples are the attribute model's rows at the arrival
    model's times, bit for bit (what ``sample`` did before pipelines)."""
    real = mixed_workload(300, seed=5, span=86400.0)
    gen = fit_generator(real, "empirical", seed=0)
    assert gen.pipelines is None and "pipelines" not in gen.describe()
    for seed in (0, 11):
        want = from_table(gen.attributes.sample(250, seed=seed), np.zeros(250))
        times = gen.arrivals.sample(250, np.random.default_rng(seed), 1.0)
        for i, (job, t) in enumerate(zip(want, times, strict=True)):
            job.submit_time, job.job_id = float(t), f"syn-{i}"
        got = gen.sample(250, seed=seed)
        assert rows(got) == rows(Workload(want))
        assert [(j.user, j.qos, j.gpu_types) for j in got] == \
            [(j.user, j.qos, j.gpu_types) for j in Workload(want)]
        assert not workflow.has_dependencies(got.jobs)
    path = tmp_path / "old.gen"
    gen.save(path)
    with np.load(path, allow_pickle=False) as npz:
        assert not any(k.startswith("pipelines.") for k in npz.files)
        assert "pipelines" not in json.loads(npz[META].tobytes())
    assert "pipelines" not in json.loads(card_path(path).read_text())["generator"]
    back = load_generator(path)
    assert back.pipelines is None
    assert rows(back.sample(250, seed=11)) == rows(gen.sample(250, seed=11))


def test_the_same_jobs_without_their_workflow_fields_fit_as_before(source):
    """Stripped of workflow ids and dependencies, the stages are independent jobs again:
    the generator is an old-style one over every job."""
    flat = Workload([replace(j, workflow_id="", depends_on=()) for j in source],
                    source.source)
    gen = fit_generator(flat, "empirical", seed=0)
    assert gen.pipelines is None and gen.table["rows"] == len(source)
    assert pl.count(gen.sample(300, seed=1).jobs)["workflows"] == 0


def test_a_trace_of_pipelines_only(source):
    only = Workload([j for j in source if j.workflow_id], source.source)
    gen = fit_generator(only, "empirical", seed=0)
    assert gen.pipelines.share == 1.0 and gen.info["attributes_fitted_on"] == "stages"
    for n in (3, 60):
        w = gen.sample(n, seed=2)
        assert len(w) == n
        workflow.check(w.jobs)
    assert pl.count(gen.sample(60, seed=2).jobs)["stages"] >= 55


def test_gen_source_simulates_with_every_dependency_honoured(tmp_path, gen):
    from autoflow.envs.samplers import EpisodeSpec, make_sampler

    path = tmp_path / "p.gen"
    gen.save(path)
    sampler = make_sampler(f"gen:{path}", EpisodeSpec(jobs=(150, 250)))
    for seed in (0, 1):
        w, cluster = sampler.sample(np.random.default_rng(seed))
        assert pl.count(w.jobs)["workflows"] >= 5
        res = Simulator(w, cluster, make_policy("fifo"), SimConfig(check_invariants=True)).run()
        by_id = {js.job.job_id: js for js in res.jobs}
        assert all(js.status == DONE for js in res.jobs)
        for js in res.jobs:
            for p in js.job.depends_on:
                assert js.first_start >= by_id[p].finish, (js.job.job_id, p)


def test_cli_reports_the_pipelines(tmp_path):
    g, syn, rep = tmp_path / "g.gen", tmp_path / "syn.csv", tmp_path / "rep"
    r = runner.invoke(app, ["generate", "fit", "--trace", "builtin:ml-pipelines:600",
                            "--model", "empirical", "--out", str(g)])
    assert r.exit_code == 0, r.output
    assert "pipelines" in r.output and "5 shapes" in r.output
    r = runner.invoke(app, ["generate", "sample", "--model", str(g), "-n", "400",
                            "--seed", "2", "--out", str(syn)])
    assert r.exit_code == 0, r.output
    assert "pipelines of" in r.output
    w = load_workload(f"csv:{syn}")  # the CSV keeps workflow ids and dependencies
    assert len(w) == 400 and pl.count(w.jobs)["workflows"] > 0
    r = runner.invoke(app, ["generate", "sample", "--model", str(g), "-n", "50",
                            "--condition", "kind=inference", "--out", str(syn)])
    assert r.exit_code == 2 and "not supported" in r.output
    r = runner.invoke(app, ["generate", "report", "--real", "builtin:ml-pipelines:600",
                            "--synthetic", str(syn), "--out", str(rep)])
    assert r.exit_code == 0, r.output
    p = json.loads((rep / "report.json").read_text())["pipelines"]
    assert p["real"]["workflows"] > 0 and p["synthetic"]["workflows"] > 0
    assert abs(p["job_share_diff_pp"]) < 10
    assert "pipeline_share_diff_pp" in r.output


@pytest.mark.skipif(not sdv_available(), reason="SDV (the synth extra) not installed")
def test_an_sdv_generator_keeps_its_pipelines(tmp_path, source):
    gen = fit_generator(source, "copula", seed=0)
    path = tmp_path / "sdv.gen"
    gen.save(path)  # a pickle, recorded as trusted; the pipeline part is arrays inside
    back = load_generator(path)
    assert back.pipelines is not None
    w = back.sample(300, seed=1)
    assert rows(w) == rows(gen.sample(300, seed=1))
    workflow.check(w.jobs)
    assert pl.count(w.jobs)["workflows"] > 0


def test_workflows_are_found_and_the_unlearnable_left_out():
    """A workflow is the jobs joined by a workflow id or a dependency; one with a stage
    of unknown duration, or with a cycle, is left out and counted, never half-learned."""
    from autoflow.job import Job

    rng = np.random.default_rng(0)
    jobs = [Job(f"i{k}", float(k * 60), float(rng.uniform(60, 600))) for k in range(40)]
    jobs += [Job("a", 5.0, 100.0), Job("b", 5.0, 50.0, depends_on=("a",)),  # no id
             Job("c", 9.0, 10.0, workflow_id="solo"),
             Job("d", 7.0, None, workflow_id="w"), Job("e", 7.0, 5.0, workflow_id="w",
                                                       depends_on=("d",)),
             Job("x", 8.0, 5.0, depends_on=("y",)), Job("y", 8.0, 5.0, depends_on=("x",)),
             Job("z", 3.0, 5.0, depends_on=("gone",))]  # a parent not in the trace
    flows, independent = pl.split(jobs)
    assert sorted(sorted(j.job_id for j in f) for f in flows) == \
        [["a", "b"], ["c"], ["d", "e"], ["x", "y"]]
    assert {j.job_id for j in independent} == {f"i{k}" for k in range(40)} | {"z"}
    gen = fit_generator(Workload(jobs, "handmade"), "empirical", seed=0)
    assert gen.pipelines.left_out == {"unknown_duration": 1, "cycle": 1}
    assert gen.describe()["pipelines"]["workflows"] == 2
    w = gen.sample(200, seed=0)
    workflow.check(w.jobs)
    assert {label_graph(f) for f in flows_of(w).values()} <= \
        {label_graph(f) for f in ([jobs[40], jobs[41]], [jobs[42]])}
    only_bad = [j for j in jobs if j.job_id in ("d", "e")] + jobs[:40]
    gen = fit_generator(Workload(only_bad, "handmade"), "empirical", seed=0)
    assert gen.pipelines is None and gen.info["workflows_not_learned"] == 1
