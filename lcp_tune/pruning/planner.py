"""Threshold planner: compensated scores + budget -> a frozen Plan of kept channels.

The papers remove the globally lowest-ranked filter until the budget holds, re-measuring cost
each time (quadratic). Cost is monotone in how many top-ranked channels are kept, so we sort
once and binary-search that count: O(N log N) for the sort plus O(log N) vectorised cost
evaluations. The result is exactly the greedy's, ties broken by a stable sort.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

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


def min_keep(sizes: np.ndarray, safeguard: float, round_to: int = 1) -> np.ndarray:
    """Smallest keep count per group: max(1, ceil(safeguard * n)), rounded up to `round_to`."""
    floor = np.maximum(1, np.ceil(safeguard * sizes - 1e-9)).astype(np.int64)
    return round_up(floor, sizes, round_to)


def round_up(keep: np.ndarray, sizes: np.ndarray, round_to: int) -> np.ndarray:
    """Round keep counts up to multiples of `round_to` (hardware-friendly widths), capped at n."""
    if round_to <= 1:
        return keep
    return np.minimum(sizes, -(-keep // round_to) * round_to)


def check_budget(budget: float) -> None:
    if not (0.0 < budget < 1.0) or math.isnan(budget):
        raise PruningError(f"budget must be a fraction of the base cost in (0, 1), got {budget}")


def plan_keep(scores: list[np.ndarray], cost: CostModel, budget: float, resource: str = "flops",
              safeguard: float = 0.1, round_to: int = 1) -> Plan:
    """Keep the globally top-scored channels until `budget` x base cost is reached.

    Raises UnreachableBudgetError naming the smallest reachable fraction when even the
    safeguard's minimum widths cost more than the budget.
    """
    check_budget(budget)
    if not 0.0 <= safeguard < 1.0:
        raise PruningError(f"safeguard must be in [0, 1), got {safeguard}")
    sizes = cost.structure.group_sizes
    floor = min_keep(sizes, safeguard, round_to)
    limit = budget * cost.base[resource]
    smallest = float(cost.cost(floor, resource))
    if smallest > limit * (1 + 1e-12):
        raise UnreachableBudgetError(
            f"budget {budget:g} of the base {resource} is unreachable with safeguard {safeguard:g}: "
            f"the smallest reachable is {smallest / cost.base[resource]:.4f}")
    flat = np.concatenate(scores)
    group_of = np.repeat(np.arange(len(scores)), sizes)
    ranked_groups = group_of[np.argsort(-flat, kind="stable")]

    def keep_at(j: int) -> np.ndarray:
        counts = np.bincount(ranked_groups[:j], minlength=len(sizes))
        return round_up(np.maximum(floor, counts), sizes, round_to)

    lo, hi = 0, len(flat)        # invariant: keep_at(lo) fits; find the largest j that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost.cost(keep_at(mid), resource) <= limit * (1 + 1e-12):
            lo = mid
        else:
            hi = mid - 1
    keep = keep_at(lo)
    return make_plan(scores, keep, cost, budget, resource)


def make_plan(scores: list[np.ndarray], keep: np.ndarray, cost: CostModel, budget: float,
              resource: str) -> Plan:
    """Freeze keep counts into a Plan keeping each group's top-scored channels."""
    kept = tuple(tuple(sorted(np.argsort(-s, kind="stable")[:k].tolist())) for s, k in zip(scores, keep))
    structure = cost.structure
    return Plan(tuple(structure.group_names), tuple(int(n) for n in structure.group_sizes), kept,
                int(round(float(cost.flops(keep)))), int(round(float(cost.params(keep)))),
                int(round(cost.base["flops"])), int(round(cost.base["params"])), float(budget), resource)
