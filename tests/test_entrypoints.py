"""Job entrypoints: parsed strictly, run with the job's environment and folder, failures
named, and a stop (the KeyboardInterrupt ``ray.cancel`` raises) felt by real processes
that checkpoint on SIGTERM and resume on the next run."""

from __future__ import annotations

import _thread
import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Self
from urllib.parse import quote

import pytest

from autoflow.execution.entrypoints import (
    Entrypoint,
    JobContext,
    check_env,
    job_folder,
    parse_entrypoint,
    run_entrypoint,
)

WAIT_S = 120.0  # the most a helper waits for a process to reach a state (a hang guard)


# --- parsing ---------------------------------------------------------------------------

def test_commands_and_functions_are_told_apart():
    ep = parse_entrypoint("python -m autoflow.demo.train_loop --steps 200")
    assert ep == Entrypoint("command", ep.text,
                            argv=("python", "-m", "autoflow.demo.train_loop", "--steps", "200"))
    assert parse_entrypoint("""sh -c 'echo "a b"' x""").argv == ("sh", "-c", 'echo "a b"', "x")
    fn = parse_entrypoint("  mypkg.train:main ")
    assert (fn.kind, fn.module, fn.function, fn.argv) == ("function", "mypkg.train", "main", ())
    assert parse_entrypoint("_m:_f").kind == "function"
    # not module:function, so commands
    assert parse_entrypoint("mypkg.train:main --steps 3").kind == "command"
    assert parse_entrypoint("1pkg:main").argv == ("1pkg:main",)
    assert parse_entrypoint("pkg:main:x").kind == "command"


@pytest.mark.parametrize("text, words", [
    ("", "empty"), ("   \n", "empty"), (None, "string"), (["ls"], "string"),
    ("echo 'unclosed", "cannot split"), ("echo \\", "cannot split"),
    ("a..b:main", "module name"), ("pkg.:main", "module name"), ("ls \x00", "NUL"),
])
def test_bad_entrypoints_are_one_line_value_errors(text, words):
    with pytest.raises(ValueError, match=words) as e:
        parse_entrypoint(text)
    assert "\n" not in str(e.value)


def test_env_is_checked():
    assert check_env(None) == {}
    assert check_env({"A": "1", "B_2": ""}) == {"A": "1", "B_2": ""}
    for env, words in [(["A=1"], "mapping"), ({"A": 1}, "A must be a string"),
                       ({"": "x"}, "bad variable name"), ({"A=B": "x"}, "bad variable name"),
                       ({3: "x"}, "bad variable name"), ({"A": "x\x00"}, "NUL"),
                       ({"AUTOFLOW_RANK": "3"}, "set by autoflow")]:
        with pytest.raises(ValueError, match=words) as e:
            check_env(env)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="mapping"):
        run_entrypoint("j", 0, "true", "A=1", "/nonexistent-never-made")
    with pytest.raises(ValueError, match="grace_s"):
        run_entrypoint("j", 0, "true", None, "/nonexistent-never-made", grace_s=-1)
    assert not Path("/nonexistent-never-made").exists()  # checked before anything is made


# --- helpers ---------------------------------------------------------------------------

