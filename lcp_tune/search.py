"""Ray Tune glue: the trial function, the Tuner (new or restored), progress lines, the outcome.

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

from .candidate import CandidateEvaluator, report_chunks
from .config import ExperimentConfig
from .registry import LcpTuneError, Registry
from .searchers import SearchSpace, make_searcher
from .trial_cache import TrialCache

METRIC, MODE = "val_loss", "min"
_EVALUATORS: dict[str, CandidateEvaluator] = {}   # per worker process, keyed by experiment
SCHEDULERS: Registry[Callable] = Registry("scheduler")


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its compensation vector: small and picklable."""

    config: ExperimentConfig
    keys: tuple[str, ...]
    key: str                     # identifies the experiment in a worker's evaluator cache
    cache_dir: str               # finished evaluations, shared by every run of this experiment


def lcp_trial(config: dict, context: TrialContext, base_state: dict) -> None:
    """One Ray Tune trial: evaluate the compensation in `config`, reporting after each chunk."""
    import torch
    from ray import tune

    torch.set_num_threads(max(1, context.config.search.cpus_per_trial))
    vector = np.array([config[k] for k in context.keys], dtype=float)
    cache = TrialCache(context.cache_dir, context.key)
    recorded = cache.get(vector)
    if recorded is not None:          # finished before an interruption: replay, never redo
        for result in recorded:
            tune.report({**result, "replayed": True})
        return
    evaluator = _EVALUATORS.get(context.key)
    if evaluator is None:
        _EVALUATORS.clear()   # one experiment per worker at a time: free the previous one
        evaluator = _EVALUATORS[context.key] = CandidateEvaluator(context.config, base_state)
    reports: list[dict] = []

    def report(result: dict) -> None:
        reports.append(result)
        tune.report({**result, "replayed": False})

    evaluator.evaluate(vector, report=report)
    cache.put(vector, reports)


def init_ray(num_cpus: Optional[int] = None, address: Optional[str] = None, dashboard: bool = False,
             log: Callable[[str], None] = print, dashboard_port: int = 8265) -> None:
    """Connect to a cluster at `address`, or start a local Ray on 127.0.0.1.

    Local Ray keeps its dashboard off unless asked; Ray 2.60 turns token authentication on, and
    the dashboard then refuses requests without the token.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    # the legacy reporter honours verbose=0; the new engine prints wide boxes regardless
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if address:
        _connect(address)
        log(f"connected to the Ray cluster at {address}: {_describe(ray.cluster_resources())}")
        return
    context = ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=dashboard,
                       dashboard_host="127.0.0.1", dashboard_port=dashboard_port, log_to_driver=False, configure_logging=True,
                       logging_level="ERROR", _node_ip_address="127.0.0.1")
    if dashboard:
        log(f"Ray dashboard: http://{context.dashboard_url}  (token authentication is on: the token is in "
            f"~/.ray/auth_token, or run `ray get-auth-token`; the browser asks for it)")


def check_reachable(address: str) -> None:
    """Fail in seconds, in one line, when nothing listens at host:port ("auto" is left to Ray)."""
    import socket

    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise LcpTuneError(f"cannot reach a Ray cluster at --address {address} ({exc}); "
                           f"start one with `ray start --head` or check host and port") from None


def _connect(address: str) -> None:
    """ray.init(address=...) with a fast, one-line failure when the cluster cannot be reached."""
    import ray

    check_reachable(address)
    # `ray start` in 2.60 turns token authentication on; a client must say it uses tokens
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if "RAY_AUTH_TOKEN" in os.environ or token.is_file():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LcpTuneError(f"cannot connect to the Ray cluster at --address {address}: {message[:200]}") from None


def _describe(resources: dict) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in sorted(resources.items()) if k in ("CPU", "GPU"))


def check_cluster(config: ExperimentConfig) -> None:
    """Refuse resources the cluster does not have, before any trial waits forever for them."""
    import ray

    resources = ray.cluster_resources()
    if config.search.gpus_per_trial > 0 and resources.get("GPU", 0) <= 0:
        raise LcpTuneError(f"--gpus-per-trial {config.search.gpus_per_trial:g} asks for GPUs but the Ray "
                           f"cluster has none; use --gpus-per-trial 0")
    if config.search.cpus_per_trial > resources.get("CPU", 0):
        raise LcpTuneError(f"--cpus-per-trial {config.search.cpus_per_trial} is more than the "
                           f"{resources.get('CPU', 0):g} CPUs of the Ray cluster")


@SCHEDULERS.register("fifo")
def _fifo(config: ExperimentConfig):
    return None


@SCHEDULERS.register("asha")
def _asha(config: ExperimentConfig):
    """Successive halving over the trial's reports (one per `report_every` steps)."""
    from ray.tune.schedulers import ASHAScheduler

    rungs = len(report_chunks(config.search.tau_hat, config.search.report_every))
    return ASHAScheduler(time_attr="training_iteration", max_t=max(1, rungs), grace_period=1,
                         reduction_factor=2)


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
    experiment: object = None           # the experiment folder, set by the workflow


