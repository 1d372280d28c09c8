"""TPE, CMA-ES, GP and random search: Optuna samplers driven through Ray Tune's OptunaSearch.

The sampler is seeded (not OptunaSearch(seed=...), which Ray ignores when a sampler is given);
warm starts are enqueued with points_to_evaluate so they run before anything sampled.
"""
from __future__ import annotations

from .registry import SEARCHERS
from .space import SearchSpace


def _optuna_search(sampler, space: SearchSpace, metric: str, mode: str):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {k: optuna.distributions.FloatDistribution(lo, hi)
             for k, lo, hi in zip(space.keys, space.low, space.high)}
    return OptunaSearch(space=dists, metric=metric, mode=mode, sampler=sampler,
                        points_to_evaluate=[dict(p) for p in space.warm_starts] or None)


@SEARCHERS.register("tpe")
def tpe(space: SearchSpace, seed: int, metric: str = "val_loss", mode: str = "min"):
    """Multivariate TPE: the compensations of neighbouring groups interact."""
    import optuna
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8)
    return _optuna_search(sampler, space, metric, mode)


@SEARCHERS.register("cmaes")
def cmaes(space: SearchSpace, seed: int, metric: str = "val_loss", mode: str = "min"):
    """CMA-ES (needs the cmaes package); starts from the centre of the box."""
    import optuna
    sampler = optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return _optuna_search(sampler, space, metric, mode)


@SEARCHERS.register("gp")
def gp(space: SearchSpace, seed: int, metric: str = "val_loss", mode: str = "min"):
    """Gaussian-process Bayesian optimisation; its cost grows with the number of trials."""
    import optuna
    sampler = optuna.samplers.GPSampler(seed=seed)
    return _optuna_search(sampler, space, metric, mode)


@SEARCHERS.register("random")
def random_search(space: SearchSpace, seed: int, metric: str = "val_loss", mode: str = "min"):
    """Uniform random compensations: the reference every other searcher must beat."""
    import optuna
    sampler = optuna.samplers.RandomSampler(seed=seed)
    return _optuna_search(sampler, space, metric, mode)
