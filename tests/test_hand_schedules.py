"""Whole schedules worked out by hand on tiny clusters: exact start and finish times.

Each test pins one rule that a deliberate bug in the core once broke without the suite
noticing (issue 14, section 7). The arithmetic is written beside each expectation.

The LAS cases are built so that the expected schedule is the same under today's rules
and under Tiresias' reference rules (a preempted job resumes at the front of its queue;
a job demoted into a lower queue lines up behind that queue's waiting jobs; victims
that are not needed are handed back): at every demotion no job waits in the queue the
running job enters, at most one victim is ever needed and it is the only one that can
help, and at most one job waits at a time where the order of waiting jobs could matter.
"""

from __future__ import annotations

import pytest

from autoflow.cluster import ClusterSpec, Node
from autoflow.job import Job
from autoflow.policies import make_policy
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.workload import Workload


def simulate(policy: str, jobs: list[Job], nodes: list[Node], **cfg) -> dict:
    """Runs the jobs and returns their JobStates by job id."""
    cfg.setdefault("check_invariants", True)
    result = Simulator(Workload(jobs), ClusterSpec("hand", nodes), make_policy(policy),
                       SimConfig(**cfg)).run()
    return {js.job.job_id: js for js in result.jobs}


# -- EASY backfilling ------------------------------------------------------------------


def test_easy_backfill_long_jobs_share_the_heads_spare_gpus_once():
    """Two long jobs that each fit in the GPUs the head leaves spare at its reservation,
    but not both: only the first may start; the second would delay the head.

    One node of 4 GPUs. Predictions (history estimator, never the truth): 'run' is
    predicted 100 s (user a's 2-GPU job 'h' took 100 s); every other job has no history
    and gets the workload median, 1000 s (durations 100, 1000, 100, 5000, 5000).
    """
    jobs = [Job("h", 0, 100.0, num_gpus=2, user="a"),       # runs [0, 100]: history
            Job("run", 200, 1000.0, num_gpus=2, user="a"),  # runs [200, 1200]
            Job("head", 201, 100.0, num_gpus=3),            # 2 GPUs free: must wait
            Job("L1", 202, 5000.0, num_gpus=1),
            Job("L2", 202, 5000.0, num_gpus=1)]
    s = simulate("easy-backfill+first-fit", jobs, [Node("n", "V100", 4)])
    # pass at 202: head's shadow = 202 + predicted remaining of 'run'
    # = 202 + max(100 - 2, 0.1 * 2, 60) = 300; then 4 GPUs free, head takes 3: spare 1.
    # L1 (predicted to end at 202 + 1000 > 300) runs past the shadow on the spare GPU;
    # L2 would need a second spare GPU: it waits
    assert s["L1"].first_start == 202
    assert s["L2"].first_start > 202
    # 'run' truly ends at 1200: 3 GPUs free (L1 holds one), the head starts on time
    assert s["run"].finish == 1200
    assert s["head"].first_start == 1200 and s["head"].finish == 1300
    # L2 starts when the head leaves: 1300, ends 1300 + 5000
    assert s["L2"].first_start == 1300 and s["L2"].finish == 6300
    assert s["L1"].finish == 5202


def test_easy_backfill_short_jobs_need_no_spare_gpus():
    """A job predicted to end before the shadow time may use the head's GPUs.

    One node of 4 GPUs. 1-GPU jobs of user b are predicted 10 s ('h1' took 10 s); 'run'
    and the head have no history: the workload median, 10 s (durations 10, 100, 100, 10,
    10), so 'run' is predicted to need at least 60 s more (the estimator's floor).
    """
    jobs = [Job("h1", 0, 10.0, num_gpus=1, user="b"),   # runs [0, 10]: history
            Job("run", 20, 100.0, num_gpus=3),           # runs [20, 120]
            Job("head", 21, 100.0, num_gpus=4),          # 1 GPU free: must wait
            Job("s1", 22, 10.0, num_gpus=1, user="b"),
            Job("s2", 22, 10.0, num_gpus=1, user="b")]
    s = simulate("easy-backfill+first-fit", jobs, [Node("n", "V100", 4)])
    # shadow = 22 + max(10 - 2, 0.2, 60) = 82 with 0 spare GPUs; s1 is predicted to end
    # at 32 <= 82: it backfills on the one free GPU. s2 finds no free GPU until s1 ends;
    # at 32 the shadow is 32 + max(10 - 12, 1.2, 60) = 92 and s2 ends by 42: it backfills
    assert s["s1"].first_start == 22 and s["s1"].finish == 32
    assert s["s2"].first_start == 32 and s["s2"].finish == 42
    assert s["head"].first_start == 120  # not delayed by the backfilled jobs


