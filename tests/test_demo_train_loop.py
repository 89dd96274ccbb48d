"""The demo training job: checkpoints, resumes exactly, survives a kill, refuses junk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")

from autoflow.demo.train_loop import CHECKPOINT, load_checkpoint, run


def weights(d):
    state, step = load_checkpoint(d)
    return step, [v.clone() for v in state["model"].values()]


def test_stopped_and_resumed_ends_where_an_unstopped_run_ends(tmp_path):
    whole = run(tmp_path / "a", steps=30, checkpoint_every=7, seed=3)
    assert whole == {**whole, "status": "done", "resumed_from": 0, "step": 30}
    calls = []
    first = run(tmp_path / "b", steps=30, checkpoint_every=7, seed=3,
                should_stop=lambda: len(calls.append(1) or calls) >= 12)
    assert first["status"] == "stopped" and first["step"] == 12  # checkpointed on the stop
    second = run(tmp_path / "b", steps=30, checkpoint_every=7, seed=3)
    assert second["resumed_from"] == 12 and second["status"] == "done"
    sa, wa = weights(tmp_path / "a")
    sb, wb = weights(tmp_path / "b")
    assert sa == sb == 30 and all(torch.equal(x, y) for x, y in zip(wa, wb))
    assert second["loss"] == pytest.approx(whole["loss"])
    assert run(tmp_path / "c", steps=30, seed=4)["loss"] != whole["loss"]  # the seed counts


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    """SIGKILL mid-run: the steps since the last checkpoint are lost, nothing else."""
    d = tmp_path / "k"
    p = subprocess.Popen([sys.executable, "-m", "autoflow.demo.train_loop",
                          "--checkpoint-dir", str(d), "--steps", "100000",
                          "--checkpoint-every", "5", "--step-time", "0.01"])
    while load_checkpoint(d)[1] < 10:
        assert p.poll() is None
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    _, step = load_checkpoint(d)
    assert step >= 10 and step % 5 == 0
    res = run(d, steps=step + 3, checkpoint_every=5)
    assert res["resumed_from"] == step and res["step"] == step + 3
    assert not [f for f in os.listdir(d) if f != CHECKPOINT and not f.startswith(".")]


def test_sigterm_checkpoints_and_stops(tmp_path):
    d = tmp_path / "t"
    p = subprocess.Popen([sys.executable, "-m", "autoflow.demo.train_loop",
                          "--checkpoint-dir", str(d), "--steps", "100000",
                          "--checkpoint-every", "1000", "--step-time", "0.01"],
                         stdout=subprocess.PIPE, text=True)
    while not d.exists():
        assert p.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate()
    res = json.loads(out)
    assert p.returncode == 0 and res["status"] == "stopped"
    assert 0 < res["step"] < 1000  # saved on the stop, not at a checkpoint boundary
    assert load_checkpoint(d)[1] == res["step"]


def test_a_file_that_is_not_its_checkpoint_is_refused(tmp_path):
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=CHECKPOINT):
        run(tmp_path, steps=3)
    r = subprocess.run([sys.executable, "-m", "autoflow.demo.train_loop", "--checkpoint-dir",
                        str(tmp_path), "--steps", "3"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 2 and CHECKPOINT in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ValueError, match="steps"):
        run(tmp_path / "x", steps=0)
