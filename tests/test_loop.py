"""The self-optimizing loop, offline (issue 20): ``autoflow loop`` stitches sources,
acts at window ends, never promotes a worse challenger, and swaps in a better one."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from autoflow.agents.adaptive import load
from hardening import assert_one_line_error, invoke
from modelkit import always, fixed_trainer

from autoflow.errors import ConfigError
from autoflow.job import Job
from autoflow.loop.compare import CompareConfig
from autoflow.loop.drift import DriftConfig
from autoflow.loop.offline import LoopConfig, parse_window, run_loop, stitch, windows
from autoflow.loop.registry import Registry
from autoflow.traces import normalized
from autoflow.workload import Workload

HEAVY = "builtin:philly-mix-small:240"


def convoy_csv(path: Path, n: int = 240, gpus: int = 16) -> str:
    """A heavy-tailed segment: every 4th job a 16-GPU job 6x longer than the others,
    about all philly-64 can run; under fifo the short jobs wait behind them, under las
    they pass."""
    jobs = [Job(f"c{i}", 120.0 * i, 1800.0 * 16 / gpus if i % 4 == 0 else 300.0,
                num_gpus=gpus if i % 4 == 0 else 1) for i in range(n)]
    normalized.write(Workload(jobs), path)
    return f"csv:{path}"


def uniform_csv(path: Path, n: int = 240) -> str:
    """A light-tailed segment: 8-GPU jobs of one length, evenly spaced."""
    jobs = [Job(f"u{i}", 600.0 * i, 3000.0, num_gpus=8) for i in range(n)]
    normalized.write(Workload(jobs), path)
    return f"csv:{path}"


def _cfg(tmp_path: Path, sources: list[str], champion: Path, **kw) -> LoopConfig:
    cfg = LoopConfig(sources=sources, out=str(tmp_path / "loop"), window="120",
                     cluster="philly-64", load=None, champion=str(champion),
                     heuristics=("fifo", "las"), min_window_jobs=20,
                     drift=DriftConfig(min_rows=20),
                     compare=CompareConfig(replays=3, variants=0, bootstrap=500))
    return replace(cfg, **kw)


def test_stitch_places_each_source_after_the_previous_and_windows_cover_all(tmp_path):
    light = uniform_csv(tmp_path / "u.csv", 50)
    w, segs = stitch([HEAVY, light])
    assert [s["jobs"] for s in segs] == [240, 50] and len(w) == 290
    heavy_last = max(j.submit_time for j in w if j.job_id.startswith("0:"))
    assert segs[1]["start"] > heavy_last
    assert min(j.submit_time for j in w if j.job_id.startswith("1:")) == pytest.approx(
        segs[1]["start"])
    spans = windows(w, "100")
    assert spans[0][0] == w.jobs[0].submit_time and spans[-1][1] > w.jobs[-1].submit_time
    counts = [sum(a <= j.submit_time < b for j in w) for a, b in spans]
    assert sum(counts) == len(w) and counts[:2] == [100, 100]
    assert parse_window("3d") == ("span", 3 * 86400.0)
    for bad in ("0", "5", "-3h", "3 weeks", ""):
        with pytest.raises(Exception, match="--window"):
            parse_window(bad)


def test_a_worse_challenger_is_never_promoted_and_why_is_recorded(tmp_path):
    champion = always("las", tmp_path / "las")
    worse = always("fifo", tmp_path / "fifo")
    trainer = fixed_trainer(worse)
    # two heavy-tailed segments (their GPU mix differs: drift, hence retraining), on both
    # of which fifo lets short jobs wait behind long ones
    cfg = _cfg(tmp_path, [convoy_csv(tmp_path / "c.csv"), convoy_csv(tmp_path / "d.csv",
                                                                      gpus=8)], champion)
    report = run_loop(cfg, trainer=trainer)
    assert trainer.calls, "the loop never retrained"
    rows = report["windows"]
    assert not any(r["promoted"] for r in rows)
    first = rows[0]["live_model"]
    assert all(r["live_model"] == first for r in rows)
    reg = Registry(report["registry"]["url"], Path(cfg.out) / "models")
    assert reg.alias("champion")["sha256"] == first
    rejects = [e for e in reg.events(limit=1000) if e["action"] == "reject"]
    assert len(rejects) == len(report["retrainings"]) == len(trainer.calls)
    for e in rejects:
        ev = e["evidence"]
        assert e["reason"].startswith("not promoted") and ev["ci"][1] >= 0.0
        assert len(ev["cases"]) == 3
    # the fifo-only challenger lost somewhere on the heavy-tailed windows, by the evidence
    assert any(c["challenger"] > c["champion"] for e in rejects for c in e["evidence"]["cases"])
    # the report's interface keys
    assert [s["source"] for s in report["segments"]] == cfg.sources
    assert report["segments"][0]["first_window"] == 0
    assert report["segments"][1]["first_window"] > 0
    for r in rows:
        assert {"index", "start", "end", "drift_detected", "promoted", "live_model",
                "avg_jct"} <= set(r)
        assert {"live", "fifo", "las"} == set(r["avg_jct"])
    saved = json.loads((Path(cfg.out) / "loop_report.json").read_text())
    assert saved["windows"][0]["index"] == 0 and "manifest" in saved
    assert (Path(cfg.out) / "timeline.png").stat().st_size > 10_000


def test_a_better_challenger_is_promoted_and_takes_over_the_live_run(tmp_path):
    champion = always("fifo", tmp_path / "fifo")
    better = always("las", tmp_path / "las")
    trainer = fixed_trainer(better)
    cfg = _cfg(tmp_path, [convoy_csv(tmp_path / "c.csv")], champion, window="60")
    report = run_loop(cfg, trainer=trainer)
    rows = report["windows"]
    promoted = [r["index"] for r in rows if r["promoted"]]
    assert promoted, [e["reason"] for e in report["retrainings"]]
    k = promoted[0]
    assert rows[k]["live_model"] == rows[0]["live_model"]  # swapped at the window's end
    after = [r for r in rows if r["index"] > k]
    assert after and all(r["live_model"] != rows[0]["live_model"] for r in after)
    assert all(r["in_charge"] == "las" for r in after)  # the new champion schedules
    reg = Registry(report["registry"]["url"], Path(cfg.out) / "models")
    assert reg.alias("champion")["sha256"] == after[0]["live_model"]
    assert reg.alias("previous")["sha256"] == rows[0]["live_model"]
    promo = [e for e in reg.events(limit=1000) if e["action"] == "promote"]
    assert promo[0]["reason"].startswith("challenger better")
    assert promo[0]["evidence"]["ci"][1] < 0.0
    assert report["summary"]["first_promotion"] == k
    # the challenger's lineage: the window it came from and its parent
    chal = reg.get(after[0]["live_model"])
    assert chal["lineage"]["window_index"] == k and chal["lineage"]["parent"] == \
        rows[0]["live_model"]
    assert math.isfinite(rows[-1]["avg_jct"]["live"])


def test_a_heuristic_beating_the_champion_is_offered_pinned_and_can_take_over(tmp_path):
    champion = always("fifo", tmp_path / "fifo")
    trainer = fixed_trainer(champion)  # training learns nothing: only the pinned one can win
    cfg = _cfg(tmp_path, [convoy_csv(tmp_path / "c.csv")], champion, window="60")
    report = run_loop(cfg, trainer=trainer)
    rows = report["windows"]
    k = next(r["index"] for r in rows if r["promoted"])
    judged = rows[k]["performance"]
    assert judged["losing"] and judged["best"] == "las"
    made = [e for e in report["retrainings"] if e["window"] == k]
    assert made[0]["reason"] == "the challenger is the champion (same content)"
    assert made[1]["name"] == f"las pinned (window {k})" and made[1]["promoted"]
    reg = Registry(report["registry"]["url"], Path(cfg.out) / "models")
    new = reg.alias("champion")
    assert new["lineage"]["pinned"] == "las" and new["lineage"]["parent"] == rows[0]["live_model"]
    card = json.loads(reg.path_of("champion").read_text())
    assert card["pinned"] == "las"
    after = [r for r in rows if r["index"] > k]
    assert after and all(r["in_charge"] == "las" and set(r["choices"]) <= {"las"}
                         for r in after)
    # its weights are the champion's own: a challenger trained from it starts there
    assert np.array_equal(load(reg.path_of("champion"))[0].layers[-1][1],
                          load(champion)[0].layers[-1][1])


def test_a_pinned_card_names_one_of_its_candidates(tmp_path):
    card = always("fifo", tmp_path / "fifo")
    data = json.loads(card.read_text())
    data["pinned"] = "not-a-candidate"
    card.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="pinned must be one of network.candidates"):
        load(card)


def test_loop_cli_bad_input_is_one_line(tmp_path):
    for args, needle in ((["--window", "3 weeks"], "--window"),
                         (["--load", "9"], "--load"),
                         (["--champion", str(tmp_path / "none.json")], "--champion")):
        r = invoke("loop", "--trace", HEAVY, "--out", tmp_path / "o", *args)
        assert_one_line_error(r, needle)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = invoke("loop", "--trace", HEAVY, "--out", tmp_path / "o", "--champion", bad)
    assert_one_line_error(r, "bad.json")
    r = invoke("loop", "--trace", "nope:x", "--out", tmp_path / "o2")
    assert r.exit_code != 0 and "Traceback" not in r.output


def test_loop_cli_end_to_end_with_a_trained_challenger(tmp_path):
    light = uniform_csv(tmp_path / "u.csv", 160)
    out = tmp_path / "run"
    r = invoke("loop", "--trace", f"{HEAVY},{light}", "--window", "100", "--cluster",
               "philly-64", "--load", "0.9", "--out", out, "--teacher-episodes", "2",
               "--replays", "2", "--variants", "1", "--min-rows", "20")
    assert r.exit_code == 0, r.output
    report = json.loads((out / "loop_report.json").read_text())
    assert report["retrainings"], "drift from the 8-GPU segment should retrain"
    e = report["retrainings"][0]
    assert len(e["evidence"]["cases"]) == 3 and e["reason"]
    folder = out / f"retrain-{e['window']}"
    assert (folder / "challenger.json").is_file() and (folder / "generator.npz").is_file()
    man = json.loads((out / "manifest.json").read_text())
    assert man["seed"] == 0 and man["command"].startswith("autoflow")
    assert man["config"]["sources"] == [HEAVY, light] and man["config"]["window"] == "100"



def test_unfinished_jobs_are_imputed_from_the_longer_completed_ones():
    from autoflow.loop.step import MIN_POOL, PRIOR_S, Imputer

    ones = [(1, float(d)) for d in range(10, 110, 10)]  # 10 .. 100 s, 1 GPU
    eights = [(8, 1000.0), (8, 3000.0)]  # too few 8-GPU jobs for a pool of their own
    imp = Imputer(ones + eights)
    assert len(ones) >= MIN_POOL > len(eights)
    assert imp.duration(1, 0.0) == 55.0  # not run yet: the plain median
    assert imp.duration(1, 65.0) == 85.0  # ran 65 s: the median of 70, 80, 90, 100
    assert imp.duration(1, 150.0) == 300.0  # longer than any completed: twice its work
    assert imp.duration(8, 0.0) == 65.0  # the median of all 12 durations: (60 + 70) / 2
    assert imp.duration(8, 2000.0) == 3000.0  # the only longer one, from all
    assert Imputer([]).duration(4, 0.0) == PRIOR_S
    assert Imputer([]).duration(4, 5000.0) == 10000.0


def test_a_window_keeps_its_jobs_dependencies_across_its_files(tmp_path):
    from autoflow.cluster import load_cluster
    from autoflow.loop.window_job import read_inputs, write_inputs

    jobs = {"backlog": [Job("a", 0.0, 50.0, workflow_id="w")],
            "known": [Job("b", 1.0, 20.0, workflow_id="w", depends_on=("a", "gone"))],
            "censored": [Job("c", 2.0, 30.0, workflow_id="w", depends_on=("b",))],
            "reference": [Job("r", 0.0, 10.0, depends_on=("elsewhere",))]}
    write_inputs(tmp_path, {"index": 1}, jobs, load_cluster("philly-64"))
    back = read_inputs(tmp_path)
    assert [j.depends_on for j in back["known"]] == [("a",)]  # "gone" ended before
    assert [j.depends_on for j in back["censored"]] == [("b",)]
    assert back["censored"][0].censored and back["reference"][0].depends_on == ()