@pytest.mark.parametrize("placer", ["first-fit", "best-fit", "spread"])
def test_easy_backfill_long_job_does_not_take_the_heads_node(placer):
    """The head's reservation is on a node, not a count of GPUs anywhere.

    Node x: 4 GPUs; node y: 1 GPU. 'run' (3 GPUs, predicted 100 s from user a's history)
    holds x; the head needs 4 GPUs, so only x will do. At the shadow time (300) x and y
    will have 5 GPUs free, 1 more than the head needs; a long job (predicted 550 s, the
    workload median) may use y's GPU, but not x's last one: every placer here puts it on
    x (the tie on free share goes to the lower node), and the head then waits for it.
    """
    jobs = [Job("h", 0, 100.0, num_gpus=3, user="a"),       # runs [0, 100]: history
            Job("run", 200, 1000.0, num_gpus=3, user="a"),  # runs [200, 1200] on x
            Job("head", 201, 100.0, num_gpus=4),
            Job("L", 202, 5000.0, num_gpus=1)]
    s = simulate(f"easy-backfill+{placer}", jobs, [Node("x", "V100", 4), Node("y", "V100", 1)])
    # pass at 202: the head's reservation is all of x at 202 + max(100 - 2, 0.2, 60) = 300
    # (when 'run' is predicted to end); x's GPU free now is held back, y's is not: L
    # (predicted to end at 202 + 550 > 300) starts now on y, whatever the placer
    assert s["L"].first_start == 202 and s["L"].finish == 5202
    # 'run' truly ends at 1200: x is free again (before the fix L sat on x and the head
    # waited until L ended, at 5202)
    assert s["head"].first_start == 1200 and s["head"].finish == 1300


@pytest.mark.parametrize("placer", ["first-fit", "best-fit", "spread"])
def test_easy_backfill_gang_head_keeps_its_whole_nodes(placer):
    """A gang wider than any node reserves whole nodes; a long job goes elsewhere.

    Three nodes of 2 V100s; the head needs 4 GPUs, so two whole idle nodes. History
    (all done by 9,000 s): user a's 2-GPU job 'h' took 100 s, the 1-GPU job 'g' 9,000 s,
    so 'r1' (user a, 2 GPUs) is predicted 100 s and every 1-GPU job 9,000 s (the mean of
    completed 1-GPU jobs; no user has other history). Placements at 10,000 (ties on
    every score go to the lower node, so every placer here agrees): r1 on n0, 'x' on
    n1, r2 (1 GPU) on n2. x ends at 10,050: n1 idle.

    Counting GPUs (the old rule), at 10,052 the head has 3 free now and 5 when r1 ends:
    one spare, and a long 1-GPU job took it on n1 under first-fit and spread (the idle
    node the head needs), so the head waited for r2 to end (15,000).
    """
    jobs = [Job("h", 0, 100.0, num_gpus=2, user="a"),       # runs [0, 100]: history
            Job("g", 0, 9000.0, num_gpus=1),                  # runs [0, 9000]: history
            Job("r1", 10_000, 1000.0, num_gpus=2, user="a"),  # [10000, 11000] on n0
            Job("x", 10_000, 50.0, num_gpus=2, user="b"),     # [10000, 10050] on n1
            Job("r2", 10_000, 5000.0, num_gpus=1),            # [10000, 15000] on n2
            Job("head", 10_051, 100.0, num_gpus=4),           # one idle node: waits
            Job("L", 10_052, 5000.0, num_gpus=1)]
    nodes = [Node(f"n{i}", "V100", 2) for i in range(3)]
    s = simulate(f"easy-backfill+{placer}", jobs, nodes)
    assert [s[j].first_start for j in ("r1", "x", "r2")] == [10_000] * 3
    # pass at 10,052: r1 is predicted to end at 10,052 + max(100 - 52, 5.2, 60) = 10,112;
    # then n0 and n1 are idle: the head's reservation is n0 and n1 (n2 holds r2). L is
    # predicted to end at 10,052 + 9,000 > 10,112: it may use only capacity free now
    # and not reserved, n2's second GPU; it starts there now and ends at 15,052
    assert s["L"].first_start == 10_052 and s["L"].finish == 15_052
    # r1 truly ends at 11,000: n0 and n1 idle, the head starts on time
    assert s["head"].first_start == 11_000 and s["head"].finish == 11_100


@pytest.mark.parametrize("placer", ["first-fit", "best-fit", "spread"])
def test_easy_backfill_long_job_runs_beside_a_type_constrained_head(placer):
    """A type-constrained head holds GPUs of its type only: a long job may use another.

    Node v: 2 V100s; node t: 1 T4. History: user a's V100 job 'h' took 100 s, user c's
    job 'hc' 190 s (both 1 GPU, done by 200), so 'r' is predicted 100 s and L 190 s.

    Counting GPUs of the head's type (the old rule), the head leaves no V100 spare at
    its shadow time, so L (which could run on the T4) was not let start until 1,200.
    """
    jobs = [Job("h", 0, 100.0, gpu_types=("V100",), user="a"),   # [0, 100]: history
            Job("hc", 0, 190.0, user="c"),                        # [0, 190]: history
            Job("r", 200, 1000.0, gpu_types=("V100",), user="a"),  # [200, 1200] on v
            Job("head", 201, 100.0, num_gpus=2, gpu_types=("V100",)),  # 1 V100 free
            Job("L", 202, 5000.0, user="c")]                      # any GPU type
    s = simulate(f"easy-backfill+{placer}", jobs, [Node("v", "V100", 2), Node("t", "T4", 1)])
    # pass at 202: the head's reservation is both V100s at 202 + max(100 - 2, 0.2, 60)
    # = 300. L is predicted to end at 202 + 190 = 392 > 300: not on v's free V100 (held
    # back), but the T4 is free now and not reserved: L starts there at 202
    assert s["L"].first_start == 202 and s["L"].finish == 5202
    assert s["head"].first_start == 1200 and s["head"].finish == 1300  # when r truly ends


