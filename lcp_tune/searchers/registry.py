"""Searcher registry: name -> factory(space, seed, metric, mode) -> a Ray Tune Searcher.

Every searcher evaluates the space's warm starts first (identity, then uniform pruning), is
seeded, and is a plain Ray Tune `Searcher` that can be driven without Tune (see
lcp_tune.testing). Heavy imports (optuna, ray) happen inside the factories, so listing the
names for the CLI imports neither.
"""
from __future__ import annotations

from typing import Callable

from ..registry import Registry
from .space import SearchSpace

SEARCHERS: Registry[Callable[..., object]] = Registry("searcher")


def list_searchers() -> list[str]:
    return SEARCHERS.names()


def make_searcher(name: str, space: SearchSpace, seed: int, metric: str = "val_loss", mode: str = "min"):
    """Build the registered searcher `name` over `space`."""
    return SEARCHERS.get(name)(space=space, seed=seed, metric=metric, mode=mode)
