"""A second, independent statement of Tiresias' LAS on one flat pool of GPUs, written
the way the simulator published with the paper runs it (``dlas_sim_jobs``): at every
event, advance attained service, demote jobs that crossed a threshold to the back of the
next queue, drop finished jobs, append arrivals to the first queue, then fill the pool
greedily in queue order (a job runs if it fits in what the jobs ranked above it left;
a running job that does not fit is preempted), and finally move each queue's waiting
jobs behind its running ones, keeping their order. Exact arithmetic instead of the
reference's whole seconds. For tests only: ``autoflow.policies.las`` must give the same
schedule on a single node."""

from __future__ import annotations

EPS = 1e-6


def reference_las(jobs: list[tuple[float, float, int]], gpus: int,
                  thresholds: tuple[float, ...]) -> tuple[list[dict], int]:
    """``jobs``: (submit, duration, num_gpus) in submission order. Returns per job its
    segments [(start, stop), ...] and its finish time, and the number of *crowded*
    events: those at which jobs were preempted and two or more started. (autoflow's pass
    starts one job at a time, so a job preempted for one start is not given back when a
    later start's victim frees room for it; only at crowded events can that differ.)"""
    n = len(jobs)
    out = [{"segments": [], "finish": None} for _ in range(n)]
    executed = [0.0] * n  # seconds run
    running: dict[int, float] = {}  # job -> start of its current segment
    level = [0] * n
    queues: list[list[int]] = [[] for _ in range(len(thresholds) + 1)]
    order = sorted(range(n), key=lambda i: (jobs[i][0], i))
    nxt, t, crowded = 0, 0.0, 0
    while nxt < n or any(queues):
        # the next event: an arrival, a completion or a threshold crossing
        cands = [jobs[order[nxt]][0]] if nxt < n else []
        for j, s in running.items():
            cands.append(s + jobs[j][1] - executed[j])
            if level[j] < len(thresholds):
                cands.append(s + (thresholds[level[j]] / jobs[j][2] - executed[j]))
        if not cands:
            raise RuntimeError("jobs wait that can never run")
        t = min(cands)
        for j, s in list(running.items()):  # advance
            executed[j] += t - s
            running[j] = t
        for j in sorted(running):  # demote, in the order jobs became runnable
            while (level[j] < len(thresholds)
                   and executed[j] * jobs[j][2] >= thresholds[level[j]] - EPS):
                queues[level[j]].remove(j)
                level[j] += 1
                queues[level[j]].append(j)
        for j in [j for j in running if executed[j] >= jobs[j][1] - EPS]:  # completions
            out[j]["segments"].append((out[j].pop("_start"), t))
            out[j]["finish"] = t
            del running[j]
            queues[level[j]].remove(j)
        while nxt < n and jobs[order[nxt]][0] <= t:  # arrivals
            queues[0].append(order[nxt])
            nxt += 1
        free, started, stopped = gpus, 0, 0
        for q in queues:  # greedy fill in queue order
            for j in q:
                if jobs[j][2] <= free:
                    free -= jobs[j][2]
                    if j not in running:
                        running[j] = t
                        out[j]["_start"] = t
                        started += 1
                elif j in running:
                    out[j]["segments"].append((out[j].pop("_start"), t))
                    del running[j]
                    stopped += 1
        crowded += stopped > 0 and started > 1
        for q in queues:  # waiting jobs move behind the running ones, in their order
            q.sort(key=lambda j: j not in running)
    return out, crowded
