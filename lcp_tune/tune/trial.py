"""The Ray Tune trial: evaluate one compensation vector and report its validation result(s).

Base weights and the search's decoded subsets (uint8 arrays, read-only and shared by every
trial on a node) reach the trials through the object store once (tune.with_parameters); each
worker process builds its CandidateEvaluator once and reuses it (reuse_actors=True), since
starting a process and importing torch costs ~3 s against ~0.1 s per reused trial.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from lcp_tune.candidate import CandidateEvaluator
from lcp_tune.config import ExperimentConfig
from lcp_tune.data.search_subsets import SearchSubsets
from lcp_tune.errors import LcpTuneError, first_line
from lcp_tune.searchers import SearchSpace
from lcp_tune.store.files import atomic_write
from lcp_tune.trust import trust, trusted

from .trial_cache import TrialCache

METRIC, MODE = "val_loss", "min"
# A trial whose evaluation raised reports this key (the error's line) instead of raising: Tune
# retries raised trials (max_failures), which only helps a lost worker, never a deterministic error.
TRIAL_ERROR = "trial_error"
_EVALUATORS: dict[str, CandidateEvaluator] = {}   # per worker process, keyed by experiment


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its compensation vector: small and picklable."""

    config: ExperimentConfig
    space: SearchSpace           # decodes a trial's flat config into its compensation vector
    key: str                     # identifies the experiment in a worker's evaluator cache
    cache_dir: str               # finished evaluations, shared by every run of this experiment
    warm_starts: tuple[tuple[str, tuple[float, ...]], ...] = ()   # (name, vector): tagged in reports
    # data factories given as Python functions (not importable by name): shipped by value
    data_factories: dict[str, Callable[..., Any]] = field(default_factory=dict)
    trusted: tuple[str, ...] = ()   # module:factory names the user gave: the worker may import them
    latency: Optional[dict] = None  # the driver's latency model (a latency budget): one model on every node


def lcp_trial(config: dict, context: TrialContext, base_state: dict,
              subsets: Optional[SearchSubsets] = None) -> None:
    """One Ray Tune trial: evaluate the compensation in `config`, reporting each validation."""
    import torch
    from ray import tune

    torch.set_num_threads(max(1, context.config.search.cpus_per_trial))
    vector = context.space.vector(config)
    cache = TrialCache(context.cache_dir, context.key)
    recorded = cache.get(vector)
    tag = next((name for name, point in context.warm_starts if np.allclose(point, vector)), "")
    if recorded is not None:          # finished before an interruption: replay, never redo
        for result in recorded:
            tune.report({**result, "replayed": True, "warm_start": tag})
        return
    reports: list[dict] = []

    def report(result: dict) -> None:
        reports.append(result)
        tune.report({**result, "replayed": False, "warm_start": tag})

    try:
        _evaluator(context, base_state, subsets).evaluate(vector, report=report)
    except Exception as exc:   # deterministic (bad data, a bug): reported, never retried
        # val_loss NaN: Tune requires the metric in every result; searchers drop non-finite losses
        tune.report({METRIC: float("nan"), TRIAL_ERROR: _error_line(exc), "error_log": _log_error(context),
                     "replayed": False, "warm_start": tag})
        return
    cache.put(vector, reports)


def _evaluator(context: TrialContext, base_state: dict, subsets: Optional[SearchSubsets]) -> CandidateEvaluator:
    """The worker's evaluator for this experiment, built on its first trial."""
    evaluator = _EVALUATORS.get(context.key)
    if evaluator is None:
        _EVALUATORS.clear()   # one experiment per worker at a time: free the previous one
        trust(context.trusted)
        _register_data_factories(context)
        evaluator = _EVALUATORS[context.key] = CandidateEvaluator(context.config, base_state, subsets=subsets,
                                                                  latency=context.latency)
    return evaluator


def _error_line(exc: Exception) -> str:
    return str(exc) if isinstance(exc, LcpTuneError) else first_line(exc)


def _log_error(context: TrialContext) -> str:
    """Write the traceback to trial_errors/<trial id>.txt in the experiment folder; its path."""
    import traceback

    from ray import tune

    folder = Path(context.cache_dir).parent / "trial_errors"
    path = folder / f"{tune.get_context().get_trial_id()}.txt"
    try:
        atomic_write(path, traceback.format_exc())
    except OSError:
        return ""
    return str(path)


def _register_data_factories(context: TrialContext) -> None:
    from lcp_tune.data.user import register_factory

    for factory in context.data_factories.values():
        register_factory(factory)


def build_trainable(config: ExperimentConfig, space: SearchSpace, base_state: dict, cache_dir: Path,
                    run_key: str, warm_names: tuple[str, ...] = (),
                    data_factories: dict[str, Callable[..., Any]] | None = None,
                    subsets: Optional[SearchSubsets] = None, latency: Optional[dict] = None):
    """lcp_trial with its context, the base weights and the decoded subsets bound, and the
    resources of one trial."""
    from ray import tune

    warm = tuple((name, tuple(space.vector(point))) for name, point in zip(warm_names, space.warm_starts))
    context = TrialContext(config, space, run_key, str(cache_dir), warm, dict(data_factories or {}), trusted(),
                           latency)
    resources = {"cpu": config.search.cpus_per_trial}
    if config.search.gpus_per_trial:
        resources["gpu"] = config.search.gpus_per_trial
    return tune.with_resources(tune.with_parameters(lcp_trial, context=context, base_state=base_state,
                                                    subsets=subsets),
                               resources)