class ProgressPrinter:
    """One compact line per finished trial: done / running, result, best so far, time left."""

    def __init__(self, total: int, log: Callable[[str], None], already_done: int = 0):
        self.total, self.log = total, log
        self.done, self.start = already_done, time.time()
        self.best, self.best_flops, self.new = float("inf"), float("nan"), 0

    def callback(self):
        from ray import tune
        printer = self

        class _Callback(tune.Callback):
            def on_trial_complete(self, iteration, trials, trial, **info):
                running = sum(t.status == "RUNNING" for t in trials)
                printer.trial_done(trial.last_result or {}, running)

            def on_trial_error(self, iteration, trials, trial, **info):
                printer.done += 1
                printer.log(f"  [{printer.done:>3}/{printer.total}] trial {trial.trial_id} FAILED "
                            f"(see {trial.local_path or 'its folder'})")

        return _Callback()

    def trial_done(self, result: dict, running: int = 0) -> None:
        self.done += 1
        self.new += 1
        loss = result.get(METRIC, float("nan"))
        if loss == loss and loss < self.best:
            self.best, self.best_flops = loss, result.get("flops_ratio", float("nan"))
        elapsed = time.time() - self.start
        eta = elapsed / self.new * max(0, self.total - self.done)
        early = "" if result.get("step", 0) >= result.get("tau_hat", 0) else " (stopped early)"
        self.log(f"  [{self.done:>3}/{self.total} done, {running} running] val loss {loss:.4f} "
                 f"acc {result.get('val_acc', 0):.3f} flops {result.get('flops_ratio', 0):.3f}{early} | "
                 f"best {self.best:.4f} at flops {self.best_flops:.3f} | {elapsed:.0f}s, ~{eta:.0f}s left")


def build_trainable(config: ExperimentConfig, space: SearchSpace, base_state: dict, cache_dir: Path,
                    run_key: str):
    from ray import tune

    context = TrialContext(config, space.keys, run_key, str(cache_dir))
    resources = {"cpu": config.search.cpus_per_trial}
    if config.search.gpus_per_trial:
        resources["gpu"] = config.search.gpus_per_trial
    return tune.with_resources(tune.with_parameters(lcp_trial, context=context, base_state=base_state),
                               resources)


def concurrency(config: ExperimentConfig) -> int:
    """Trials at once: what the cluster's CPUs (and GPUs) fit, unless the user capped it."""
    import ray

    if config.search.max_concurrent:
        return config.search.max_concurrent
    resources = ray.cluster_resources()
    fit = int(resources.get("CPU", 1) // max(1, config.search.cpus_per_trial))
    if config.search.gpus_per_trial:
        fit = min(fit, int(resources.get("GPU", 0) / config.search.gpus_per_trial + 1e-9))
    return max(1, fit)


def run_search(config: ExperimentConfig, storage: str, base_state: dict, space: SearchSpace,
               cache_dir: Path, run_key: str, warm_names: tuple[str, ...] = ("identity", "uniform"),
               log: Callable[[str], None] = print, resume: bool = False) -> SearchOutcome:
    """Run (or resume) the Ray Tune search; return the best compensation and the trial table."""
    from ray import tune

    search = config.search
    # snapshot often (the trial cache covers the last seconds); 0 races its own file sync
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "2"
    trainable = build_trainable(config, space, base_state, cache_dir, run_key)
    path = f"{storage.rstrip('/')}/search"
    done_before = 0
    if resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        done_before = _count_finished(tuner)
        log(f"resuming the search in {path}: {done_before} of {search.num_samples} trials already finished")
    else:
        tuner = _new_tuner(config, space, trainable, storage)
    printer = ProgressPrinter(search.num_samples, log, done_before)
    # set after construction so new and restored tuners both print (Tuner.restore takes none)
    tuner._local_tuner.get_run_config().callbacks = [printer.callback()]
    start = time.time()
    log(f"searching: {search.num_samples} trials with {search.searcher} ({search.scheduler}), "
        f"{concurrency(config)} at a time, {search.tau_hat} steps each")
    results = tuner.fit()
    return summarize(results, space, warm_names, time.time() - start)


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
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
        run_config=tune.RunConfig(
            name="search", storage_path=storage, verbose=0,
            failure_config=tune.FailureConfig(max_failures=search.max_failures)))


def _count_finished(tuner) -> int:
    try:
        return sum(1 for r in tuner.get_results() if r.error is None and r.metrics)
    except Exception:  # a state with no finished trial has no results table yet
        return 0


def summarize(results, space: SearchSpace, warm_names: tuple[str, ...], wall: float) -> SearchOutcome:
    """Best vector, warm-start objectives and the trial table from a ResultGrid.

    The best is taken among trials that ran all their steps (a trial stopped early by ASHA
    reports a loss from fewer steps, not comparable), unless none did.
    """
    table = results.get_dataframe()
    finished = [r for r in results if r.error is None and r.metrics and METRIC in r.metrics]
    if not finished:
        raise LcpTuneError(f"all {len(results)} search trials failed; see the trial logs under the "
                           f"experiment's search/ folder")
    full = max(r.metrics.get("step", 0) for r in finished)
    complete = [r for r in finished if r.metrics.get("step", 0) == full]
    best = min(complete, key=lambda r: r.metrics[METRIC])
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
