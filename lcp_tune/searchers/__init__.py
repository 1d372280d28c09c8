"""Searcher registry: name -> factory(space, seed, metric, mode) -> a Ray Tune Searcher.

Every searcher evaluates the space's warm starts first (identity, then uniform pruning), is
seeded, and is a plain Ray Tune `Searcher` that can be driven without Tune (see testing.py).
Heavy imports (optuna) happen inside the factories.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..registry import Registry

SEARCHERS: Registry[Callable[..., object]] = Registry("searcher")


def list_searchers() -> list[str]:
    return SEARCHERS.names()


@dataclass(frozen=True)
class SearchSpace:
    """Box bounds per flat key (c000, c001, ...) plus the points to evaluate first."""

    keys: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    warm_starts: tuple[dict, ...] = ()

    @classmethod
    def box(cls, num: int, bound: float, warm_starts: list[list[float]] = ()) -> "SearchSpace":
        """[-bound, bound] per key, widened where a warm start lies outside (it must be reachable)."""
        return cls.from_bounds([-bound] * num, [bound] * num, warm_starts)

    @classmethod
    def from_bounds(cls, low: list[float], high: list[float], warm_starts: list[list[float]] = ()) -> "SearchSpace":
        """Per-key bounds, widened where a warm start lies outside (it must be reachable)."""
        num = len(low)
        keys = tuple(f"c{i:03d}" for i in range(num))
        low, high = [float(v) for v in low], [float(v) for v in high]
        for point in warm_starts:
            for i, v in enumerate(point):
                low[i], high[i] = min(low[i], float(v)), max(high[i], float(v))
        points = tuple({k: float(v) for k, v in zip(keys, p)} for p in warm_starts)
        return cls(keys, tuple(low), tuple(high), points)


def make_searcher(name: str, space: SearchSpace, seed: int, metric: str = "val_loss", mode: str = "min"):
    """Build the registered searcher `name` over `space`."""
    return SEARCHERS.get(name)(space=space, seed=seed, metric=metric, mode=mode)


from . import optuna_samplers  # noqa: E402,F401  (registers tpe, cmaes, gp, random)
from . import native  # noqa: E402,F401  (registers evolution, regression)
