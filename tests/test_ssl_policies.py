"""Policies on the duration predictor (issue 19): ``sjf:ssl``, ``easy-backfill:ssl``, and
the features they compute online (``autoflow.predict.online``)."""

from __future__ import annotations

import math
import os
from statistics import NormalDist

import numpy as np
import pytest
from simdata import mixed_workload, small_cluster
from typer.testing import CliRunner

from autoflow.cli import app
from autoflow.cluster import ClusterSpec, Node
from autoflow.core.jobstate import OracleError
from autoflow.errors import ConfigError
from autoflow.job import Job
from autoflow.placers import make_placer
from autoflow.policies import make_policy, parse_policy
from autoflow.policies.gittins_ssl import POINTS, predicted_sizes
from autoflow.policies.sjf import Sjf
from autoflow.policies.ssl import SHIPPED, SslPredictions
from autoflow.predict import features as F
from autoflow.predict import models, trees
from autoflow.predict.online import OnlineFeatures
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.workload import Workload

COL = {n: i for i, n in enumerate(F.NAMES)}


class _Zero:
    """A predictor that answers 1 s for everything (the rows are what is tested)."""

    def predict(self, x):
        return np.zeros((len(x), 3))


class _Recording(SslPredictions):
    """Keeps every job's feature row at the pass that predicted it."""

    def __init__(self):
        super().__init__(_Zero(), "ssl")
        self.seen: dict[int, tuple[float, np.ndarray]] = {}

    def features(self, jobs, now):
        x = super().features(jobs, now)
        for js, row in zip(jobs, x):
            self.seen.setdefault(js.idx, (now, row.copy()))
        return x


def _run(jobs: list[Job], nodes: list[Node], policy) -> list:
    return Simulator(Workload(jobs), ClusterSpec("c", nodes), policy,
                     SimConfig(check_invariants=True)).run().jobs


def _varied_jobs(n: int = 80, seed: int = 0) -> list[Job]:
    """Jobs of several GPU counts, users, QoS and kinds, with ties in submit time and
    in finish time (integer times)."""
    rng = np.random.default_rng(seed)
    t, jobs = 0.0, []
    for i in range(n):
        t += float(rng.choice([0, 0, 5, 30, 200, 900]))
        jobs.append(Job(f"j{i}", t, float(rng.choice([10, 60, 300, 1200, 5000, 20000])),
                        num_gpus=int(rng.choice([1, 1, 2, 4])),
                        cpu_milli=int(rng.choice([0, 4000])), memory_mib=int(rng.choice([0, 8192])),
                        qos=str(rng.choice(["", "BE", "LS", "odd"])),
                        user=str(rng.choice(["", "a", "b"]))))
    return jobs


def _recorded(jobs, nodes):
    pol = Sjf(make_placer("best-fit"))
    pol.ssl = rec = _Recording()
    done = _run(jobs, nodes, pol)
    return rec, done


def test_online_features_equal_offline_when_nothing_queues():
    jobs = _varied_jobs()
    big = [Node(f"n{i}", "V100", 8) for i in range(60)]  # 480 GPUs: nobody waits
    rec, done = _recorded(jobs, big)
    assert all(js.first_start == js.submit for js in done)  # nothing queued
    offline = F.job_features(Workload(jobs))
    assert len(rec.seen) == len(jobs)
    online = np.stack([rec.seen[i][1] for i in range(len(jobs))])
    assert online[:, COL["log_done_n"]].max() > 0  # completions did count
    assert online[:, COL["log_recent_same_user_n"]].max() > 0
    np.testing.assert_allclose(online, offline, rtol=0, atol=1e-12)


def test_online_features_count_real_completions_when_jobs_queue():
    jobs = _varied_jobs(seed=1)
    rec, done = _recorded(jobs, [Node("n", "V100", 4)])  # 4 GPUs: a long queue
    finish = np.array([js.finish for js in done])
    late = 0
    for now, row in rec.seen.values():
        n = int(np.sum(finish <= now))  # completed in this run by the decision
        assert row[COL["log_done_n"]] == pytest.approx(math.log1p(n))
        late += n < np.sum([j.submit_time + j.duration <= now for j in jobs])
    assert late > 0  # offline would have counted jobs that were still queued or running
    offline = F.job_features(Workload(jobs))
    assert not np.allclose(np.stack([rec.seen[i][1] for i in range(len(jobs))]), offline)


