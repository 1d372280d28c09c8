"""The Ray Tune search itself: a new Tuner, or Ray's own restore of an interrupted one."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

from lcp_tune.config import ExperimentConfig
from lcp_tune.data.search_subsets import SearchSubsets
from lcp_tune.errors import LcpTuneError, first_line
from lcp_tune.searchers import SearchSpace, make_searcher
from lcp_tune.store.signing import require_verified

from .cluster import concurrency
from .progress import ProgressCallback, ProgressPrinter, SigningCallback, printing_to, signing
from .schedulers import SCHEDULERS
from .trial import METRIC, MODE, build_trainable


def run_search(config: ExperimentConfig, storage: str, base_state: dict, space: SearchSpace,
               cache_dir: Path, run_key: str, warm_names: tuple[str, ...] = ("identity", "uniform"),
               log: Callable[[str], None] = print, resume: bool = False,
               data_factories: dict[str, Callable[..., Any]] | None = None,
               subsets: Optional[SearchSubsets] = None, latency: Optional[dict] = None) -> tuple[Any, float]:
    """Run (or resume) the Ray Tune search; return Ray's ResultGrid and the wall time.

    A search stopped by Ctrl-C returns too (Tune saves its state and stops): the caller tells
    an interrupted search from a finished one by its trials' statuses.
    """

    search = config.search
    # snapshot often (the trial cache covers the last seconds); 0 races its own file sync
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "2"
    trainable = build_trainable(config, space, base_state, cache_dir, run_key, warm_names, data_factories, subsets,
                                latency)
    path = f"{storage.rstrip('/')}/search"   # as Experiment.search_path() reads it back
    done_before = 0
    if resume and _started(path):
        tuner = _restore(path, trainable)
        done_before = _count_finished(tuner)
        log(f"resuming the search in {path}: {done_before} of {search.num_samples} trials already finished")
    else:
        tuner = _new_tuner(config, space, trainable, storage)
    start = time.time()
    log(f"searching: {search.num_samples} trials with {search.searcher} ({search.scheduler}), "
        f"{concurrency(config)} at a time, {search.tau_hat} steps each")
    with printing_to(ProgressPrinter(search.num_samples, log, done_before)), signing(path):
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
            name="search", storage_path=storage, verbose=0, callbacks=[ProgressCallback(), SigningCallback()],
            failure_config=tune.FailureConfig(max_failures=search.max_failures)))


def _started(path: str) -> bool:
    """Whether Ray Tune got as far as writing anything of the search at `path`."""
    fs, root = _filesystem(path)
    from pyarrow.fs import FileSelector

    try:
        return any(True for _ in fs.get_file_info(FileSelector(root, allow_not_found=True)))
    except OSError:
        return False


def _restore(path: str, trainable):
    """Ray's restore, refused in one line when its state is missing or damaged: a resume must
    never quietly start a new search beside the finished trials."""
    from ray import tune

    check_restorable(path)
    try:
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    except Exception as exc:   # Ray raises many kinds here; the message is what matters
        raise _cannot_resume(path, first_line(exc)) from None


def check_restorable(path: str) -> None:
    """Refuse, before any work, a search whose Ray Tune state is unsigned, missing or damaged."""
    if _started(path):
        require_verified(path, "cannot resume")   # first: a damaged or newer live file is replaced by its signed copy
        problem = _state_problem(path)
        if problem is not None:
            raise _cannot_resume(path, problem)


def _cannot_resume(path: str, problem: str) -> LcpTuneError:
    return LcpTuneError(f"cannot resume the search in {path}: Ray Tune's state {problem}")


def _state_problem(path: str) -> Optional[str]:
    """None if the newest experiment_state file and tuner.pkl are there and the state parses."""
    from pyarrow.fs import FileSelector

    fs, root = _filesystem(path)
    names = sorted(info.base_name for info in fs.get_file_info(FileSelector(root, allow_not_found=True)))
    if "tuner.pkl" not in names:
        return "is missing (no tuner.pkl)"
    states = [n for n in names if n.startswith("experiment_state-") and n.endswith(".json")]
    if not states:
        return "is missing (no experiment_state file)"
    try:
        with fs.open_input_stream(f"{root}/{states[-1]}") as f:
            data = json.loads(f.read())   # plain JSON: nothing in it is decoded here
        if not isinstance(data.get("trial_data"), list):
            return f"{states[-1]} holds no trial list"
    except (OSError, ValueError, UnicodeDecodeError, AttributeError) as exc:
        return f"{states[-1]} is damaged ({type(exc).__name__})"
    return None


def _filesystem(path: str):
    import pyarrow.fs

    if "://" in path:
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), path


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _count_finished(tuner) -> int:
    try:
        return sum(1 for r in tuner.get_results() if r.error is None and r.metrics)
    except Exception:  # a state with no finished trial has no results table yet
        return 0
