"""What the driver keeps of a finished search: the best compensation and the warm starts' scores."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from lcp_tune.errors import LcpTuneError
from lcp_tune.searchers import SearchSpace

from .trial import METRIC, TRIAL_ERROR


@dataclass
class SearchOutcome:
    """The best vector among complete trials, the warm starts' objectives, counts and time."""

    best_vector: np.ndarray
    best_objective: float
    warm_objectives: dict[str, float]
    num_trials: int
    num_errors: int
    wall_time_s: float
    race: Optional[Any] = None                           # the race's RaceOutcome, where one ran
    scored: list = field(default_factory=list)           # (vector, objective) of every complete trial


def summarize(results, space: SearchSpace, warm_names: tuple[str, ...], wall: float) -> SearchOutcome:
    """Best vector, warm-start objectives and counts from a ResultGrid.

    The best is taken among trials that ran all their steps (a trial stopped early by ASHA
    reports a loss from fewer steps, not comparable), unless none did.
    """
    finished = [r for r in results if r.error is None and r.metrics and not r.metrics.get(TRIAL_ERROR)
                and math.isfinite(r.metrics.get(METRIC, math.nan))]
    failed = results.num_errors + sum(1 for r in results if r.metrics and r.metrics.get(TRIAL_ERROR))
    if not finished:
        first = next((r.metrics for r in results if r.metrics and r.metrics.get(TRIAL_ERROR)), {})
        detail = f": {first[TRIAL_ERROR]} (log: {first.get('error_log')})" if first else ""
        raise LcpTuneError(f"all {len(results)} search trials failed{detail}"[:400])
    full = max(r.metrics.get("step", 0) for r in finished)
    complete = [r for r in finished if r.metrics.get("step", 0) == full]
    best = min(complete, key=lambda r: r.metrics[METRIC])
    warm = {}
    for name, point in zip(warm_names, space.warm_starts):
        target = space.vector(point)
        for r in finished:
            if np.allclose(space.vector(r.config), target):
                warm[name] = float(r.metrics[METRIC])
                break
    scored = [(space.vector(r.config), float(r.metrics[METRIC])) for r in complete]
    return SearchOutcome(space.vector(best.config), float(best.metrics[METRIC]), warm, len(results), failed, wall,
                         scored=scored)
