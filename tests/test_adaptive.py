"""The adaptive learned scheduler: candidates sharing a run (``policies.switching``), what
it observes (``envs.workload_features``), its environment, its model file, its training."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from autoflow.agents.adaptive import CANDIDATES, Adaptive, Selector, export, load
from autoflow.agents.adaptive_env import RuleChoiceEnv
from autoflow.agents.rl_policy import DEFAULT_MODEL
from autoflow.envs.samplers import EpisodeSpec, make_sampler
from autoflow.envs.workload_features import WORKLOAD_FEATURES, obs_size, schema_hash
from typer.testing import CliRunner

from autoflow import trust
from autoflow.cli import app
from autoflow.cluster import ClusterSpec, Node, load_cluster
from autoflow.errors import ConfigError
from autoflow.evaluate import evaluate
from autoflow.job import Job
from autoflow.load import fit_load
from autoflow.policies import make_policy
from autoflow.policies.switching import Switching
from autoflow.traces.registry import load_workload
from autoflow.workload import Workload

runner = CliRunner()


def _episode(n=300, load=1.0, seed=1):
    w = load_workload(f"builtin:philly-mix:{n}", seed=seed)
    fit = fit_load(load_cluster("builtin:philly-64"), w, load)
    return fit.workload, fit.spec


@pytest.mark.parametrize("k", range(len(CANDIDATES)))
def test_a_candidate_kept_in_charge_schedules_exactly_as_alone(k):
    """Every candidate sees every event but only the one in charge acts: kept in charge
    from start to end, it gives its own schedule, job for job."""
    w, cl = _episode()
    alone = evaluate(CANDIDATES[k], w, cl, seed=0)
    sw = Switching([make_policy(c) for c in CANDIDATES], chooser=lambda s, ctx: k)
    shared = evaluate(sw, w, cl, seed=0)
    assert [js.finish for js in shared.result.jobs] == [js.finish for js in alone.result.jobs]
    assert shared.metrics["preemptions"] == alone.metrics["preemptions"]
    assert len(sw.choices) > 3  # it was asked again and again


def test_switching_mid_run_finishes_every_job_and_reorders_the_queue():
    w, cl = _episode(400, 1.3)
    order = iter([0, 2, 4, 1, 3] * 20)
    sw = Switching([make_policy(c) for c in CANDIDATES], chooser=lambda s, ctx: next(order))
    res = evaluate(sw, w, cl, seed=0)
    assert all(js.finish is not None for js in res.result.jobs)
    assert len({k for _t, _n, k in sw.choices}) == 5


def test_the_observation_reads_no_duration_of_a_job_not_completed():
    """Two workloads equal but for the durations of their last jobs: every observation made
    before the first of those jobs completes is the same."""
    w, cl = _episode(300, 1.1, seed=4)
    jobs = list(w)
    changed = {j.job_id for j in jobs[200:]}
    other = Workload([replace(j, duration=j.duration * 3.0) if j.job_id in changed else j
                      for j in jobs], source="changed")

    def run(workload):
        seen = []
        pol = Adaptive("best-fit", None, CANDIDATES,
                       chooser=lambda s, ctx: seen.append((ctx.now, s.observe(ctx))) or 2)
        res = evaluate(pol, workload, cl, seed=0)
        first = min(js.finish for js in res.result.jobs if js.job.job_id in changed)
        return [(t, o) for t, o in seen if t < first]

    a, b = run(w), run(other)
    assert len(a) >= 5 and len(a) == len(b)
    for (ta, oa), (tb, ob) in zip(a, b):
        assert ta == tb and np.array_equal(oa, ob)


def test_features_tell_light_tails_from_heavy_ones():
    """The duration features of a light-tailed and a heavy-tailed workload differ as they
    should: coefficient of variation, mean residual size past the median."""
    cluster = ClusterSpec("c", [Node("n0", "V100", 8)])

    def feats(durations):
        jobs = [Job(job_id=f"j{i}", submit_time=i * 100.0, duration=d, num_gpus=1)
                for i, d in enumerate(durations)]
        seen = []
        pol = Adaptive("best-fit", None, CANDIDATES,
                       chooser=lambda s, ctx: seen.append(s.observe(ctx)) or 0)
        evaluate(pol, Workload(jobs, source="t"), cluster, seed=0)
        return dict(zip(WORKLOAD_FEATURES, seen[-1]))

    rng = np.random.default_rng(0)
    light = feats(rng.uniform(900, 1100, 200))
    heavy = feats(rng.pareto(1.2, 200) * 300 + 60)
    assert light["dur_cv"] < 0.1 < heavy["dur_cv"]
    assert light["residual_at_median"] < heavy["residual_at_median"]
    assert light["has_completions"] == heavy["has_completions"] == 1.0


def _env(seed_jobs=(200, 300)):
    s = make_sampler("builtin:philly-mix", EpisodeSpec(seed_jobs, (0.9, 1.2)))
    return RuleChoiceEnv(s)


def test_rewards_sum_to_the_relative_jct_and_las_earns_nothing():
    env = _env()
    for k, name in enumerate(env.candidates):
        obs, _ = env.reset(seed=5)
        assert obs.shape == (obs_size(len(CANDIDATES)),)
        total, done = 0.0, False
        while not done:
            obs, r, done, _, _ = env.step(k)
            total += r
        assert total == pytest.approx(1.0 - env.ratio(), abs=1e-9)
        if name == "las":  # the reference itself, replayed: exactly 0
            assert env.ratio() == pytest.approx(1.0, abs=1e-12)


def test_the_model_file_round_trips_and_refuses_tampering(tmp_path):
    rng = np.random.default_rng(0)
    n = obs_size(len(CANDIDATES))
    sel = Selector([(rng.normal(size=(n, 8)).astype(np.float32), np.zeros(8, np.float32)),
                    (rng.normal(size=(8, len(CANDIDATES))).astype(np.float32),
                     np.zeros(len(CANDIDATES), np.float32))])
    card = export(sel, CANDIDATES, tmp_path / "m", {"trained_with": "a test"})
    assert card["feature_schema"] == schema_hash(list(CANDIDATES))
    got, cands, card2 = load(tmp_path / "m.json")
    x = rng.normal(size=n).astype(np.float32)
    assert cands == CANDIDATES and np.allclose(got.scores(x), sel.scores(x))
    assert card2["trained_with"] == "a test"
    # the weights changed after the card was written
    data = bytearray((tmp_path / "m.npz").read_bytes())
    data[-30] ^= 1
    (tmp_path / "m.npz").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="sha256"):
        load(tmp_path / "m.json")
    # a candidate that is not a heuristic, a feature count of another schema
    export(sel, CANDIDATES, tmp_path / "m", {})
    for field, value, msg in (("candidates", ["fifo", "rl", "las", "sjf", "gittins"],
                               "heuristic"),
                              ("features", 3, "features")):
        c = json.loads((tmp_path / "m.json").read_text())
        c["network"][field] = value
        (tmp_path / "x.json").write_text(json.dumps(c))
        (tmp_path / "x.npz").write_bytes((tmp_path / "m.npz").read_bytes())
        with pytest.raises(ConfigError, match=msg):
            load(tmp_path / "x.json")


def test_the_shipped_rl_is_the_adaptive_scheduler_and_says_what_is_in_charge():
    pol = make_policy("rl")
    assert isinstance(pol, Adaptive) and pol.label == "rl+best-fit"
    assert pol.card["sha256"] == trust.sha256_file(DEFAULT_MODEL.with_suffix(".npz"))
    assert pol.card["validation"]["vs_best"] > 0 and pol.card["trained_with"]
    w, cl = _episode(300, 1.0)
    res = evaluate(pol, w, cl, seed=0)
    assert all(js.finish is not None for js in res.result.jobs)
    why = pol.explain(None, None)
    assert why["in_charge"] in CANDIDATES and why["last_choice"]["chosen"] in CANDIDATES
    assert sum(why["last_choice"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_train_adaptive_end_to_end_then_bench_the_model(tmp_path):
    out = tmp_path / "agent"
    r = runner.invoke(app, ["train", "--workloads", "builtin:philly-mix-small",
                            "--timesteps", "64", "--out", str(out), "--imitation-episodes", "2",
                            "--eval-episodes", "2", "--eval-every", "32", "--n-envs", "1",
                            "--jobs-min", "60", "--jobs-max", "80", "--eval-jobs", "100",
                            "--seed", "3"])
    assert r.exit_code == 0, r.output
    for f in ("model.json", "model.npz", "best_model.json", "best_model.npz",
              "train_summary.json", "manifest.json", "eval_curve.png"):
        assert (out / f).exists(), f
    summary = json.loads((out / "train_summary.json").read_text())
    phases = [e["phase"] for e in summary["evaluations"]]
    assert phases[:2] == ["random", "cloned"] and phases.count("ppo") >= 2
    assert summary["teacher"]["samples"] > 0 and sum(summary["teacher"]["best"].values()) == 2
    assert set(summary["validation_baselines"]) == set(CANDIDATES)
    man = json.loads((out / "manifest.json").read_text())
    assert man["seed"] == 3 and man["config"]["timesteps"] == 64
    b = runner.invoke(app, ["bench", "--trace", "builtin:philly-mix-small", "--policies",
                            f"fifo,rl:{out / 'best_model.json'}", "--out", str(tmp_path / "b")])
    assert b.exit_code == 0, b.output
    res = json.loads((tmp_path / "b" / "results.json").read_text())["policies"]
    assert res[f"rl:{out / 'best_model.json'}"]["jobs"] == 200
