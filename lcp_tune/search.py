"""Ray Tune glue: the trial function, the Tuner, progress lines and the search outcome.

Base weights reach every trial through the object store once (tune.with_parameters); each
worker process builds its CandidateEvaluator once and reuses it (reuse_actors=True), since
starting a process and importing torch costs ~3 s against ~0.1 s per reused trial.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .candidate import CandidateEvaluator
from .config import ExperimentConfig
from .registry import LcpTuneError
from .searchers import SearchSpace, make_searcher

METRIC, MODE = "val_loss", "min"
_EVALUATORS: dict[str, CandidateEvaluator] = {}   # per worker process, keyed by experiment


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its compensation vector: small and picklable."""

    config: ExperimentConfig
    keys: tuple[str, ...]
    key: str                     # identifies the experiment in a worker's evaluator cache


def lcp_trial(config: dict, context: TrialContext, base_state: dict) -> None:
    """One Ray Tune trial: evaluate the compensation in `config`, reporting after each chunk."""
    import torch
    from ray import tune

    torch.set_num_threads(max(1, context.config.search.cpus_per_trial))
    evaluator = _EVALUATORS.get(context.key)
    if evaluator is None:
        _EVALUATORS.clear()   # one experiment per worker at a time: free the previous one
        evaluator = _EVALUATORS[context.key] = CandidateEvaluator(context.config, base_state)
    vector = np.array([config[k] for k in context.keys], dtype=float)
    evaluator.evaluate(vector, report=lambda result: tune.report(result))


@dataclass
class SearchOutcome:
    """What the driver keeps of a finished search."""

    best_vector: np.ndarray
    best_objective: float
    warm_objectives: dict[str, float]
    num_trials: int
    num_errors: int
    wall_time_s: float
    table: object = field(repr=False)   # pandas DataFrame of the trials' last results


class ProgressPrinter:
    """Prints one compact line per finished trial: count, result, best so far, time left."""

    def __init__(self, total: int, log: Callable[[str], None]):
        self.total, self.log = total, log
        self.done, self.best, self.start = 0, float("inf"), time.time()

    def callback(self):
        from ray import tune
        printer = self

        class _Callback(tune.Callback):
            def on_trial_complete(self, iteration, trials, trial, **info):
                printer.trial_done(trial.trial_id, trial.last_result or {})

            def on_trial_error(self, iteration, trials, trial, **info):
                printer.done += 1
                printer.log(f"  [{printer.done}/{printer.total}] trial {trial.trial_id} FAILED")

        return _Callback()

    def trial_done(self, trial_id: str, result: dict) -> None:
        self.done += 1
        loss = result.get(METRIC, float("nan"))
        if loss == loss:
            self.best = min(self.best, loss)
        elapsed = time.time() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        self.log(f"  [{self.done:>3}/{self.total}] val loss {loss:.4f}  acc {result.get('val_acc', 0):.3f}  "
                 f"flops {result.get('flops_ratio', 0):.3f}  | best {self.best:.4f} | "
                 f"{elapsed:.0f}s elapsed, ~{eta:.0f}s left")


def init_ray(num_cpus: Optional[int] = None) -> None:
    """Start a local Ray instance (dashboard off, loopback only) unless one is running."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    # the legacy reporter honours verbose=0; the new engine prints wide boxes regardless
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
             configure_logging=True, logging_level="ERROR", _node_ip_address="127.0.0.1")


def run_search(config: ExperimentConfig, storage: Path, base_state: dict, space: SearchSpace,
               warm_names: tuple[str, ...] = ("identity", "uniform"),
               log: Callable[[str], None] = print) -> SearchOutcome:
    """Run the Ray Tune search and return the best compensation vector and the trial table."""
    import ray
    from ray import tune

    search = config.search
    total_cpus = int(ray.cluster_resources().get("CPU", 1))
    concurrency = search.max_concurrent or max(1, total_cpus // max(1, search.cpus_per_trial))
    context = TrialContext(config, space.keys, f"{config.arch}-{config.data}-{id(space)}-{time.time()}")
    trainable = tune.with_resources(
        tune.with_parameters(lcp_trial, context=context, base_state=base_state),
        {"cpu": search.cpus_per_trial})
    printer = ProgressPrinter(search.num_samples, log)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE, num_samples=search.num_samples,
            search_alg=make_searcher(search.searcher, space, config.seed, METRIC, MODE),
            max_concurrent_trials=concurrency, reuse_actors=True,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
        run_config=tune.RunConfig(
            name="search", storage_path=str(Path(storage).resolve()), verbose=0,
            callbacks=[printer.callback()], failure_config=tune.FailureConfig(max_failures=1)))
    start = time.time()
    log(f"searching: {search.num_samples} trials with {search.searcher}, {concurrency} at a time, "
        f"{search.tau_hat} steps each")
    results = tuner.fit()
    return summarize(results, space, warm_names, time.time() - start)


def summarize(results, space: SearchSpace, warm_names: tuple[str, ...], wall: float) -> SearchOutcome:
    """Best vector, warm-start objectives and the trial table from a ResultGrid."""
    table = results.get_dataframe()
    finished = [r for r in results if r.error is None and r.metrics and METRIC in r.metrics]
    if not finished:
        raise LcpTuneError(f"all {len(results)} search trials failed; see the trial logs under the experiment's search/ folder")
    best = min(finished, key=lambda r: r.metrics[METRIC])
    best_vector = np.array([best.config[k] for k in space.keys], dtype=float)
    warm = {}
    for name, point in zip(warm_names, space.warm_starts):
        target = np.array([point[k] for k in space.keys])
        for r in finished:
            if np.allclose([r.config[k] for k in space.keys], target):
                warm[name] = float(r.metrics[METRIC])
                break
    return SearchOutcome(best_vector, float(best.metrics[METRIC]), warm, len(results),
                         results.num_errors, wall, table)
