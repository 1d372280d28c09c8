"""Layer compensation: a search vector -> per-group transform of the channel metrics.

Search variables are dimensionless so one set of bounds fits every network: shifts are in units
of sigma, the std of *all* channel metrics (a group's own std is too small to move it past its
neighbours), and scales are exp(u). The zero vector is the identity: plain global ranking.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..registry import Registry
from .errors import PruningError


@dataclass(frozen=True)
class Compensation:
    """One compensation form: `params_per_group` search variables per group."""

    name: str
    params_per_group: int
    transform: Callable[[np.ndarray, np.ndarray, float], np.ndarray]  # (metric, params, sigma)
    param_prefixes: tuple[str, ...]

    def identity(self, num_groups: int) -> np.ndarray:
        return np.zeros(num_groups * self.params_per_group)

    def apply(self, metrics: list[np.ndarray], vector: np.ndarray, sigma: float) -> list[np.ndarray]:
        """Compensated scores per group; `vector` is laid out parameter-major (all beta, ...)."""
        vector = np.asarray(vector, dtype=float)
        expected = len(metrics) * self.params_per_group
        if vector.shape != (expected,):
            raise PruningError(f"compensation vector for form {self.name!r} must have {expected} "
                               f"values ({self.params_per_group} per group), got {vector.size}")
        per_group = vector.reshape(self.params_per_group, len(metrics)).T
        return [self.transform(m, p, sigma) for m, p in zip(metrics, per_group)]

    def param_names(self, group_names: list[str]) -> list[str]:
        return [f"{prefix}:{g}" for prefix in self.param_prefixes for g in group_names]


COMPENSATIONS: Registry[Compensation] = Registry("compensation form")


def list_compensations() -> list[str]:
    return COMPENSATIONS.names()


COMPENSATIONS.register("additive", Compensation(
    "additive", 1, lambda m, p, sigma: m + p[0] * sigma, ("beta",)))
# LeGR: s = alpha * m + kappa, alpha = exp(u) > 0 keeps the order inside a group.
COMPENSATIONS.register("affine", Compensation(
    "affine", 2, lambda m, p, sigma: np.exp(p[0]) * m + p[1] * sigma, ("log_alpha", "kappa")))


def pooled_scale(metrics: list[np.ndarray]) -> float:
    """sigma: the std of all channel metrics of the network (1.0 if they are all equal)."""
    sigma = float(np.std(np.concatenate(metrics)))
    return sigma if sigma > 0 else 1.0
