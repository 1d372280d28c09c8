"""Threshold planner: compensated scores + budget -> a frozen Plan of kept channels.

The papers remove the globally lowest-ranked filter until the budget holds, re-measuring cost
each time (quadratic). Cost is monotone in how many top-ranked channels are kept, so we sort
once and binary-search that count: O(N log N) for the sort plus O(log N) vectorised cost
evaluations. The result is exactly the greedy's, ties broken by a stable sort.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from ..errors import LcpTuneError
from ..rules import check_value
from .errors import PruningError, UnreachableBudgetError
from .resources import CostModel


@dataclass(frozen=True)
class Plan:
    """Which channels of every group survive, and what the pruned network will cost."""

    group_names: tuple[str, ...]
    group_sizes: tuple[int, ...]
    kept: tuple[tuple[int, ...], ...]   # sorted kept channel indices per group
    flops: int
    params: int
    base_flops: int
    base_params: int
    budget: float
    resource: str
    latency: Optional[float] = None        # predicted seconds per batch, where a latency model is attached
    base_latency: Optional[float] = None

    @property
    def latency_ratio(self) -> Optional[float]:
        return None if self.latency is None or not self.base_latency else self.latency / self.base_latency

    @property
    def keep_counts(self) -> np.ndarray:
        return np.array([len(k) for k in self.kept], dtype=np.int64)

    @property
    def flops_ratio(self) -> float:
        return self.flops / self.base_flops

    @property
    def params_ratio(self) -> float:
        return self.params / self.base_params

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kept"] = [list(k) for k in self.kept]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        fields = dict(d)
        fields["group_names"] = tuple(fields["group_names"])
        fields["group_sizes"] = tuple(int(n) for n in fields["group_sizes"])
        fields["kept"] = tuple(tuple(int(i) for i in k) for k in fields["kept"])
        return cls(**fields)


def group_steps(structure, round_to: int = 1) -> np.ndarray:
    """Granularity of every group's keep count: `round_to`, and a multiple of its partitions.

    A group that reaches a grouped conv with P groups keeps P channels at a time (one per
    conv-group); with round_to r it keeps lcm(P, r) at a time.
    """
    parts = np.array([g.partitions for g in structure.groups], dtype=np.int64)
    return np.lcm(parts, max(1, int(round_to)))


def min_keep(sizes: np.ndarray, safeguard: float, round_to=1) -> np.ndarray:
    """Smallest keep count per group: max(1, ceil(safeguard * n)), rounded up to `round_to`."""
    floor = np.maximum(1, np.ceil(safeguard * sizes - 1e-9)).astype(np.int64)
    return round_up(floor, sizes, round_to)


def round_up(keep: np.ndarray, sizes: np.ndarray, round_to) -> np.ndarray:
    """Round keep counts up to multiples of `round_to` (an int or one step per group), capped at n."""
    if np.all(np.asarray(round_to) <= 1):
        return keep
    return np.minimum(sizes, -(-keep // round_to) * round_to)


def check_budget(budget: float) -> None:
    """The budget rule of lcp_tune.rules, raised as a PruningError for callers of the core."""
    _check("prune.budget", budget, "budget")


def _check(key: str, value, name: str) -> None:
    try:
        check_value(key, value, name)
    except LcpTuneError as exc:
        raise PruningError(str(exc)) from None


def plan_keep(scores: list[np.ndarray], cost: CostModel, budget: float, resource: str = "flops",
              safeguard: float = 0.1, round_to: int = 1, fill: bool = True) -> Plan:
    """Keep the globally top-scored channels until `budget` x base cost is reached.

    The papers stop at the first channel that does not fit, which can leave a tenth of the
    budget unspent; with `fill` (the default) the next-ranked channels that still fit are kept
    too (`fill_budget`), so every candidate and method is compared at (nearly) the same cost.
    Raises UnreachableBudgetError naming the smallest reachable fraction when even the
    safeguard's minimum widths cost more than the budget.
    """
    check_budget(budget)
    _check("prune.safeguard", safeguard, "safeguard")
    _check("prune.round_to", round_to, "round_to")
    sizes = cost.structure.group_sizes
    steps = group_steps(cost.structure, round_to)
    floor = min_keep(sizes, safeguard, steps)
    limit = budget * cost.base[resource] * (1 + 1e-12)
    smallest = float(cost.cost(floor, resource))
    if smallest > limit:
        raise UnreachableBudgetError(
            f"budget {budget:g} of the base {resource} is unreachable with safeguard {safeguard:g}: "
            f"the smallest reachable is {smallest / cost.base[resource]:.4f}")
    order = np.argsort(-np.concatenate(scores), kind="stable")
    ranked_groups = np.repeat(np.arange(len(scores)), sizes)[order]
    j = largest_fitting_prefix(ranked_groups, cost, floor, steps, limit, resource)
    keep = keep_counts(ranked_groups, j, floor, sizes, steps)
    if fill:
        keep = fill_budget(keep, ranked_groups, cost, steps, limit, resource)
    return make_plan(scores, keep, cost, budget, resource)


def fill_budget(keep: np.ndarray, ranked_groups: np.ndarray, cost: CostModel, steps: np.ndarray,
                limit: float, resource: str) -> np.ndarray:
    """Spend what the threshold left: keep each group's next channel, in global rank order,
    while it fits; a group whose next step does not fit is closed for good.

    Closing is exact because cost only grows with every keep count, so a step that does not fit
    now never fits later. Only keep counts matter (make_plan keeps each group's top-scored
    channels), so the candidates are one per group: its next unkept channel, whose rank decides
    the order. Cost: one evaluation per kept step or closed group, no pass over all channels.
    """
    import heapq

    sizes = cost.structure.group_sizes
    keep = keep.copy()
    # positions (global ranks) of every group's channels, best first within the group
    by_group = np.argsort(ranked_groups, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    heads = [(int(by_group[starts[g] + keep[g]]), g) for g in range(len(sizes)) if keep[g] < sizes[g]]
    heapq.heapify(heads)
    while heads:
        _, g = heapq.heappop(heads)
        trial = keep.copy()
        trial[g] = min(sizes[g], (keep[g] // steps[g] + 1) * steps[g])
        new = float(cost.cost(trial, resource))
        if new > limit:
            continue   # closed: this group's next step never fits again
        keep = trial
        if keep[g] < sizes[g]:
            heapq.heappush(heads, (int(by_group[starts[g] + keep[g]]), g))
    return keep


def keep_counts(ranked_groups: np.ndarray, j: int, floor: np.ndarray, sizes: np.ndarray,
                steps: np.ndarray) -> np.ndarray:
    """Keep counts when the `j` globally top-ranked channels survive (floor and steps applied)."""
    counts = np.bincount(ranked_groups[:j], minlength=len(sizes))
    return round_up(np.maximum(floor, counts), sizes, steps)


def largest_fitting_prefix(ranked_groups: np.ndarray, cost: CostModel, floor: np.ndarray,
                           steps: np.ndarray, limit: float, resource: str) -> int:
    """Binary search for the most top-ranked channels whose network fits `limit`.

    Cost is monotone in the prefix length, so this equals the papers' greedy (drop the lowest
    channel until the budget holds) in O(log N) cost evaluations instead of O(N).
    """
    sizes = cost.structure.group_sizes
    lo, hi = 0, len(ranked_groups)       # invariant: prefix lo fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost.cost(keep_counts(ranked_groups, mid, floor, sizes, steps), resource) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def make_plan(scores: list[np.ndarray], keep: np.ndarray, cost: CostModel, budget: float,
              resource: str) -> Plan:
    """Freeze keep counts into a Plan keeping each group's top-scored channels.

    In a partitioned group (one feeding a grouped conv) every partition keeps its own top
    keep / partitions channels.
    """
    structure = cost.structure
    kept = []
    for group, s, k in zip(structure.groups, scores, keep):
        ranked = np.argsort(-s, kind="stable")
        if group.partitions > 1:
            per_part = int(k) // group.partitions
            labels = group.part_of[ranked]
            ranked = np.concatenate([ranked[labels == p][:per_part] for p in range(group.partitions)])
        else:
            ranked = ranked[:k]
        kept.append(tuple(np.sort(ranked).tolist()))
    latency = (float(cost.latency.predict(keep)), cost.base["latency"]) if cost.latency is not None else (None, None)
    return Plan(tuple(structure.group_names), tuple(int(n) for n in structure.group_sizes), tuple(kept),
                int(round(float(cost.flops(keep)))), int(round(float(cost.params(keep)))),
                int(round(cost.base["flops"])), int(round(cost.base["params"])), float(budget), resource,
                *latency)
