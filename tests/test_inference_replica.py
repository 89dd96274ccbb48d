"""The demo inference replica: a real process that loads, says it is ready, answers
predictions over HTTP (alike for one seed), refuses bad requests with a JSON 4xx, and
exits cleanly on SIGTERM; and the start delay read from its ready file."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("torch")

from autoflow.demo.inference_replica import (
    FEATURES,
    OUTPUTS,
    read_ready_file,
    slo_met,
    start_delay,
)

WAIT_S = 60.0  # the most a test waits for a replica to be ready or to exit (a hang guard)


def start(ready_file, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "autoflow.demo.inference_replica",
                             "--ready-file", str(ready_file), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(p: subprocess.Popen, ready_file) -> dict:
    deadline = time.monotonic() + WAIT_S
    while not ready_file.exists():
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline, "replica never became ready"
        time.sleep(0.05)
    return json.loads(ready_file.read_text())


def request(port: int, method: str, path: str, body: bytes | None = None):
    """``(status, parsed JSON body, raw body)`` of one request, errors included."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as r:
            raw = r.read().decode()
            return r.status, json.loads(raw), raw
    except urllib.error.HTTPError as e:
        raw = e.read().decode()
        return e.code, json.loads(raw), raw


def predict(port: int, inputs) -> tuple[int, dict]:
    status, doc, _ = request(port, "POST", "/predict", json.dumps({"inputs": inputs}).encode())
    return status, doc


def stop(p: subprocess.Popen) -> tuple[int, dict, str]:
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=WAIT_S)
    return p.returncode, json.loads(out.strip().splitlines()[-1]), err


INPUTS = [[(i * FEATURES + j) / 40 - 3 for j in range(FEATURES)] for i in range(3)]


def test_a_replica_serves_alike_for_one_seed_and_stops_on_sigterm(tmp_path):
    submitted = time.time()
    procs = {name: start(tmp_path / f"{name}.json", "--seed", seed, "--load-time", "0.2")
             for name, seed in [("a", "0"), ("b", "0"), ("c", "1")]}
    try:
        ready = {name: wait_ready(p, tmp_path / f"{name}.json") for name, p in procs.items()}
        for name, doc in ready.items():
            assert doc["pid"] == procs[name].pid and doc["port"] > 0
            assert submitted <= doc["started_at"] <= doc["ready_at"]
            assert request(doc["port"], "GET", "/healthz")[:2] == (200, {"status": "ready"})
        outs = {}
        for name, doc in ready.items():
            status, body = predict(doc["port"], INPUTS)
            assert status == 200 and list(body) == ["outputs"]
            outs[name] = body["outputs"]
            assert len(outs[name]) == len(INPUTS)
            assert all(len(row) == OUTPUTS and all(math.isfinite(v) for v in row)
                       for row in outs[name])
        assert outs["a"] == outs["b"]  # one seed, one model, across processes
        assert outs["a"] != outs["c"]  # the seed counts
        status, one = predict(ready["a"]["port"], INPUTS[:1])  # a batch of one: the same
        assert status == 200 and one["outputs"][0] == pytest.approx(outs["a"][0], rel=1e-5)
        assert predict(ready["a"]["port"], []) == (200, {"outputs": []})
        assert len(set(map(json.dumps, outs["a"]))) == len(INPUTS)  # it looks at its inputs

        port = ready["a"]["port"]
        bad = [b"not json", b"{\"inputs\": ", json.dumps([1, 2]).encode(),
               json.dumps({"input": INPUTS}).encode(), json.dumps({"inputs": "x"}).encode(),
               json.dumps({"inputs": [[1.0] * (FEATURES - 1)]}).encode(),
               json.dumps({"inputs": [[1.0] * FEATURES, [[1.0]] * FEATURES]}).encode(),
               json.dumps({"inputs": [[True] * FEATURES]}).encode(),
               json.dumps({"inputs": [["1"] * FEATURES]}).encode(),
               b"{\"inputs\": [[" + b", ".join([b"NaN"] * FEATURES) + b"]]}",
               b"\xff\xfe"]
        for body in bad:
            status, doc, raw = request(port, "POST", "/predict", body)
            assert status == 400, body
            assert list(doc) == ["error"] and doc["error"]
            assert raw.count("\n") == 1 and "Traceback" not in raw
        assert request(port, "GET", "/nowhere")[0] == 404
        assert request(port, "GET", "/predict")[0] == 405
        assert request(port, "POST", "/healthz", b"{}")[0] == 405
        assert predict(port, INPUTS)[0] == 200  # still serving after the bad ones

        for name, p in procs.items():
            rc, status, err = stop(p)
            assert rc == 0 and status["status"] == "stopped", err
            assert "Traceback" not in err
        assert status["requests"] == 1  # "c" served one prediction
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_loading_replica_answers_503_and_stops_without_becoming_ready(tmp_path):
    ready_file = tmp_path / "r.json"
    p = start(ready_file, "--load-time", "600")
    try:
        line = p.stderr.readline()  # "listening on 127.0.0.1:PORT (loading)"
        assert line.startswith("listening on 127.0.0.1:"), line
        port = int(line.split(":")[1].split()[0])
        assert request(port, "GET", "/healthz")[:2] == (503, {"status": "loading"})
        assert predict(port, INPUTS)[0] == 503
        rc, status, _ = stop(p)
        assert rc == 0 and status["status"] == "stopped" and status["ready_at"] is None
        assert not ready_file.exists()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_serve_for_ends_by_itself_and_start_delay_reads_the_ready_file(tmp_path):
    ready_file = tmp_path / "deep" / "r.json"  # its folder is made
    submitted = time.time()
    p = start(ready_file, "--load-time", "0.3", "--serve-for", "0.5", "--seed", "5")
    out, err = p.communicate(timeout=WAIT_S)
    assert p.returncode == 0, err
    status = json.loads(out.strip().splitlines()[-1])
    assert status["status"] == "done" and status["seed"] == 5
    delay = start_delay(submitted, ready_file)
    assert delay >= 0.3  # it slept --load-time before it was ready
    assert delay == pytest.approx(read_ready_file(ready_file)["ready_at"] - submitted)
    assert slo_met(submitted, ready_file, delay) and not slo_met(submitted, ready_file, 0.29)
    bad = start(tmp_path / "x.json", "--load-time", "-1")
    _, err = bad.communicate(timeout=WAIT_S)
    assert bad.returncode == 2 and "--load-time" in err and "Traceback" not in err


def test_start_delay_and_slo_on_a_written_ready_file(tmp_path):
    f = tmp_path / "ready.json"
    f.write_text(json.dumps({"port": 1, "pid": 2, "started_at": 101.0, "ready_at": 105.5}))
    assert start_delay(100.0, f) == pytest.approx(5.5)
    assert slo_met(100.0, f, 5.5) and slo_met(100.0, f, 10)
    assert not slo_met(100.0, f, 5.4) and not slo_met(100.0, f, 0)
    with pytest.raises(ValueError, match="stale"):
        start_delay(106.0, f)  # a ready file from before the replica was asked for
    with pytest.raises(ValueError, match="slo_s"):
        slo_met(100.0, f, -1)
    with pytest.raises(FileNotFoundError):
        start_delay(100.0, tmp_path / "not-yet.json")
    for junk in ["", "{}", "[1]", '{"ready_at": "soon"}', '{"ready_at": NaN}']:
        f.write_text(junk)
        with pytest.raises(ValueError, match="ready"):
            start_delay(100.0, f)
