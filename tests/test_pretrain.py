"""Issue 19: ``autoflow pretrain`` - an encoder of jobs pretrained without durations
(``autoflow.predict.pretrain``) and the shipped ``autoflow/models/encoder-v2``."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hardening import assert_one_line_error, invoke

import autoflow
from autoflow import trust
from autoflow.errors import ConfigError
from autoflow.job import Job
from autoflow.predict import features as F
from autoflow.predict import models
from autoflow.predict import pretrain as P
from autoflow.traces.registry import load_workload
from autoflow.workload import Workload

SMALL = "builtin:philly-mix-small:300"
SHIPPED = Path(autoflow.__file__).parent / "models" / "encoder-v2"
# columns computed from durations of OTHER jobs completed before the submission
DONE_COLS = [i for i, n in enumerate(F.NAMES) if n.startswith(("done_", "log_done_",
                                                                 "recent_", "log_recent_"))]
OWN_COLS = [i for i in range(len(F.NAMES)) if i not in DONE_COLS]
FAST = {"epochs": 2, "batch": 128}


@pytest.fixture(scope="module")
def small() -> Workload:
    return load_workload(SMALL)


@pytest.fixture(scope="module")
def rows(small) -> np.ndarray:
    return P.unlabelled_rows(small, seed=0)


def _state(enc) -> dict:
    return {k: v.detach().clone() for k, v in enc.state_dict().items()}


@pytest.mark.parametrize("objective", P.OBJECTIVES)
def test_loss_decreases(rows, objective):
    _, hist = P.pretrain(rows, objective=objective, seed=0, params={"epochs": 8, "batch": 128})
    assert len(hist) == 8 and all(np.isfinite(hist))
    assert hist[-1] < hist[0] - 0.02 * abs(hist[0]), hist


@pytest.mark.parametrize("objective", P.OBJECTIVES)
def test_deterministic_for_a_seed(rows, objective):
    a, ha = P.pretrain(rows, objective=objective, seed=3, params=FAST)
    b, hb = P.pretrain(rows, objective=objective, seed=3, params=FAST)
    c, _ = P.pretrain(rows, objective=objective, seed=4, params=FAST)
    sa, sb, sc = _state(a), _state(b), _state(c)
    assert ha == hb
    assert all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in sa)
    assert not all(np.array_equal(sa[k].numpy(), sc[k].numpy()) for k in sa)


def test_rows_keep_censored_and_unknown_jobs():
    jobs = [Job("a", 0.0, 10.0, censored=True), Job("b", 5.0, None), Job("c", 100.0, 5.0)]
    x = P.unlabelled_rows(Workload(jobs), draws=2, seed=0)
    assert x.shape == (9, len(F.NAMES))  # every job, 1 + 2 attained levels each
    att = x[:, F.ATTAINED_COL].reshape(3, 3)
    assert np.all(att[:, 0] == 0.0) and np.all(att[:, 1:] > 0.0)
    # the levels drawn for the censored job are not bounded by its recorded 10 s
    assert np.all(np.expm1(att[0, 1:]) > 0.0)


def test_own_duration_is_never_used(small):
    """A job's row does not change when its own duration does, nor when it is hidden;
    changing every duration changes only the columns of OTHER completed jobs."""
    base = P.unlabelled_rows(small, seed=0)
    reps = 1 + F.ATTAINED_DRAWS
    # every job's duration hidden (unknown): the same rows, except the done_* columns
    hidden = Workload([replace(j, duration=None) for j in small.jobs], small.source)
    xh = P.unlabelled_rows(hidden, seed=0)
    assert xh.shape == base.shape
    np.testing.assert_array_equal(xh[:, OWN_COLS], base[:, OWN_COLS])
    assert np.all(xh[:, F.NAMES.index("log_done_n")] == 0.0)  # nothing ever completes
    # every duration scaled: the job-describing columns are unchanged
    scaled = Workload([replace(j, duration=j.duration * 7.0 + 13.0) for j in small.jobs],
                      small.source)
    np.testing.assert_array_equal(P.unlabelled_rows(scaled, seed=0)[:, OWN_COLS],
                                  base[:, OWN_COLS])
    # one job's duration changed: its own rows (and earlier jobs' rows) are unchanged
    for j in (0, 57, 150, 299):
        jobs = list(small.jobs)
        jobs[j] = replace(jobs[j], duration=jobs[j].duration * 50.0 + 1.0)
        x = P.unlabelled_rows(Workload(jobs, small.source), seed=0)
        np.testing.assert_array_equal(x[:(j + 1) * reps], base[:(j + 1) * reps])
    # the label is not an input: no column equals the log duration of the row's job
    logd = np.repeat(np.log(np.maximum([jb.duration for jb in small.jobs], 1.0)), reps)
    assert not any(np.allclose(base[:, c], logd) for c in range(base.shape[1]))


def test_written_encoder_loads_and_fine_tunes(tmp_path, small):
    out = tmp_path / "enc"
    rec = P.pretrain_sources([SMALL], out, objective="vime", epochs=2, seed=1, max_rows=600)
    assert rec["rows"] == 600 and rec["objective"] == "vime" and rec["epochs"] == 2
    card = json.loads((out / "encoder.json").read_text())
    assert card["pretraining"]["sources"][0]["source"] == SMALL
    assert card["pretraining"]["seed"] == 1 and card["pretraining"]["labels_used"] is False
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["objective"] == "vime" and man["seed"] == 1
    enc, info = models.load_encoder(out)
    assert info["sha256"] == trust.sha256_bytes((out / "encoder.pt").read_bytes())
    before = _state(enc)
    ex = F.examples(small, seed=0)
    p = models.fit_mlp(ex, seed=0, encoder=out, params={"epochs": 2, "min_steps": 20})
    assert p.meta["encoder"]["sha256"] == info["sha256"]
    after = p.net.trunk.state_dict()
    assert any(not np.array_equal(before[k].numpy(), after[k].numpy())
               for k in before if k.startswith("net."))  # the trunk was fine-tuned
    pred = p.predict(ex.x[:10])
    assert pred.shape == (10, 3) and np.all(np.isfinite(pred))


def test_bad_objective_is_refused(rows):
    with pytest.raises(ConfigError, match="--objective"):
        P.pretrain(rows, objective="bert")


def test_shipped_encoder_loads_and_hash_matches():
    assert (SHIPPED / "CARD.md").is_file()
    card = json.loads((SHIPPED / "encoder.json").read_text())
    data = (SHIPPED / "encoder.pt").read_bytes()
    assert card["sha256"] == trust.sha256_bytes(data)
    assert sum(f.stat().st_size for f in SHIPPED.iterdir()) < 1_000_000
    enc, info = models.load_encoder(SHIPPED)
    assert info["sha256"] == card["sha256"]
    srcs = [s["source"] for s in card["pretraining"]["sources"]]
    assert srcs and not any("cluster06" in s or "cluster08" in s for s in srcs)  # held out
    assert card["pretraining"]["objective"] in (*P.OBJECTIVES,)
    assert card["bins"] == info["bins"] == 16  # piecewise-linear inputs
    x = P.unlabelled_rows(load_workload("builtin:philly-mix-small:20"), seed=0)
    z = enc(models._torch().as_tensor(x, dtype=models._torch().float32))
    assert z.shape == (len(x), info["embedding"])


@pytest.mark.parametrize("args,needle", [
    (("--workloads", "nope"), "FORMAT:PATH"),
    (("--workloads", SMALL, "--objective", "bert"), "--objective"),
    (("--workloads", SMALL, "--epochs", "0"), "--epochs"),
    (("--workloads", SMALL, "--max-rows", "-3"), "--max-rows"),
    (("--workloads", SMALL, "--seed", "-1"), "--seed"),
    (("--workloads", SMALL, "--bins", "65"), "--bins"),
    (("--workloads", " , "), "--workloads"),
])
def test_cli_bad_input_one_line(tmp_path, args, needle):
    r = invoke("pretrain", *args, "--out", tmp_path / "o")
    assert_one_line_error(r, needle)


def test_cli_out_is_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    assert_one_line_error(invoke("pretrain", "--workloads", SMALL, "--out", f), "--out")


def test_cli_writes_an_encoder(tmp_path):
    r = invoke("pretrain", "--workloads", "builtin:philly-mix-small:100", "--out",
               tmp_path / "e", "--epochs", "2", "--objective", "scarf")
    assert r.exit_code == 0, r.output
    assert "epoch 2/2" in r.stderr
    models.load_encoder(tmp_path / "e")


def test_a_frozen_trunk_stays_and_early_stopping_stops(tmp_path, small):
    out = tmp_path / "enc"
    P.pretrain_sources([SMALL], out, objective="vime", epochs=1, seed=0, max_rows=400)
    before = _state(models.load_encoder(out)[0])
    ex = F.examples(small, seed=0)
    frozen = models.fit_mlp(ex, seed=0, encoder=out,
                            params={"epochs": 2, "min_steps": 20, "trunk_lr": 0.0})
    after = frozen.net.trunk.state_dict()
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)
    assert frozen.meta["hyperparameters"]["trunk_lr"] == 0.0
    # early stopping (patience 1): it stops at the end of a pass, well before the 40
    # passes a run without it makes
    stopped = models.fit_mlp(ex, seed=0, encoder=out,
                             params={"epochs": 40, "min_steps": 20, "patience": 1})
    per_pass = math.ceil(len(ex) * 4 / 5 / models.MLP_DEFAULTS["batch"])
    assert stopped.meta["steps"] < 40 * per_pass
    assert stopped.meta["steps"] % per_pass == 0  # it stopped at the end of a pass