def py(code: str) -> str:
    """A command running ``code`` with the test's interpreter (quoted for shlex)."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


class InterruptWhen:
    """Interrupts the main thread (as ``ray.cancel(force=False)`` does) once ``ready()``
    is true, from a ``threading.Timer``; cancelled when the test leaves the block."""

    def __init__(self, ready) -> None:
        self.ready, self.fired, self.done = ready, False, threading.Event()
        self.timer = threading.Timer(0.05, self._watch)
        self.timer.daemon = True

    def _watch(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while not self.done.is_set() and time.monotonic() < deadline:
            try:
                ok = self.ready()
            except Exception:  # noqa: BLE001 - a half-written file: look again
                ok = False
            if ok:
                if not self.done.is_set():
                    self.fired = True
                    _thread.interrupt_main()
                return
            time.sleep(0.02)

    def __enter__(self) -> Self:
        # ``interrupt_main`` does nothing where SIGINT is ignored, as it is in a process
        # started in the background by a non-interactive shell: handle it while active
        self.old_sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.timer.cancel()
        self.timer.join()
        signal.signal(signal.SIGINT, self.old_sigint)


# --- commands --------------------------------------------------------------------------

def test_a_command_that_succeeds_sees_its_environment(tmp_path):
    key = "job/7 a b"  # a slash and spaces: the folder name is percent-encoded
    code = ("import json, os, sys; "
            "print(json.dumps({k: os.environ.get(k) for k in ['AUTOFLOW_JOB_ID', "
            "'AUTOFLOW_RANK', 'AUTOFLOW_CHECKPOINT_DIR', 'EXTRA']})); "
            "print('to stderr', file=sys.stderr)")
    res = run_entrypoint(key, 2, py(code), {"EXTRA": "x y"}, str(tmp_path))
    folder = tmp_path / quote(key, safe="")
    assert folder == job_folder(tmp_path, key) and folder.is_dir()
    assert res == {**res, "kind": "command", "stopped": False, "returncode": 0}
    assert res["began"] <= res["ended"]
    seen = json.loads((folder / "stdout.log").read_text())
    assert seen == {"AUTOFLOW_JOB_ID": key, "AUTOFLOW_RANK": "2",
                    "AUTOFLOW_CHECKPOINT_DIR": str(folder), "EXTRA": "x y"}
    assert (folder / "stderr.log").read_text() == "to stderr\n"
    run_entrypoint(key, 2, py("print('again')"), None, str(tmp_path))
    assert (folder / "stdout.log").read_text().splitlines()[-1] == "again"  # appended
    assert "EXTRA" not in os.environ


def test_python_means_the_workers_interpreter(tmp_path):
    res = run_entrypoint("p", 0, "python -c 'import sys; print(sys.executable)'", None,
                         str(tmp_path))
    assert res["returncode"] == 0
    assert (tmp_path / "p" / "stdout.log").read_text().strip() == sys.executable


def test_a_failing_command_names_its_status_and_stderr(tmp_path):
    code = ("import sys\n"
            "for i in range(12): print(f'line {i}', file=sys.stderr)\n"
            "sys.exit(3)")
    (tmp_path / "j1").mkdir()
    (tmp_path / "j1" / "stderr.log").write_text("old run's line\n")
    with pytest.raises(RuntimeError) as e:
        run_entrypoint("j1", 1, py(code), None, str(tmp_path))
    msg = str(e.value)
    assert "'j1'" in msg and "rank 1" in msg and "exit status 3" in msg
    assert all(f"line {i}" in msg for i in range(7, 12))
    assert "line 6" not in msg and "old run" not in msg  # only this run's last lines
    with pytest.raises(RuntimeError, match="killed by SIGKILL.*\\(none\\)"):
        run_entrypoint("j2", 0, py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
                       None, str(tmp_path))
    with pytest.raises(RuntimeError, match="cannot start.*FileNotFoundError"):
        run_entrypoint("j3", 0, "no-such-program-autoflow-test --x", None, str(tmp_path))


def test_stopping_a_training_command_checkpoints_and_the_next_run_resumes(tmp_path):
    pytest.importorskip("torch")
    from autoflow.demo.train_loop import load_checkpoint

    key = "train/1"
    folder = job_folder(tmp_path, key)
    entry = (f"python -m autoflow.demo.train_loop --checkpoint-dir {shlex.quote(str(folder))} "
             "--steps 100000 --checkpoint-every 5 --step-time 0.02")

    def step():
        return load_checkpoint(folder)[1]

    with InterruptWhen(lambda: step() >= 5) as w:
        first = run_entrypoint(key, 0, entry, None, str(tmp_path), grace_s=60)
    assert w.fired
    # SIGTERM let it checkpoint and exit by itself (status 0), not a kill
    assert first == {**first, "kind": "command", "stopped": True, "returncode": 0}
    out1 = json.loads((folder / "stdout.log").read_text().splitlines()[-1])
    assert out1["status"] == "stopped" and out1["resumed_from"] == 0
    assert 5 <= out1["step"] == step() < 100000

    with InterruptWhen(lambda: step() > out1["step"]) as w:
        second = run_entrypoint(key, 0, entry, None, str(tmp_path), grace_s=60)
    assert w.fired and second["stopped"] and second["returncode"] == 0
    lines = (folder / "stdout.log").read_text().splitlines()
    assert len(lines) == 2  # both runs' status lines, appended
    out2 = json.loads(lines[-1])
    assert out2["status"] == "stopped" and out2["resumed_from"] == out1["step"]
    assert out2["step"] > out1["step"]


def test_a_command_that_ignores_sigterm_is_killed_after_its_grace(tmp_path):
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(600)")
    log = tmp_path / "stubborn" / "stdout.log"
    with InterruptWhen(lambda: "ready" in log.read_text()) as w:
        res = run_entrypoint("stubborn", 0, py(code), None, str(tmp_path), grace_s=0.3)
    assert w.fired
    assert res == {**res, "stopped": True, "returncode": -signal.SIGKILL}


# --- functions -------------------------------------------------------------------------

MODULE = '''
import os, time

def main(ctx):
    (ctx.checkpoint_dir / "touched").write_text(ctx.job_id)
    return {"job_id": ctx.job_id, "rank": ctx.rank, "dir": str(ctx.checkpoint_dir),
            "env": ctx.env, "seen": os.environ.get("EXTRA"),
            "seen_dir": os.environ.get("AUTOFLOW_CHECKPOINT_DIR"), "t": (1, 2)}

def forever(ctx):
    (ctx.checkpoint_dir / "started").write_text("")
    while True:
        time.sleep(0.01)

def opaque(ctx):
    return object()

def broken(ctx):
    raise ZeroDivisionError("no way")

NOT_A_FUNCTION = 3
'''


@pytest.fixture
def jobmod(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    name = f"autoflow_test_job_{os.getpid()}_{id(tmp_path)}"
    (src / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(src))
    yield name
    sys.modules.pop(name, None)


def test_a_function_gets_its_context_and_returns_a_result(tmp_path, jobmod, monkeypatch):
    monkeypatch.setenv("EXTRA", "before")
    monkeypatch.delenv("AUTOFLOW_RANK", raising=False)
    ck = tmp_path / "ck"
    res = run_entrypoint("f/1", 3, f"{jobmod}:main", {"EXTRA": "during"}, str(ck))
    folder = ck / "f%2F1"
    assert res == {**res, "kind": "function", "stopped": False}
    assert res["began"] <= res["ended"]
    assert res["result"] == {
        "job_id": "f/1", "rank": 3, "dir": str(folder), "seen": "during",
        "seen_dir": str(folder), "t": [1, 2],  # a plain JSON copy
        "env": {"EXTRA": "during", "AUTOFLOW_JOB_ID": "f/1", "AUTOFLOW_RANK": "3",
                "AUTOFLOW_CHECKPOINT_DIR": str(folder)}}
    assert (folder / "touched").read_text() == "f/1"
    assert os.environ["EXTRA"] == "before" and "AUTOFLOW_RANK" not in os.environ  # restored
    opaque = run_entrypoint("f/2", 0, f"{jobmod}:opaque", None, str(ck))
    assert opaque["result"] is None and opaque["result_dropped"] == "object"
    assert isinstance(JobContext("a", 0, folder).env, dict)


def test_an_interrupted_function_is_stopped(tmp_path, jobmod):
    started = job_folder(tmp_path, "g") / "started"
    with InterruptWhen(started.exists) as w:
        res = run_entrypoint("g", 0, f"{jobmod}:forever", None, str(tmp_path))
    assert w.fired
    assert res == {**res, "kind": "function", "stopped": True}
    assert "AUTOFLOW_JOB_ID" not in os.environ


def test_a_function_that_cannot_be_loaded_or_raises_is_named(tmp_path, jobmod):
    for entry, words in [(f"{jobmod}_missing:main", "ModuleNotFoundError"),
                         (f"{jobmod}:nothing", "AttributeError"),
                         (f"{jobmod}:NOT_A_FUNCTION", "not a function"),
                         (f"{jobmod}:broken", "raised ZeroDivisionError: no way")]:
        with pytest.raises(RuntimeError, match=words) as e:
            run_entrypoint("h", 0, entry, None, str(tmp_path))
        assert entry in str(e.value) and "'h'" in str(e.value)
