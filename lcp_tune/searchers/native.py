"""Registers the searchers written in lcp-tune: `evolution` and `regression`.

The classes subclass Ray Tune's Searcher, so they are imported inside the factories: listing
the searchers (e.g. for the CLI's choices) must not import Ray.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .registry import SEARCHERS
from .space import SearchSpace

if TYPE_CHECKING:
    from .evolution import RegularizedEvolution
    from .regression import SurrogateRegression


@SEARCHERS.register("evolution")
def evolution(space: SearchSpace, seed: int, metric: str = "val_loss",
              mode: str = "min") -> "RegularizedEvolution":
    """Regularized (aging) evolution as in LeGR: tournament parent, mutate a few groups."""
    from .evolution import RegularizedEvolution
    return RegularizedEvolution(space, seed, metric, mode)


@SEARCHERS.register("regression")
def regression(space: SearchSpace, seed: int, metric: str = "val_loss",
               mode: str = "min") -> "SurrogateRegression":
    """A ridge-quadratic surrogate fitted on finished trials proposes the next candidate."""
    from .regression import SurrogateRegression
    return SurrogateRegression(space, seed, metric, mode)
