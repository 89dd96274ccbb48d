"""The duration predictor (issue 19): features without leakage, metrics, models, CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from autoflow.cli import app
from autoflow.errors import ConfigError
from autoflow.job import Job
from autoflow.predict import features as F
from autoflow.predict import metrics, models, trees
from autoflow.predict.cli import evaluate_on, fit_predictor
from autoflow.traces.registry import load_workload
from autoflow.workload import Workload

runner = CliRunner()
SMALL = "builtin:philly-mix-small:300"
FAST = {"epochs": 5, "min_steps": 150}


@pytest.fixture(scope="module")
def small() -> Workload:
    return load_workload(SMALL)


def _with_users(w: Workload) -> Workload:
    return Workload([replace(j, user=f"u{i % 7}") for i, j in enumerate(w.jobs)], w.source)


# ---------------------------------------------------------------- features


def test_schema_matches_rows(small):
    x = F.job_features(small)
    assert x.shape == (len(small), len(F.NAMES))
    assert F.FEATURES == {"version": F.FEATURE_VERSION, "names": list(F.NAMES)}
    assert np.isfinite(x).all()


def test_hand_built_features():
    jobs = [Job("a", 0.0, 100.0, num_gpus=1), Job("b", 50.0, 1000.0, num_gpus=1),
            Job("c", 200.0, 10.0, num_gpus=1), Job("d", 300.0, 10.0, num_gpus=4)]
    x = F.job_features(Workload(jobs))
    col = {n: i for i, n in enumerate(F.NAMES)}
    # at t=0 and t=50 nothing has completed: the prior, counts 0
    assert x[0, col["done_median"]] == pytest.approx(F.PRIOR_LOG_S)
    assert x[1, col["log_done_n"]] == 0.0
    # at t=200 only "a" (finished at 100) has; "b" (finishes at 1050) is still running
    assert x[2, col["done_median"]] == pytest.approx(math.log(100.0))
    assert x[2, col["log_done_same_gpu_n"]] == pytest.approx(math.log1p(1))
    # d has 4 GPUs: no completed 4-GPU job, so the same-GPU median falls back to overall
    assert x[3, col["done_same_gpu_median"]] == pytest.approx(x[3, col["done_median"]])
    assert x[3, col["log_done_same_gpu_n"]] == 0.0
    assert x[3, col["log2_gpus"]] == pytest.approx(math.log2(5))
    # the submission stream: c sees a and b in the last hour, both with 1 GPU
    assert x[2, col["log_subs_1h"]] == pytest.approx(math.log1p(2))
    assert x[2, col["log_subs_10m"]] == pytest.approx(math.log1p(2))
    assert x[2, col["log_gap_prev"]] == pytest.approx(math.log1p(150))
    assert x[3, col["log_subs_same_gpu_1h"]] == 0.0


@pytest.mark.parametrize("users", [False, True])
def test_no_leakage_from_running_jobs(small, users):
    """Changing the duration of any job not completed by t leaves every feature of j at t
    unchanged; changing a completed job's changes some (the test can fail)."""
    w = _with_users(small) if users else small
    base = F.job_features(w)
    rng = np.random.default_rng(0)
    changed_some = False
    for j in rng.choice(len(w), 12, replace=False):
        t = w.jobs[j].submit_time
        running = [k for k, job in enumerate(w.jobs) if F.finish_time(job) > t]
        assert j in running  # j itself has not completed at its own submit time
        jobs = list(w.jobs)
        for k in running:  # longer, so they stay running at t; j's own duration too
            jobs[k] = replace(jobs[k], duration=jobs[k].duration * rng.uniform(1.5, 20))
        again = F.job_features(Workload(jobs, w.source))
        np.testing.assert_array_equal(again[j], base[j])
        done = [k for k in range(len(w)) if k not in set(running)]
        if done:
            jobs = list(w.jobs)
            for k in done:  # still finishing before t, but shorter
                jobs[k] = replace(jobs[k], duration=jobs[k].duration * 0.5)
            changed_some |= not np.array_equal(F.job_features(Workload(jobs))[j], base[j])
    assert changed_some


