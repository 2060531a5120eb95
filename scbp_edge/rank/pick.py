"""Which networks get the expensive steps (second-stage proxy, fine-tuning).

A user asks "I need X ms, or X times faster: the most accurate model that
meets it".  So with a latency budget the picks are the candidates inside it,
best proxy first, plus a few just outside it (the proxy is imprecise and one
short fine-tune can reorder neighbours).  Without a budget they are spread
along the measured front.  Picks are networks: a network is fine-tuned once
in fp32, then quantized for each of its precisions.  The seed's network is
never picked: it is always fine-tuned, as the fair reference.
"""

from __future__ import annotations

from scbp_edge.rank import Constraints, has_latency_budget, pareto_front, within_latency_budget
from scbp_edge.records import RankingPoint

MARGIN_SLACK = 1.15  # "just outside": at most 15 % short of the budget


def _networks(ranked: list[RankingPoint], k: int, why: str, taken: dict[str, str]) -> None:
    """Add the networks of ``ranked`` in order until ``k`` new ones were taken."""
    added = 0
    for p in ranked:
        if added >= k:
            return
        if p.network not in taken:
            taken[p.network] = f"{why}, proxy {p.proxy_accuracy:.2f} as {p.precision}"
            added += 1


def pick_for_training(points: list[RankingPoint], k: int, cons: Constraints, margin: int = 2) -> dict[str, str]:
    """Networks to fine-tune -> why each was picked (at most ``k``, plus ``margin`` with a budget)."""
    seed_nets = {p.network for p in points if p.reference == "seed"}
    pts = [p for p in points if p.network not in seed_nets and p.proxy_accuracy is not None]
    taken: dict[str, str] = {}
    if k <= 0 or not pts:
        return taken
    by_proxy = sorted(pts, key=lambda p: (-p.proxy_accuracy, p.p50_ms))
    if has_latency_budget(cons):
        inside = [p for p in by_proxy if within_latency_budget(cons, p)]
        near = [p for p in by_proxy if not within_latency_budget(cons, p)
                and within_latency_budget(cons, p, MARGIN_SLACK)]
        _networks(inside, k, "inside the budget", taken)
        _networks(near, margin, "just outside the budget", taken)
        return taken
    front = set(pareto_front(pts, (("proxy_accuracy", "max"), ("p50_ms", "min"))))
    on = sorted((p for p in pts if p.id in front), key=lambda p: p.p50_ms)
    seen: list[RankingPoint] = []
    for p in on:  # one point per network (its fastest precision on the front)
        if p.network not in {q.network for q in seen}:
            seen.append(p)
    if len(seen) > k:
        step = (len(seen) - 1) / max(1, k - 1)
        seen = [seen[round(i * step)] for i in range(k)]
    _networks(seen, k, "spread along the front", taken)
    return taken
