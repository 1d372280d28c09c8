"""Regularized evolution as in LeGR (Chin et al., CVPR 2020), as a Ray Tune Searcher.

LeGR learns its per-layer affine transforms with the aging evolution of Real et al. (2019):
keep a population of the most recently evaluated candidates, pick the best of a random
tournament sample as the parent, mutate a fraction of its layers with Gaussian noise whose
step shrinks over the search, and retire the oldest member once the population is full. Aging
(rather than retiring the worst) keeps a lucky noisy evaluation from ruling forever, which
matters here: a trial's validation loss after a short recovery is noisy.

Like LeGR, which starts from the identity transform, the search grows from the warm starts
(identity, then uniform pruning): until a result arrives, parents are the warm starts
themselves; only without any warm start is the first parent drawn uniformly from the box.

Example::

    from lcp_tune.searchers import SearchSpace, make_searcher
    space = SearchSpace.box(4, 2.0, [[0.0] * 4])
    searcher = make_searcher("evolution", space, seed=0)
    config = searcher.suggest("t0")           # the warm start
    searcher.on_trial_complete("t0", {"val_loss": 1.0})
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .space import SearchSpace
from .base import VectorSearcher


class RegularizedEvolution(VectorSearcher):
    """Aging evolution over the compensation vector (see the module docstring).

    Args:
        space, seed, metric, mode, max_trials: as in VectorSearcher.
        population_size: members kept (LeGR uses 64 for hundreds of trials; 16 suits the
            default 32-trial search, and with fewer trials the population simply never fills).
        tournament_size: members sampled per tournament; None = half the population. LeGR
            samples a quarter (16 of 64), but over a 32-trial budget that is too little
            selection pressure: on the contract's 12-dim objective (lcp_tune.testing), half the
            population with mutation_fraction 0.4 reached a median best / warm-start ratio of
            0.31-0.35 after 32 trials (20-30 seeds), a quarter with 0.2 reached 0.58, no better
            than random search with 40 trials (0.57); at 40 dims these defaults matched CMA-ES.
        mutation_fraction: share of the groups (at least one) whose value is mutated; a part,
            not all, so a child stays close to a good parent and good allocations are refined.
        step_size: initial noise std as a fraction of each coordinate's box width.
        horizon: mutations over which the step shrinks linearly to 20% of `step_size`, as
            LeGR's 1 - g / (1.25 G); afterwards it stays there.
    """

    def __init__(self, space: SearchSpace, seed: int, metric: str = "val_loss", mode: str = "min",
                 max_trials: Optional[int] = None, population_size: int = 16,
                 tournament_size: Optional[int] = None, mutation_fraction: float = 0.4,
                 step_size: float = 0.2, horizon: int = 32):
        super().__init__(space, seed, metric, mode, max_trials)
        self.population_size = population_size
        self.tournament_size = tournament_size or max(2, population_size // 2)
        self.mutation_fraction = mutation_fraction
        self.step_size = step_size
        self.horizon = horizon
        self.population: list[tuple[np.ndarray, float]] = []   # oldest first
        self.num_mutations = 0

    def _observe(self, vector: np.ndarray, loss: float) -> None:
        """Add the child; the oldest member retires once the population is full (aging)."""
        self.population.append((vector, loss))
        if len(self.population) > self.population_size:
            self.population.pop(0)

    def _propose(self) -> np.ndarray:
        """A mutated copy of the tournament winner."""
        parent = self._parent()
        if parent is None:
            return self.uniform()
        return self._mutate(parent)

    def _parent(self) -> Optional[np.ndarray]:
        """Best of a random sample of the population, or a warm start before any result."""
        if not self.population:
            warm = self.space.warm_starts
            if not warm:
                return None
            point = warm[self.rng.integers(len(warm))]
            return np.array([point[k] for k in self.space.keys], dtype=float)
        size = min(self.tournament_size, len(self.population))
        sample = self.rng.choice(len(self.population), size=size, replace=False)
        best = min(sample, key=lambda i: self.population[i][1])
        return self.population[best][0]

    def _mutate(self, parent: np.ndarray) -> np.ndarray:
        """Gaussian noise on a random `mutation_fraction` of the coordinates, shrinking step."""
        dims = len(parent)
        count = max(1, int(round(self.mutation_fraction * dims)))
        chosen = self.rng.choice(dims, size=count, replace=False)
        progress = min(1.0, self.num_mutations / max(1, self.horizon))
        sigma = self.step_size * (1.0 - 0.8 * progress) * self.width[chosen]
        child = parent.copy()
        child[chosen] += self.rng.normal(0.0, 1.0, size=count) * sigma
        self.num_mutations += 1
        return child

    def _get_extra(self) -> dict:
        return {"population": [(v.tolist(), loss) for v, loss in self.population],
                "num_mutations": self.num_mutations}

    def _set_extra(self, extra: dict) -> None:
        self.population = [(np.asarray(v, dtype=float), loss) for v, loss in extra["population"]]
        self.num_mutations = extra["num_mutations"]