def test_censored_and_unknown_never_complete():
    jobs = [Job("a", 0.0, 10.0, censored=True), Job("b", 0.0, None), Job("c", 100.0, 5.0)]
    w = Workload(jobs)
    x = F.job_features(w)
    assert x[2, F.NAMES.index("log_done_n")] == 0.0
    ex = F.examples(w)
    assert set(ex.job.tolist()) == {2}  # only c has a label


def test_examples_attained_levels(small):
    ex = F.examples(small, draws=3, seed=4)
    assert len(ex) == 4 * len(small)
    dur = np.array([small.jobs[i].duration for i in ex.job])
    assert (ex.attained < dur).all() and (ex.attained >= 0).all()
    assert (ex.attained == 0).sum() == len(small)
    np.testing.assert_allclose(ex.x[:, F.ATTAINED_COL], np.log1p(ex.attained))
    np.testing.assert_allclose(ex.y, np.log(np.maximum(dur - ex.attained, 1.0)))
    again = F.examples(small, draws=3, seed=4)
    np.testing.assert_array_equal(ex.x, again.x)
    assert not np.array_equal(F.examples(small, seed=5).attained, ex.attained)


# ---------------------------------------------------------------- metrics


def test_metrics_known_values():
    true = np.log(np.array([10.0, 100.0, 1000.0]))
    assert metrics.spearman(np.array([1.0, 2.0, 3.0]), true) == pytest.approx(1.0)
    assert metrics.spearman(np.array([3.0, 2.0, 1.0]), true) == pytest.approx(-1.0)
    assert metrics.spearman(np.array([5.0, 5.0, 5.0]), true) == 0.0
    assert metrics.spearman(np.array([1.0, 1.0, 2.0, 3.0]),
                            np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.9486832980505138)
    assert metrics.mae_log(true + 1.0, true) == pytest.approx(1.0)
    # pinball: y - q = 1 for every quantile: mean of (0.1, 0.5, 0.9) = 0.5; -1: 0.5 too
    q = np.repeat((true - 1.0)[:, None], 3, axis=1)
    assert metrics.pinball(q, true) == pytest.approx(0.5)
    assert metrics.pinball(q + 2.0, true) == pytest.approx(0.5)
    assert metrics.pinball(q + 1.0, true) == 0.0
    r = metrics.evaluate(np.stack([true - 1, true, true + 1], axis=1), true)
    assert r["n"] == 3 and r["mae_log"] == 0.0 and r["coverage_80"] == 1.0
    assert r["pinball"] == pytest.approx((0.1 + 0 + 0.1) / 3)


# ---------------------------------------------------------------- models


def test_mlp_round_trip_and_tamper(tmp_path, small):
    p = fit_predictor([SMALL], kind="mlp", seed=3, label_fraction=0.5, params=FAST)
    p.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["features"] == F.FEATURES and meta["quantiles"] == [0.1, 0.5, 0.9]
    assert meta["trace"] == SMALL and meta["label_fraction"] == 0.5 and meta["seed"] == 3
    assert len(meta["norm"]["mean"]) == len(F.NAMES) and len(meta["sha256"]) == 64
    ex = F.examples(small)
    q = p.predict(ex.x)
    assert (q[:, 0] <= q[:, 1]).all() and (q[:, 1] <= q[:, 2]).all()
    back = models.load(tmp_path / "m")
    np.testing.assert_allclose(back.predict(ex.x), q, rtol=1e-6)
    pt = tmp_path / "m" / "model.pt"
    data = bytearray(pt.read_bytes())
    data[-10] ^= 0xFF
    pt.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="sha256"):
        models.load(tmp_path / "m")


def test_schema_version_refused(tmp_path):
    p = fit_predictor([SMALL], kind="gbm", seed=0, params={"max_iter": 10})
    p.save(tmp_path / "g")
    card = tmp_path / "g" / "model.json"
    meta = json.loads(card.read_text())
    meta["features"]["version"] = 999
    card.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="feature schema"):
        models.load(tmp_path / "g")


