"""Why a decision was taken: the explanation every ``start`` decision carries.

- the policy, the job's rank in its queue when the pass began and why it ranks there
  (LAS level and attained service, predicted length, age);
- the alternatives weighed: the jobs that rank ahead and still wait, each with the
  reason it did not start (the same capacity test the pass made);
- the placer's reason: the chosen node(s), what is left free on them (best-fit
  residual), and the cluster's fragmentation before and after;
- for a policy that can say more (``Policy.explain``, e.g. the learned policy's action
  probabilities), what it says.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from ..core.jobstate import JobState
from ..feasibility import fits_now
from ..job import WHOLE_GPU

if TYPE_CHECKING:
    from .engine import Engine

ALTERNATIVES = 3  # jobs ranked ahead that are listed


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def why_not_now(engine: Engine, js: JobState) -> str:
    """One line: why a waiting job cannot start on the cluster as it is now."""
    st = engine.core.state
    if fits_now(st, js.req):
        return "fits now; the policy ranks others first"
    job = js.job
    if job.num_gpus:
        allowed = st.up & st.type_masks[js.req.types_key]
        best = int(st.whole_free[allowed].max(initial=0))
        return (f"does not fit: needs {job.num_gpus} GPU(s), the best live node of an allowed "
                f"type has {best} free")
    return "does not fit: no live node has its CPU and memory free"


def explain_start(engine: Engine, js: JobState, placement) -> dict:
    core, policy = engine.core, engine.policy
    now = core.backend.now()
    waiting = core.waiting
    try:
        key = (*policy.queue_key(js), js.idx)
        ahead = bisect_left(waiting._items, key)
    except TypeError:  # keys that do not compare with the stored ones
        ahead = 0
    ranked_ahead = waiting.first(min(ahead, ALTERNATIVES))
    rank = ahead + 1
    why = {"predicted_s": round(js.predicted, 3), "age_s": round(now - js.submit, 3),
           "attained_gpu_s": round(js.attained, 3)}
    queue_of = getattr(policy, "queue_of", None)  # las and las-fcfs
    level = queue_of(js) if queue_of is not None else None
    if level is not None:
        why["las_level"] = int(level)
    if js.preemptions:
        why["resumed_after_preemptions"] = js.preemptions
    st = core.state
    used = [n for n, *_ in placement]
    after = st.fragmentation()
    before = st.without([placement]).fragmentation()
    nodes = [{"node": engine.node_names[n], "gpus_free_after": int(st.whole_free[n]),
              "share_free_after": round(float(st.gpu_free[n].clip(min=0).sum()) / WHOLE_GPU, 3)}
             for n in used]
    placer = policy.placer.name
    names = ", ".join(engine.node_names[n] for n in used) or "no GPU node"
    residual = ", ".join(f"{x['gpus_free_after']} idle GPU(s) left on {x['node']}" for x in nodes)
    out = {
        "policy": policy.label,
        "rank": rank,
        "queue_length": len(waiting) + 1,
        "why": why,
        "alternatives": [{"job_id": a.job.job_id, "reason": why_not_now(engine, a)}
                         for a in ranked_ahead],
        "placer": {"name": placer, "nodes": nodes,
                   "fragmentation_before": round(before, 4), "fragmentation_after": round(after, 4),
                   "reason": f"{placer}: {residual}" if residual else placer},
        "message": (f"{policy.label}: ranked {_ordinal(rank)} of {len(waiting) + 1} waiting"
                    + (f" (LAS level {why['las_level']})" if "las_level" in why else "")
                    + f", predicted {js.predicted:,.0f} s; placed on {names} by {placer}"),
    }
    extra = getattr(policy, "explain", None)
    if extra is not None:
        said = extra(core.ctx, js)
        if said:
            out["model"] = said
    return out
