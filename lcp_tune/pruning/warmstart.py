"""Uniform pruning expressed as an additive compensation (a warm start for every search).

Uniform pruning (every group keeps the same fraction) is a strong baseline and a point of the
additive search space: shift each group so one shared threshold T cuts it at its uniform keep
count. The greedy then keeps everything above T and must stop there, so the group whose next
channel costs the most is placed just below T: if that channel does not fit, nothing else is
tried. Midpoints between neighbouring scores alone missed uniform by 2-7 channels.
"""
from __future__ import annotations

import numpy as np

from .planner import group_steps, min_keep, round_up
from .resources import CostModel


def uniform_keep(cost: CostModel, budget: float, resource: str = "flops", safeguard: float = 0.1,
                 round_to: int = 1) -> np.ndarray:
    """Keep counts of uniform pruning: the largest common fraction p that meets the budget."""
    sizes = cost.structure.group_sizes
    steps = group_steps(cost.structure, round_to)
    floor = min_keep(sizes, safeguard, steps)
    limit = budget * cost.base[resource]

    def keep(p: float) -> np.ndarray:
        return round_up(np.maximum(floor, np.floor(p * sizes + 1e-9).astype(np.int64)), sizes, steps)

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if cost.cost(keep(mid), resource) <= limit:
            lo = mid
        else:
            hi = mid
    return keep(lo)


def uniform_shifts(metrics: list[np.ndarray], keep: np.ndarray, cost: CostModel,
                   resource: str = "flops") -> np.ndarray:
    """Additive shifts (in metric units) that make global ranking reproduce `keep`."""
    sorted_desc = [np.sort(m)[::-1] for m in metrics]
    lowest_kept = np.array([s[k - 1] for s, k in zip(sorted_desc, keep)])
    highest_dropped = np.array([s[k] if k < len(s) else -np.inf for s, k in zip(sorted_desc, keep)])
    gaps = lowest_kept - highest_dropped
    finite = gaps[np.isfinite(gaps) & (gaps > 0)]
    eps = (finite.min() / 4) if finite.size else 1e-6
    # the group whose next channel adds most cost goes first below the threshold
    step = np.eye(len(keep), dtype=np.int64)
    marginal = cost.cost(np.minimum(keep + step, cost.structure.group_sizes), resource) - cost.cost(keep, resource)
    marginal[~np.isfinite(highest_dropped)] = -np.inf
    first = int(np.argmax(marginal))
    threshold = float(np.median(np.concatenate(metrics)))
    shifts = np.where(np.isfinite(highest_dropped), threshold - highest_dropped - 2 * eps,
                      threshold - lowest_kept + eps)
    if np.isfinite(highest_dropped[first]):
        shifts[first] = threshold - highest_dropped[first] - eps
    # groups with tied boundary scores cannot be cut exactly; the midpoint is the best we can do
    tied = np.isfinite(gaps) & (gaps <= 2 * eps)
    shifts[tied] = threshold - (lowest_kept[tied] + highest_dropped[tied]) / 2
    return shifts