def test_online_features_cannot_read_an_unfinished_duration():
    jobs = [Job("a", 0, 100.0), Job("b", 1, 100.0)]
    seen = []

    class Peek(Sjf):
        def on_start(self, ctx, js):
            with pytest.raises(OracleError):
                self.ssl.online.complete(js)  # running: its duration is not known
            seen.append(js.idx)

    pol = Peek(make_placer("best-fit"))
    pol.ssl = _Recording()
    done = _run(jobs, [Node("n", "V100", 1)], pol)
    assert seen == [0, 1] and all(js.finish is not None for js in done)
    # and a completed job's is
    feats = OnlineFeatures()
    feats.arrive(done[0])
    feats.complete(done[0])
    row = feats.rows([done[0]], 500.0)[0]
    assert row[COL["done_median"]] == pytest.approx(math.log(100.0))


def test_sjf_ssl_finishes_every_job_with_the_shipped_predictor():
    w = mixed_workload(60)
    for spec in ("sjf:ssl", "easy-backfill:ssl", "gittins:ssl"):
        res = Simulator(w, small_cluster(), make_policy(spec),
                        SimConfig(check_invariants=True)).run()
        assert all(js.finish is not None for js in res.jobs), spec
        assert make_policy(spec).label == f"{spec}+best-fit"


def _perfect(folder, levels: dict[int, float]) -> None:
    """A gbm model whose three quantiles are exactly log(duration) of a job with
    ``cpu_milli = 1000 * k`` (``levels[k]`` seconds): one chain of splits on log_cpu."""
    ks = sorted(levels)
    feat, thr, mleft, left, right, leaf, value = [], [], [], [], [], [], []
    # node 2m: split "log_cpu <= between k_m and k_m+1" -> leaf 2m+1, else node 2m+2
    for m, k in enumerate(ks):
        last = m == len(ks) - 1
        if not last:
            cut = 0.5 * (math.log1p(k) + math.log1p(ks[m + 1]))
            feat.append(COL["log_cpu"]), thr.append(cut), mleft.append(False)
            left.append(2 * m + 1), right.append(2 * m + 2), leaf.append(False)
            value.append(0.0)
            feat.append(0), thr.append(0.0), mleft.append(False)
            left.append(0), right.append(0), leaf.append(True)
            value.append(math.log(levels[k]))
        else:
            feat.append(0), thr.append(0.0), mleft.append(False)
            left.append(0), right.append(0), leaf.append(True)
            value.append(math.log(levels[k]))
    tree = {"value": value, "feature_idx": feat, "num_threshold": thr,
            "missing_go_to_left": mleft, "left": left, "right": right, "is_leaf": leaf}
    model = {"baseline": 0.0, "trees": [tree]}
    models.Predictor("gbm", models._meta("gbm", {"trace": "constructed"}, {}, 0),
                     trees=[model, model, model]).save(folder)


def test_a_perfect_predictor_orders_like_the_oracle(tmp_path):
    rng = np.random.default_rng(3)
    levels = {k: float(d) for k, d in enumerate(rng.permutation(np.arange(1, 25)) * 100.0)}
    # one GPU, everyone queued behind the first job: the order is all SJF decides
    jobs = [Job(f"j{k}", float(k), levels[k], num_gpus=1, cpu_milli=1000 * k)
            for k in range(len(levels))]
    _perfect(tmp_path / "perfect", levels)
    p = models.load(tmp_path / "perfect")
    x = F.job_features(Workload(jobs))
    np.testing.assert_allclose(np.exp(p.predict(x)[:, 1]), [levels[k] for k in levels])

    def order(spec):
        done = _run(jobs, [Node("n", "V100", 1)], make_policy(spec))
        return [js.job.job_id for js in sorted(done, key=lambda js: js.first_start)]

    oracle = order("sjf-oracle")
    assert order(f"sjf:ssl={tmp_path / 'perfect'}") == oracle
    assert order("sjf") != oracle  # the history estimator cannot tell them apart


def test_a_bad_model_path_is_one_clear_error(tmp_path):
    for spec in (f"sjf:ssl={tmp_path / 'nothing'}", f"easy-backfill:ssl={tmp_path / 'nothing'}",
                 f"gittins:ssl={tmp_path / 'nothing'}"):
        with pytest.raises(ConfigError, match="no such folder") as e:
            parse_policy(spec)
        assert "\n" not in str(e.value) and str(tmp_path / "nothing") in str(e.value)
    with pytest.raises(ConfigError, match="takes ssl or ssl=PATH"):
        make_policy("sjf:fast")
    with pytest.raises(ConfigError, match="needs a model folder"):
        make_policy("sjf:ssl=")
    # a changed weights file fails its hash
    bad = tmp_path / "bad"
    _perfect(bad, {0: 10.0, 1: 20.0})
    (bad / "trees.json").write_text((bad / "trees.json").read_text().replace("0.0", "0.5", 1))
    with pytest.raises(ConfigError, match="sha256"):
        make_policy(f"sjf:ssl={bad}")


