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
    warm_starts: tuple[dict, ...] = ()

    @classmethod
    def box(cls, num: int, bound: float, warm_starts: Sequence[Sequence[float]] = ()) -> "SearchSpace":
        """[-bound, bound] per key, widened where a warm start lies outside (it must be reachable)."""
        return cls.from_bounds([-bound] * num, [bound] * num, warm_starts)

    @classmethod
    def from_bounds(cls, low: Sequence[float], high: Sequence[float],
                    warm_starts: Sequence[Sequence[float]] = ()) -> "SearchSpace":
        """Per-key bounds, widened where a warm start lies outside (it must be reachable)."""
        num = len(low)
        keys = tuple(f"c{i:03d}" for i in range(num))
        low, high = [float(v) for v in low], [float(v) for v in high]
        for point in warm_starts:
            for i, v in enumerate(point):
                low[i], high[i] = min(low[i], float(v)), max(high[i], float(v))
        points = tuple({k: float(v) for k, v in zip(keys, p)} for p in warm_starts)
        return cls(keys, tuple(low), tuple(high), points)

    def vector(self, config: dict) -> np.ndarray:
        """The compensation vector of a flat config {c000: v, ...}."""
        return np.array([config[k] for k in self.keys], dtype=float)


def experiment_space(pruner: "Pruner", config: "ExperimentConfig",
                     warm_starts: Sequence[np.ndarray]) -> SearchSpace:
    """Box bounds in the dimensionless units of the form: shifts +-bound, log-scales +-scale_bound."""
    groups = len(pruner.group_names)
    low: list[float] = []
    high: list[float] = []
    for prefix in pruner.form.param_prefixes:
        b = config.search.scale_bound if prefix == "log_alpha" else config.search.bound
        low += [-b] * groups
        high += [b] * groups
    return SearchSpace.from_bounds(low, high, warm_starts)
