"""The search space: box bounds per flat key (c000, c001, ...) plus the warm starts.

Flat keys give OptunaSearch one distribution each and pandas one column each; the trial
rebuilds the vector from them. `experiment_space` derives the box of one experiment from its
Pruner (how many groups, which compensation form) and config (the bounds).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..config import ExperimentConfig
    from ..pruning import Pruner


@dataclass(frozen=True)
class SearchSpace:
    """Box bounds per flat key (c000, c001, ...) plus the points to evaluate first."""

    keys: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    warm_starts: tuple[dict, ...] = ()   # in the searched coordinates (relative to the centre)
    center: tuple[float, ...] = ()       # the compensation at the box's origin; () = all zeros

    @classmethod
    def box(cls, num: int, bound: float, warm_starts: Sequence[Sequence[float]] = ()) -> "SearchSpace":
        """[-bound, bound] per key, widened where a warm start lies outside (it must be reachable)."""
        return cls.from_bounds([-bound] * num, [bound] * num, warm_starts)

    @classmethod
    def from_bounds(cls, low: Sequence[float], high: Sequence[float],
                    warm_starts: Sequence[Sequence[float]] = (),
                    center: Sequence[float] | None = None) -> "SearchSpace":
        """Per-key bounds around `center`, widened where a warm start lies outside (it must be
        reachable). Warm starts are compensations; the searchers see them relative to `center`."""
        num = len(low)
        keys = tuple(f"c{i:03d}" for i in range(num))
        low, high = [float(v) for v in low], [float(v) for v in high]
        origin = np.zeros(num) if center is None else np.asarray(center, dtype=float)
        warm_starts = [np.asarray(p, dtype=float) - origin for p in warm_starts]
        for point in warm_starts:
            for i, v in enumerate(point):
                low[i], high[i] = min(low[i], float(v)), max(high[i], float(v))
        points = tuple({k: float(v) for k, v in zip(keys, p)} for p in warm_starts)
        return cls(keys, tuple(low), tuple(high), points, () if center is None else tuple(map(float, origin)))

    def vector(self, config: dict) -> np.ndarray:
        """The compensation vector of a flat config {c000: v, ...}: the centre plus the values."""
        values = np.array([config[k] for k in self.keys], dtype=float)
        return values + np.asarray(self.center) if self.center else values


CENTERS = ("global", "uniform")


def experiment_space(pruner: "Pruner", config: "ExperimentConfig",
                     warm_starts: Sequence[np.ndarray]) -> SearchSpace:
    """Box bounds in the dimensionless units of the form: shifts +-bound, log-scales +-scale_bound,
    around plain global ranking (the papers') or around uniform pruning (`search.center`)."""
    groups = len(pruner.group_names)
    low: list[float] = []
    high: list[float] = []
    for prefix in pruner.form.param_prefixes:
        b = config.search.scale_bound if prefix == "log_alpha" else config.search.bound
        low += [-b] * groups
        high += [b] * groups
    center = None
    if config.search.center == "uniform":
        center = pruner.uniform(config.prune.budget, config.prune.resource)
    return SearchSpace.from_bounds(low, high, warm_starts, center)