# -- restart overhead ------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["las+first-fit", "srtf-oracle+first-fit"])
def test_restart_overhead_is_lost_at_every_restart(policy):
    """A long job is preempted three times; each restart costs 500 s that is not work.

    One GPU. 'long' (20,000 s) runs alone from 0; a 100 s job arrives at 5,000, 8,000 and
    11,000 and preempts it (LAS: 'long' has passed 3,600 GPU-seconds, the newcomer has
    attained nothing; SRTF: 100 s left against thousands). With one job waiting at a
    time, every rule set gives this schedule.
    """
    jobs = [Job("long", 0, 20_000.0)] + [Job(f"s{i}", t, 100.0)
                                         for i, t in enumerate((5000, 8000, 11_000))]
    s = simulate(policy, jobs, [Node("n", "V100", 1)], restart_overhead_s=500.0)
    lg = s["long"]
    for i, t in enumerate((5000, 8000, 11_000)):
        assert s[f"s{i}"].first_start == t and s[f"s{i}"].finish == t + 100
    assert lg.preemptions == 3 and lg.starts == 4
    # work: [0, 5000] gives 5000 s (first start, no overhead); [5100, 8000] and
    # [8100, 11000] give 2900 - 500 = 2400 s each: 9800 s done at 11,000. Restart at
    # 11,100: 500 s overhead + 10,200 s left -> 21,800 (= 20,000 + 3 x 100 + 3 x 500)
    assert lg.finish == pytest.approx(21_800.0)
    assert lg.run_seconds == pytest.approx(20_000.0 + 3 * 500.0)
    assert lg.attained == pytest.approx(21_500.0)  # 1 GPU x every second it held it
    assert lg.progress == pytest.approx(20_000.0)


# -- LAS -------------------------------------------------------------------------------


def test_las_running_job_reaches_the_third_queue():
    """A job that runs with no competitor keeps running past both thresholds (3,600 and
    36,000 GPU-seconds) and ends in the third queue, below a job in the second.

    One node of 2 GPUs, restart overhead 30 s. 'A' runs alone from 0; 'X' starts at
    30,000 on the other GPU and enters the second queue at 33,600; 'A' enters the third
    queue at 36,000. At each demotion nothing waits. At 40,000 a new job 'N' (nothing
    attained, first queue) needs one GPU: LAS takes it from the lowest queue, i.e. 'A'
    (40,000 GPU-seconds, third queue), not 'X' (10,000, second queue). A job kept in the
    second queue would tie with 'X', and the most recently demoted, 'X', would be taken.
    """
    jobs = [Job("A", 0, 100_000.0), Job("X", 30_000, 100_000.0), Job("N", 40_000, 100.0)]
    s = simulate("las+first-fit", jobs, [Node("n", "V100", 2)], restart_overhead_s=30.0)
    a, x, n = s["A"], s["X"], s["N"]
    assert a.first_start == 0 and x.first_start == 30_000 and n.first_start == 40_000
    assert a.preemptions == 1 and x.preemptions == 0
    assert n.finish == 40_100
    # 'A' did 40,000 s of work, restarts at 40,100: 30 s overhead + 60,000 s left
    assert a.finish == pytest.approx(100_130.0)
    assert x.finish == pytest.approx(130_000.0)  # never interrupted


def test_preempted_job_does_not_restart_in_the_same_instant():
    """A job preempted at t starts again strictly later, and pays the restart overhead.

    Node 0: one T4 GPU; node 1: one V100 GPU. 'L' (any GPU type) lands on the T4
    (first-fit) at 0 and passes 3,600 GPU-seconds at 3,600. At 5,000 'P' (T4 only, first
    LAS queue) preempts it: 'L' is the only job that can free a T4, so every rule set
    preempts it. The V100 is free at that instant, but a job preempted at t is not
    started again at t: 'L' restarts at the next event, P's completion at 5,100.
    """
    jobs = [Job("L", 0, 20_000.0), Job("P", 5000, 100.0, gpu_types=("T4",))]
    s = simulate("las+first-fit", jobs, [Node("t", "T4", 1), Node("v", "V100", 1)],
                 restart_overhead_s=500.0)
    lg, p = s["L"], s["P"]
    assert p.first_start == 5000 and p.finish == 5100
    assert lg.preemptions == 1 and lg.starts == 2
    # 5,000 s done at 5,000; restart at 5,100 (not 5,000): 500 s overhead + 15,000 s left
    assert lg.finish == pytest.approx(5100 + 500 + 15_000)
    assert lg.run_seconds == pytest.approx(20_000 + 500)
