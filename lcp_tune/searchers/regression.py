"""A surrogate-regression searcher: fit a cheap model on finished trials, propose its minimiser.

The surrogate is ridge regression on [x, x**2] (a separable quadratic response surface), with
the ridge penalty picked by leave-one-out cross-validation (scikit-learn's RidgeCV). Why:
- a search has tens of trials in 10-60 dimensions; 2d + 1 shrunk coefficients can be fitted
  from that few points, while a random forest needs many more to split usefully;
- each group's shift has a natural optimum (shift too low and the group is over-pruned, too
  high and others pay for it): a per-coordinate parabola models that U-shape and, unlike trees,
  can place the minimum between or beyond the points seen so far;
- fitting is deterministic and takes milliseconds, so save/restore stays exact.
Group interactions are not modelled; the candidates are drawn around the best points found, so
the model only has to be right locally (a trust region), and a share of uniform candidates
lets it jump elsewhere when it predicts better there.

Outlying losses (a collapsed network) are clipped at the upper Tukey fence before fitting so one
catastrophe does not flatten the parabola. Pending trials enter the fit with the worst loss
seen ("constant liar", Ginsbourger et al. 2010), so concurrent suggestions spread out instead
of piling onto one predicted minimum.

Example::

    from lcp_tune.searchers import SearchSpace, make_searcher
    space = SearchSpace.box(4, 2.0, [[0.0] * 4])
    searcher = make_searcher("regression", space, seed=0)
    config = searcher.suggest("t0")           # the warm start
    searcher.on_trial_complete("t0", {"val_loss": 1.0})
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .space import SearchSpace
from .base import VectorSearcher

_RADII = np.array([0.03, 0.1, 0.2, 0.4])   # local step stds, fractions of the box width


class SurrogateRegression(VectorSearcher):
    """Random points first, then the minimiser of a ridge-quadratic surrogate (module docstring).

    Args:
        space, seed, metric, mode, max_trials: as in VectorSearcher.
        num_initial: random points after the warm starts before the surrogate is trusted;
            None = max(4, dims // 2), enough for a first ridge fit to point somewhere useful.
        num_candidates: candidates scored per suggestion; scoring is one matrix product, so
            thousands cost about a millisecond.
        num_parents: how many of the best points the local candidates are drawn around.
        uniform_share: share of candidates drawn uniformly from the whole box (exploration).
    """

    def __init__(self, space: SearchSpace, seed: int, metric: str = "val_loss", mode: str = "min",
                 max_trials: Optional[int] = None, num_initial: Optional[int] = None,
                 num_candidates: int = 2000, num_parents: int = 3, uniform_share: float = 0.2):
        super().__init__(space, seed, metric, mode, max_trials)
        self.num_initial = num_initial if num_initial is not None else max(4, len(space.keys) // 2)
        self.num_candidates = num_candidates
        self.num_parents = num_parents
        self.uniform_share = uniform_share

    def _propose(self) -> np.ndarray:
        """Uniform while the initial design is running, then the surrogate's best candidate."""
        warm = len(self.space.warm_starts)
        if self.num_suggested < warm + self.num_initial or len(self.history) < 2:
            return self.uniform()
        x, y = self._training_set()
        model = self._fit(x, y)
        candidates = self._candidates()
        scores = model.predict(self._features(candidates))
        return candidates[int(np.argmin(scores))]

    def _training_set(self) -> tuple[np.ndarray, np.ndarray]:
        """Finished trials plus pending ones at the worst loss (constant liar), outliers clipped."""
        x = [v for v, _ in self.history]
        y = np.array([loss for _, loss in self.history])
        q1, q3 = np.percentile(y, [25, 75])
        y = np.minimum(y, q3 + 1.5 * (q3 - q1))
        x += list(self.pending.values())
        y = np.concatenate([y, np.full(len(self.pending), y.max())])
        return np.array(x), y

    def _fit(self, x: np.ndarray, y: np.ndarray):
        from sklearn.linear_model import RidgeCV

        alphas = np.logspace(-3, 3, 13)
        return RidgeCV(alphas=alphas).fit(self._features(x), y)

    def _features(self, x: np.ndarray) -> np.ndarray:
        """[z, z**2] with z the position scaled to [-1, 1] in the box, so one penalty fits all."""
        z = 2.0 * (x - self.low) / np.where(self.width > 0, self.width, 1.0) - 1.0
        return np.hstack([z, z * z])

    def _candidates(self) -> np.ndarray:
        """Gaussian steps of several radii around the best points, plus uniform points."""
        n_uniform = int(self.uniform_share * self.num_candidates)
        n_local = self.num_candidates - n_uniform
        best = sorted(self.history, key=lambda item: item[1])[: self.num_parents]
        parents = np.array([v for v, _ in best])
        centres = parents[self.rng.integers(len(parents), size=n_local)]
        radii = _RADII[self.rng.integers(len(_RADII), size=n_local)][:, None]
        local = centres + self.rng.normal(size=centres.shape) * radii * self.width
        return np.clip(np.vstack([local, self.uniform(n_uniform)]), self.low, self.high)
