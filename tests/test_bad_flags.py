"""Issue 15, sections 2-4: every numeric flag is checked against its documented range
(``autoflow.limits.FLAG_RANGES``) before anything runs; ``--out`` must be usable before
the work starts. Each case: exit code 2, one ``error: ...`` line naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest
from hardening import assert_one_line_error, invoke

from autoflow.errors import ConfigError
from autoflow.limits import FLAG_RANGES, check_flag

FIX = Path(__file__).parent / "fixtures"
ITP = f"itp:{FIX / 'itp_small.csv'}"
BENCH = ("bench", "--trace", "builtin:philly-mix-small:20", "--policies", "fifo")
TRAIN = ("train", "--workloads", "builtin:philly-mix-small")
DOCS = Path(__file__).parent.parent / "docs" / "hardening.md"

BENCH_CASES = [
    ("--load", "nan", "not a finite number"), ("--load", "inf", "not a finite number"),
    ("--load", "0", "> 0"), ("--load", "-0.5", "> 0"), ("--load", "1e9", "<= 100"),
    ("--restart-overhead", "-3000", ">= 0"), ("--restart-overhead", "nan", "finite"),
    ("--checkpoint-interval", "-1", ">= 0"),
    ("--failure-rate", "-1", ">= 0"), ("--failure-rate", "1000", "<= 100"),
    ("--failure-rate", "inf", "finite"),
    ("--repair-time", "-3600", "> 0"), ("--repair-time", "0", "> 0"),
    ("--default-slo", "-5", "> 0"), ("--default-slo", "0", "> 0"),
    ("--duration-prior", "0", "> 0"), ("--duration-prior", "1e308", "<="),
    ("--seeds", "0", ">= 1"), ("--seeds", "100000", "<= 1,000"),
]


@pytest.mark.parametrize("flag,value,needle", BENCH_CASES)
def test_bench_refuses_a_flag_out_of_range(tmp_path, flag, value, needle):
    r = invoke(*BENCH, "--out", tmp_path / "o", flag, value)
    assert_one_line_error(r, flag, needle)
    assert not (tmp_path / "o").exists()  # refused before anything was made


TRAIN_CASES = [
    ("--eval-every", "0"), ("--eval-every", "-10"), ("--timesteps", "-5"), ("--seed", "-1"),
    ("--seed", str(2**40)), ("--n-envs", "0"), ("--eval-episodes", "0"),
    ("--learning-rate", "nan"), ("--learning-rate", "-1"), ("--clip-range", "0"),
    ("--imitation-smoothing", "0.5"), ("--imitation-episodes", "-1"),
    ("--dagger-rounds", "-1"), ("--jobs-min", "0"), ("--jobs-max", "1000000000"),
]


@pytest.mark.parametrize("flag,value", TRAIN_CASES)
def test_train_refuses_a_flag_out_of_range(tmp_path, flag, value):
    r = invoke(*TRAIN, "--out", tmp_path / "o", flag, value)
    assert_one_line_error(r, flag)
    assert not (tmp_path / "o").exists()


SERVE_CASES = [
    ("--time-scale", "0", "> 0"), ("--time-scale", "nan", "finite"),
    ("--time-scale", "1e9", "<= 1,000,000"), ("--restart-overhead", "-1", ">= 0"),
    ("--default-slo", "0", "> 0"), ("--k8s-pod-sync", "0", "> 0"),
    ("--k8s-pod-sync", "99999", "<= 3,600"),
]


@pytest.mark.parametrize("flag,value,needle", SERVE_CASES)
def test_serve_refuses_a_flag_out_of_range(tmp_path, flag, value, needle):
    r = invoke("serve", "--db", f"sqlite:///{tmp_path}/s/a.db", flag, value)
    assert_one_line_error(r, flag, needle)
    assert not (tmp_path / "s").exists()  # refused before the store was made


def test_service_verbs_name_what_is_wrong_before_making_anything(tmp_path):
    r = invoke("tokens", "create", "--scope", "god", "--name", "x", "--db",
               f"sqlite:///{tmp_path}/t/a.db")
    assert_one_line_error(r, "--scope must be one of admin, executor, submitter, reader")
    assert not (tmp_path / "t").exists()
    r = invoke("serve", "--db", "postgresql://nobody@127.0.0.1:1/x")
    assert_one_line_error(r, "cannot be reached", "127.0.0.1")  # the driver's two lines: one
    r = invoke("serve", "--db", "notaurl")
    assert_one_line_error(r, "--db notaurl: not a database URL")
    r = invoke("submit", "--gpus", "1", "--url", "http://127.0.0.1:1", "--token", "x")
    assert_one_line_error(r, "POST /v1/jobs: cannot reach http://127.0.0.1:1")


def test_train_refuses_jobs_min_above_jobs_max(tmp_path):
    r = invoke(*TRAIN, "--out", tmp_path / "o", "--jobs-min", "500", "--jobs-max", "100")
    assert_one_line_error(r, "--jobs-min (500)", "--jobs-max (100)")


@pytest.mark.parametrize("args,needle", [
    (("traces", "inspect", "builtin:philly-mix-small", "--seed", "-3"), "--seed"),
    (("traces", "convert", "builtin:philly-mix-small", "--seed", "-3", "--out", "x.csv"),
     "--seed"),
    (("traces", "inspect", "builtin:philly-mix:99999999999"), "1..1,000,000"),
    (("generate", "fit", "--trace", ITP, "--out", "g.pkl", "--seed", "-1"), "--seed"),
    (("generate", "fit", "--trace", ITP, "--out", "g.pkl", "--epochs", "-1"), "--epochs"),
    (("generate", "sample", "--model", "g.pkl", "-n", "10", "--out", "s.csv",
      "--load-scale", "nan"), "--load-scale"),
    (("generate", "sample", "--model", "g.pkl", "-n", "10", "--out", "s.csv",
      "--load-scale", "0"), "--load-scale"),
    (("generate", "sample", "--model", "g.pkl", "-n", "100000000000", "--out", "s.csv"),
     "-n must be"),
])
def test_other_commands_refuse_flags_out_of_range(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(invoke(*args), needle)


# --out: an existing file where a folder is expected, a place that cannot be made
def _out_cases(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "afile").write_text("x")
    return {"existing file": tmp_path / "afile", "under a file": tmp_path / "afile" / "sub"}


@pytest.mark.parametrize("where", ["existing file", "under a file"])
@pytest.mark.parametrize("cmd", [BENCH, TRAIN, ("generate", "report", "--real", ITP,
                                                "--synthetic", "s.csv")])
def test_out_folder_must_be_usable(tmp_path, cmd, where):
    out = _out_cases(tmp_path)[where]
    r = invoke(*cmd, "--out", out)
    assert_one_line_error(r, "--out", str(out))


@pytest.mark.parametrize("cmd", [("traces", "convert", ITP),
                                 ("generate", "sample", "--model", "g.pkl", "-n", "5")])
def test_out_file_must_be_usable(tmp_path, cmd):
    assert_one_line_error(invoke(*cmd, "--out", tmp_path), "is a folder")
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(invoke(*cmd, "--out", tmp_path / "afile" / "x.csv"), "--out")


def test_generate_fit_checks_out_before_fitting(tmp_path, monkeypatch):
    import autoflow.generators.generator as gen

    def no_fit(*a, **k):  # pragma: no cover - the test fails if reached
        raise AssertionError("fitted before --out was checked")

    monkeypatch.setattr(gen, "fit_generator", no_fit)
    r = invoke("generate", "fit", "--trace", ITP, "--out", tmp_path)
    assert_one_line_error(r, "--out", "is a folder")


def test_every_range_is_documented():
    text = DOCS.read_text()
    for flag in FLAG_RANGES:
        assert f"`{flag}`" in text, flag


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, True, "3"])
def test_check_flag_rejects_non_numbers_and_non_finite(value):
    with pytest.raises(ConfigError, match="--failure-rate"):
        check_flag("--failure-rate", value)


def test_the_simulator_checks_its_config_too():
    from simdata import mixed_workload, small_cluster

    from autoflow.policies import parse_policy
    from autoflow.sim.simulator import SimConfig, Simulator

    for bad in (SimConfig(restart_overhead_s=-3000), SimConfig(repair_time_s=-3600),
                SimConfig(failure_rate_per_node_day=-1), SimConfig(default_slo_s=-5)):
        with pytest.raises(ConfigError):
            Simulator(mixed_workload(), small_cluster(), parse_policy("fifo"), bad)


@pytest.mark.parametrize("cond", ["num_gpus>=nan", "duration<inf", "duration>-inf"])
def test_sample_conditions_must_be_finite(tmp_path, cond):
    r = invoke("generate", "sample", "--model", tmp_path / "g.gen", "-n", "5",
               "--out", tmp_path / "s.csv", "--condition", cond)
    assert_one_line_error(r, "not a finite number")


@pytest.mark.parametrize("cmd,count", [("bench", 8), ("train", 12)])
def test_help_states_the_ranges(cmd, count):
    r = invoke(cmd, "--help")
    assert r.exit_code == 0 and r.output.count("Valid:") >= count, r.output
