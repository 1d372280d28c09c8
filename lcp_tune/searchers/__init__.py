"""Searchers: Optuna's samplers (tpe, cmaes, gp, random), regularized evolution and a regression
surrogate, all plain Ray Tune Searchers over one SearchSpace that evaluate the warm starts first.

Importing the package registers every searcher; the classes themselves import Ray and Optuna
only when a factory is called.
"""
from .registry import SEARCHERS, list_searchers, make_searcher
from .space import SearchSpace, experiment_space
from . import optuna_samplers  # noqa: F401  (registers tpe, cmaes, gp, random)
from . import native  # noqa: F401  (registers evolution, regression)

__all__ = ["SEARCHERS", "SearchSpace", "experiment_space", "list_searchers", "make_searcher"]