def test_gbm_json_matches_sklearn(small):
    from sklearn.ensemble import HistGradientBoostingRegressor

    ex = F.examples(small)
    m = HistGradientBoostingRegressor(loss="quantile", quantile=0.5, max_iter=30,
                                      random_state=0, early_stopping=False).fit(ex.x, ex.y)
    x = ex.x.copy()
    x[::7, 3] = np.nan  # the missing-value branch too
    np.testing.assert_allclose(trees.predict(trees.export(m), x), m.predict(x),
                               rtol=1e-9, atol=1e-9)


def test_encoder_trunk(tmp_path, small):
    Encoder, _ = models._modules()
    enc = Encoder(len(F.NAMES), [16], 8)
    models.save_encoder(enc, tmp_path / "enc")
    p = fit_predictor([SMALL], kind="mlp", encoder=tmp_path / "enc", seed=0, params=FAST)
    assert p.meta["encoder"]["embedding"] == 8 and p.meta["hyperparameters"]["hidden"] == [16]
    p.save(tmp_path / "m")
    ex = F.examples(small)
    np.testing.assert_allclose(models.load(tmp_path / "m").predict(ex.x), p.predict(ex.x),
                               rtol=1e-6)
    (tmp_path / "enc" / "encoder.pt").write_bytes(b"not torch")
    with pytest.raises(ConfigError, match="sha256"):
        models.load_encoder(tmp_path / "enc")
    (tmp_path / "enc" / "encoder.pt").unlink()
    with pytest.raises(ConfigError, match="lacks encoder.pt"):
        models.load_encoder(tmp_path / "enc")


def test_piecewise_linear_encoding_is_bounded_and_monotone(small):
    """Each feature enters as ``bins`` inputs between quantiles of the training rows: 0
    below a bin, 1 above it, linear inside. A value past the range seen (a longer trace's
    counts) encodes as the range's end, so the network cannot extrapolate on it."""
    torch = models._torch()
    Encoder, _ = models._modules()
    x = F.examples(small).x
    enc = Encoder(len(F.NAMES), [16], 8, bins=4)
    enc.set_inputs(x)
    col = F.NAMES.index("log_done_n")
    lo, hi = float(np.min(x[:, col])), float(np.max(x[:, col]))
    grid = np.repeat(x[:1], 5, axis=0)
    grid[:, col] = [lo - 5.0, lo, 0.5 * (lo + hi), hi, hi + 5.0]
    t = torch.as_tensor(grid, dtype=torch.float32)
    z = ((t.unsqueeze(-1) - enc.lo) / enc.width).clamp(0.0, 1.0)[:, col, :].numpy()
    assert np.all(z[0] == 0.0) and np.all(z[-1] == 1.0)  # below and past the range
    np.testing.assert_allclose(z[0], z[1], atol=1e-5)  # float32 edges
    np.testing.assert_allclose(z[3], z[4], atol=1e-5)
    assert np.all(np.diff(z.sum(axis=1)) >= 0)  # monotone in the value
    with torch.no_grad():
        out = enc(t).numpy()
    np.testing.assert_allclose(out[3], out[4], atol=1e-4)  # no extrapolation past the range
    np.testing.assert_allclose(out[0], out[1], atol=1e-4)
    edges_lo, _ = models.ple_edges(x, 4)
    np.testing.assert_allclose(edges_lo[col, 0], lo)


def test_learned_beats_constant_and_history(small):
    """Trained on one seed of the workload, scored on another draw of it."""
    other = load_workload("builtin:philly-mix-small:300", seed=1)
    assert [j.duration for j in other.jobs] != [j.duration for j in small.jobs]
    p = fit_predictor([SMALL], kind="mlp", seed=0, params=FAST)
    ex = F.examples(other, seed=9)
    learned = metrics.evaluate(p.predict(ex.x), ex.y)
    const = metrics.evaluate(np.full((len(ex), 3), float(np.median(ex.y))), ex.y)
    hist = metrics.evaluate(models.history_predict(other, ex), ex.y)
    assert learned["spearman"] > const["spearman"] + 0.3
    assert learned["spearman"] > hist["spearman"]
    assert learned["pinball"] < const["pinball"]


