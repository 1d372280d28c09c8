"""The Ray Tune search itself: a new Tuner, or Ray's own restore of an interrupted one."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from lcp_tune.config import ExperimentConfig
from lcp_tune.searchers import SearchSpace, make_searcher

from .cluster import concurrency
from .progress import ProgressCallback, ProgressPrinter, printing_to
from .schedulers import SCHEDULERS
from .trial import METRIC, MODE, build_trainable


def run_search(config: ExperimentConfig, storage: str, base_state: dict, space: SearchSpace,
               cache_dir: Path, run_key: str, warm_names: tuple[str, ...] = ("identity", "uniform"),
               log: Callable[[str], None] = print, resume: bool = False,
               data_factories: dict[str, Callable[..., Any]] | None = None) -> tuple[Any, float]:
    """Run (or resume) the Ray Tune search; return Ray's ResultGrid and the wall time.

    A search stopped by Ctrl-C returns too (Tune saves its state and stops): the caller tells
    an interrupted search from a finished one by its trials' statuses.
    """
    from ray import tune

    search = config.search
    # snapshot often (the trial cache covers the last seconds); 0 races its own file sync
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "2"
    trainable = build_trainable(config, space, base_state, cache_dir, run_key, warm_names, data_factories)
    path = f"{storage.rstrip('/')}/search"   # as Experiment.search_path() reads it back
    done_before = 0
    if resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        done_before = _count_finished(tuner)
        log(f"resuming the search in {path}: {done_before} of {search.num_samples} trials already finished")
    else:
        tuner = _new_tuner(config, space, trainable, storage)
    start = time.time()
    log(f"searching: {search.num_samples} trials with {search.searcher} ({search.scheduler}), "
        f"{concurrency(config)} at a time, {search.tau_hat} steps each")
    with printing_to(ProgressPrinter(search.num_samples, log, done_before)):
        results = tuner.fit()
    return results, time.time() - start


def _new_tuner(config: ExperimentConfig, space: SearchSpace, trainable, storage: str):
    from ray import tune

    search = config.search
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE, num_samples=search.num_samples,
            search_alg=make_searcher(search.searcher, space, config.seed, METRIC, MODE),
            scheduler=SCHEDULERS.get(search.scheduler)(config),
            max_concurrent_trials=concurrency(config), reuse_actors=True,
            trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name="search", storage_path=storage, verbose=0, callbacks=[ProgressCallback()],
            failure_config=tune.FailureConfig(max_failures=search.max_failures)))


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _count_finished(tuner) -> int:
    try:
        return sum(1 for r in tuner.get_results() if r.error is None and r.metrics)
    except Exception:  # a state with no finished trial has no results table yet
        return 0