def test_the_shipped_predictor_loads_and_the_compiled_forest_agrees():
    p = models.load(SHIPPED)
    assert p.kind == "gbm" and set(p.meta["trace"]) == {
        f"itp:../shared/traces/itp/cluster0{c}.csv" for c in (1, 2, 3, 5)}
    assert sum(f.stat().st_size for f in SHIPPED.iterdir()) < 2_000_000
    x = F.job_features(mixed_workload(200))
    x[::5, COL["log_mem_gib"]] = np.nan
    one_by_one = np.sort(np.stack([trees.predict(t, x) for t in p.trees], axis=1), axis=1)
    np.testing.assert_array_equal(p.predict(x), one_by_one)


def test_autoflow_policies_lists_the_ssl_specs():
    res = CliRunner().invoke(app, ["policies"], env={**os.environ, "COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert "sjf[:ARG]" in res.output and "sjf:ssl=PATH" in res.output
    assert "easy-backfill[:ARG]" in res.output and "gittins:ssl=PATH" in res.output


def test_predicted_sizes_are_the_lognormal_through_the_quantiles():
    sizes = predicted_sizes(100.0, 400.0, 1600.0, work=50.0, demand=2.0)
    assert len(sizes) == POINTS and np.all(np.diff(sizes) > 0)
    left = sizes / 2.0 - 50.0  # back to seconds of run time left
    assert math.sqrt(left[POINTS // 2 - 1] * left[POINTS // 2]) == pytest.approx(400.0)
    # the log-normal whose 0.1 and 0.9 quantiles are 100 s and 1600 s, at the middle of
    # the first and last eighth of its probability
    sigma = math.log(16.0) / (2.0 * NormalDist().inv_cdf(0.9))
    z = NormalDist().inv_cdf(0.5 / POINTS)
    assert left[0] == pytest.approx(400.0 * math.exp(sigma * z))
    assert left[-1] == pytest.approx(400.0 * math.exp(-sigma * z))
    tight = predicted_sizes(400.0, 400.0, 400.0, work=0.0, demand=1.0)
    assert tight[0] < 400.0 < tight[-1] and tight[-1] / tight[0] < 1.25  # MIN_SIGMA


def test_gittins_ssl_runs_short_predicted_jobs_first(tmp_path):
    """One GPU, a queue of jobs whose run times only the (perfect) predictor knows:
    gittins cannot tell them apart and runs them in arrival order (time-slicing them at
    its queue thresholds); gittins:ssl brings each short one forward, and preempts a
    long running one for it: with a perfect predictor it is as good as the oracles."""
    rng = np.random.default_rng(5)
    levels = {k: float(d) for k, d in enumerate(rng.permutation([60.0, 120.0, 200.0,
                                                                  5000.0, 9000.0, 30.0,
                                                                  20000.0, 90.0] * 2))}
    jobs = [Job(f"j{k}", 10.0 * k, levels[k], num_gpus=1, cpu_milli=1000 * k)
            for k in range(len(levels))]
    _perfect(tmp_path / "perfect", levels)
    runs = {}
    for spec in ("gittins", f"gittins:ssl={tmp_path / 'perfect'}", "srtf-oracle", "sjf-oracle"):
        done = _run(jobs, [Node("n", "V100", 1)], make_policy(spec))
        assert all(js.finish is not None for js in done)
        runs[spec.split("=")[0]] = float(np.mean([js.finish - js.submit for js in done]))
    assert runs["gittins:ssl"] < 0.6 * runs["gittins"]
    assert runs["gittins:ssl"] <= 1.01 * min(runs["srtf-oracle"], runs["sjf-oracle"])


def test_gittins_ssl_predicts_a_preempted_job_again_at_its_work_done(tmp_path):
    levels = {0: 5000.0, 1: 50.0}
    jobs = [Job("long", 0.0, 5000.0, num_gpus=1, cpu_milli=0),
            Job("short", 100.0, 50.0, num_gpus=1, cpu_milli=1000)]
    _perfect(tmp_path / "perfect", levels)
    pol = make_policy(f"gittins:ssl={tmp_path / 'perfect'}")
    done = _run(jobs, [Node("n", "V100", 1)], pol)
    long_, short = done
    assert short.finish == pytest.approx(100.0 + 50.0, abs=1.0)  # it preempted "long"
    assert long_.preemptions == 1
    assert pol.ssl.at_work[long_.idx] == pytest.approx(100.0, abs=1.0)  # predicted again