# ---------------------------------------------------------------- CLI


def test_cli_fit_eval(tmp_path):
    out = tmp_path / "m"
    r = runner.invoke(app, ["predictor", "fit", "--encoder", "none", "--trace", SMALL,
                            "--label-fraction", "0.5", "--seed", "2", "--out", str(out),
                            "--epochs", "3"])
    assert r.exit_code == 0, r.output
    assert {"model.json", "model.pt", "manifest.json"} <= {f.name for f in out.iterdir()}
    man = json.loads((out / "manifest.json").read_text())
    assert man["seed"] == 2 and man["config"]["label_fraction"] == 0.5
    for model in (str(out), "history"):
        r = runner.invoke(app, ["predictor", "eval", "--model", model, "--trace", SMALL])
        assert r.exit_code == 0, r.output
        res = json.loads(r.stdout)
        assert {"spearman", "mae_log", "pinball", "n"} <= set(res)
        assert res["n"] == 4 * 300
    r = runner.invoke(app, ["predictor", "eval", "--model", str(out), "--trace", SMALL])
    assert json.loads(r.stdout) == json.loads(json.dumps(evaluate_on(out, SMALL)))


@pytest.mark.parametrize("args, msg", [
    (["fit", "--trace", SMALL, "--label-fraction", "0"], "--label-fraction"),
    (["fit", "--trace", SMALL, "--label-fraction", "1.5"], "--label-fraction"),
    (["fit", "--trace", SMALL, "--model-kind", "xgb"], "--model-kind"),
    (["fit", "--trace", SMALL, "--encoder", "{tmp}"], "lacks encoder.json and encoder.pt"),
    (["fit", "--trace", SMALL, "--encoder", "{tmp}/none-here"], "no such folder"),
    (["fit", "--trace", "nope:x.csv"], "unknown trace format"),
    (["eval", "--model", "{tmp}/missing", "--trace", SMALL], "no such folder"),
    (["eval", "--model", "{tmp}", "--trace", SMALL], "lacks model.json"),
])
def test_cli_bad_input_one_line(tmp_path, args, msg):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] == "fit":
        args += ["--out", str(tmp_path / "out")]
    r = runner.invoke(app, ["predictor", *args])
    assert r.exit_code == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and msg in lines[0] and lines[0].startswith("error:")


def test_a_job_that_runs_for_no_time_is_not_its_own_history():
    """A zero-duration job "finishes" at its own submit time: its own row must not count
    it as completed (a job submitted after it at the same instant may: it was done by
    then)."""
    w = Workload([Job("a", 0.0, 100.0, 1), Job("z", 50.0, 0.0, 1), Job("y", 50.0, 5.0, 1),
                  Job("b", 200.0, 10.0, 1)])
    rows = F.job_features(w)
    n = F.NAMES.index("log_done_n")
    assert [round(math.expm1(r[n])) for r in rows] == [0, 0, 1, 3]


def test_queue_concordance_scores_the_order_of_jobs_waiting_together():
    submit = np.array([0.0, 10.0, 20.0, 10_000.0, 10_010.0])
    true = np.array([1.0, 3.0, 2.0, 9.0, 0.5])
    assert metrics.queue_concordance(true, true, submit) == 1.0
    assert metrics.queue_concordance(-true, true, submit) == 0.0
    assert metrics.queue_concordance(np.zeros(5), true, submit) == 0.5  # ties: a coin
    # only pairs within the window count: the two groups are 10,000 s apart, so a
    # prediction that orders the groups wrongly but each group rightly is perfect
    pred = np.array([10.0, 30.0, 20.0, 2.0, 1.0])
    assert metrics.queue_concordance(pred, true, submit) == 1.0
    assert metrics.queue_concordance(pred, true, submit, window_s=1e9) < 1.0
    assert metrics.queue_concordance(true[:1], true[:1], submit[:1]) is None
