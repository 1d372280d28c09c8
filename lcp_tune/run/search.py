"""The LCP workflow: base model -> Ray Tune search -> prune to budget -> full fine-tune -> report.

Besides the learned compensation, the two baselines the search starts from (plain global
ranking and uniform pruning) are fine-tuned the same way, so the report shows what the
search bought. `resume_search_experiment` continues an interrupted one from its folder.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from lcp_tune.candidate import CandidateEvaluator, build_pruner
from lcp_tune.config import ExperimentConfig
from lcp_tune.data import DataSplits, load_experiment_data
from lcp_tune.data.search_subsets import SearchSubsets, search_subsets
from lcp_tune.data.user import registered_factories
from lcp_tune.devices import resolve_device
from lcp_tune.errors import LcpTuneError
from lcp_tune.models import build_model
from lcp_tune.pruning import Plan, Pruner
from lcp_tune.searchers import SearchSpace, experiment_space
from lcp_tune.store.checkpoints import file_hash, load_into, load_state_dict, save_state_dict
from lcp_tune.store.compensation_file import write_compensation
from lcp_tune.store.experiment import (Experiment, check_can_open, check_config_unedited, check_same_run,
                                       new_experiment_path,
                                       open_experiment)
from lcp_tune.store.files import read_json, write_json
from lcp_tune.store.lock import experiment_lock
from lcp_tune.store.pruned_io import save_pruned
from lcp_tune.tune.outcome import summarize
from lcp_tune.tune.trials_table import ERROR, FINISHED, STOPPED, write_trials

from .base_model import obtain_base
from .finetune import finetune_many, finetune_ray_session, recovery_steps, test_accuracy
from .finetune_budgets import BUDGETS_FILE, check_budgets, finetune_budgets, run_budgets
from .interrupts import catching_signals, interrupted
from .latency import LATENCY_FILE, measured_latency, prepare_latency, report_settings, round_to_line
from .report import LABELS, build_report, format_report
from .validate import validate_config

Log = Callable[[str], None]
RACE_FILE = "race.json"   # every race rung's scores, read into trials.parquet
MEASURE_S = 0.1   # timing of each final network for the report, in 3 rounds against the base


@dataclass(frozen=True)
class RunOptions:
    """How to run a search, as opposed to what it is: none of these change its results."""

    address: Optional[str] = None     # an existing Ray cluster ("auto" or "host:port")
    storage: Optional[str] = None     # shared folder or pyarrow URI for Ray Tune's results
    dashboard: bool = False           # start local Ray with its dashboard on 127.0.0.1
    quiet: bool = False               # no per-trial lines, only the final report


def run_search_experiment(config: ExperimentConfig, out: Optional[Path] = None, log: Log = print,
                          options: RunOptions = RunOptions()) -> dict:
    """Run the whole LCP workflow for `config`; returns the report also saved as report.json."""
    validate_config(config)
    resolve_device(config.device)   # a missing GPU is named before any work
    if config.method == "random":
        config = config.replace(**{"search.searcher": "random"})
    out = out or new_experiment_path()
    check_can_open(out, config)   # another run's folder is refused before any work
    with experiment_lock(out, "search"):   # one writer at a time, base training included
        check_can_open(out, config)        # again, now that nothing else writes there
        return _run_locked(config, out, log, options)


def _run_locked(config: ExperimentConfig, out: Path, log: Log, options: RunOptions) -> dict:
    _preflight(options)
    if not options.address:   # a cluster's resources are checked once connected, before the search
        from lcp_tune.tune.distributed_finetune import check_finetune_resources
        check_finetune_resources(config)
    data = load_experiment_data(config)
    base, _ = obtain_base(config, data, _progress_log(log, options))   # a bad checkpoint fails before any folder
    pruner, identity, uniform = _prepare(config, base, data, log)       # so does an unreachable budget
    exp = open_experiment(out, config)
    log(f"experiment folder: {exp.root}")
    if pruner.cost.latency is not None:   # resumes and later fine-tunes plan with this very model
        write_json(exp.root / LATENCY_FILE, pruner.cost.latency.to_dict())
    save_state_dict(base, exp.base_path)
    storage = f"{options.storage.rstrip('/')}/{exp.root.name}" if options.storage else None
    write_json(exp.run_path, {"storage": storage, "search_keys": {}})
    with _as_interruption(exp):
        return _search_and_finish(config, exp, data, base, pruner, identity, uniform, log, options, resume=False)


def resume_search_experiment(folder: Path, log: Log = print, options: RunOptions = RunOptions(),
                             requested: Optional[dict] = None) -> dict:
    """Continue an interrupted search from its folder; finished trials are kept, never rerun.

    `requested` holds settings the user gave alongside --resume; any that differ from the
    folder's own (arch, data, budget, ...) mean the folder belongs to another run.
    """
    _preflight(options)
    if not Path(folder).is_dir():
        raise LcpTuneError(f"--resume {folder}: no such experiment folder")
    with experiment_lock(folder, "search --resume"):
        return _resume_locked(Experiment(Path(folder)), log, options, requested)


def _resume_locked(exp: Experiment, log: Log, options: RunOptions, requested: Optional[dict]) -> dict:
    folder = exp.root
    config = exp.config()
    check_config_unedited(exp, config)   # a hand-edited budget would mix two runs' trials
    check_same_run(folder, config, requested or {})
    if exp.report_path.is_file():
        report = read_json(exp.report_path)
        log(f"the search in {folder} has already finished; its report:")
        log(format_report(report))
        if _budgets_left(exp, config):   # its other budgets were not all fine-tuned before a stop
            with _as_interruption(exp):
                finetune_budgets(exp.root, config.budgets, log, _progress_log(log, options),
                                 resume_hint=_resume_hint(exp))
        return report
    if not exp.base_path.is_file():
        raise LcpTuneError(f"experiment folder {folder} has no base.pt; it was interrupted before the "
                           f"search started: run it again without --resume")
    if config.method in ("lcp", "random"):
        from lcp_tune.tune.tuner import check_restorable
        check_restorable(exp.search_path())   # before any work: a damaged state is never a new search
    data = load_experiment_data(config)
    base = load_into(build_model(config.arch, data.num_classes, data.input_shape[0]),
                     load_state_dict(exp.base_path), str(exp.base_path), config.arch)
    pruner, identity, uniform = _prepare(config, base, data, log, exp.root)
    with _as_interruption(exp):
        return _search_and_finish(config, exp, data, base, pruner, identity, uniform, log, options, resume=True)


@contextmanager
def _as_interruption(exp: Experiment) -> Iterator[None]:
    """Ctrl-C / SIGTERM anywhere in the search or the fine-tunes: one line and how to resume."""
    with catching_signals():
        try:
            yield
        except KeyboardInterrupt:
            raise interrupted("the run", _resume_hint(exp)) from None


def _budgets_left(exp: Experiment, config: ExperimentConfig) -> bool:
    """Whether --budgets has budgets not in budgets.json yet (read before loading any data)."""
    if not config.budgets:
        return False
    path = exp.root / BUDGETS_FILE
    done = {row["budget"] for row in read_json(path)["budgets"]} if path.is_file() else set()
    return not set(config.budgets) <= done


def _resume_hint(exp: Experiment) -> str:
    return f"Continue it with: lcp-tune search --resume {exp.root}"


def _preflight(options: RunOptions) -> None:
    storage = options.storage
    if storage is not None and "://" not in storage and not Path(storage).is_absolute():
        raise LcpTuneError(f"--storage {storage} must be an absolute folder (shared by every node) or a URI "
                           f"such as s3://bucket/path")
    if options.address:
        from lcp_tune.tune.cluster import check_reachable

        check_reachable(options.address)


def _prepare(config: ExperimentConfig, base: torch.nn.Module, data: DataSplits, log: Log,
             folder: Optional[Path] = None):
    """The pruner (with its latency model for a latency budget) and the two warm starts; plans
    identity once so a bad budget fails early."""
    pruner = build_pruner(config, base, data)
    if prepare_latency(pruner, config, log, folder) is not None and config.prune.round_to == "auto":
        log(round_to_line(pruner))
    identity = pruner.identity()
    pruner.plan(identity, config.prune.budget, config.prune.resource)
    check_budgets(pruner, identity, config.budgets, config)   # every --budgets reachable, before any work
    return pruner, identity, pruner.uniform(config.prune.budget, config.prune.resource)


def _search_and_finish(config, exp, data, base, pruner, identity, uniform, log, options, resume):
    """Search (lcp, random) or not (global, uniform), then recover, fine-tune and test."""
    base_test = test_accuracy(base, data, device=config.device)
    log(f"base model: test accuracy {base_test.accuracy:.4f}")
    warm = {"global": identity, "uniform": uniform}
    outcome = None
    # image files: the images every candidate recovers and is scored on, decoded once for all
    subsets = search_subsets(config, data, _progress_log(log, options))
    chosen_metric = None   # the pick's channel metric, where the race chose another one's uniform widths
    if config.method in ("lcp", "random"):
        # random search is the baseline "best of N random compensations": no warm starts
        space = experiment_space(pruner, config, [identity, uniform] if config.method == "lcp" else [])
        outcome = _search(config, exp, base, pruner, space, log, options, resume, max(data.input_shape[1:]), subsets)
        chosen = outcome.best_vector
        if outcome.race is not None:
            chosen, chosen_metric = np.asarray(outcome.race.pick.vector), outcome.race.pick.metric
    else:
        chosen = warm[config.method]
    names = [config.method] + (["global", "uniform"] if config.method == "lcp" and config.baselines else [])
    candidates = {config.method: (chosen, chosen_metric), **{n: (warm[n], None) for n in ("global", "uniform")}}
    recovery, starts = _recover(config, pruner, data, candidates, subsets, keep=names)
    del subsets   # the fine-tunes read the full training split through loaders
    log(f"fine-tuning {', '.join(LABELS[n] for n in names)} ({config.finetune.epochs} epochs each, from the "
        f"candidates as measured after {recovery_steps(config)} recovery steps)")
    vectors = {name: candidates[name][0] for name in names}
    with finetune_ray_session(config, options.address, options.dashboard, log):
        finished = finetune_many(pruner, vectors, config, data, _progress_log(log, options),
                                 exp.root / "finetune", registered_factories(config.data), starts=starts)
    methods = {}
    timing = report_settings(config)
    base_ms = []
    for name in names:
        model, result = finished[name]
        plan = result.pop("plan")
        if name == config.method:
            final = (model, plan)
        result["gap"] = base_test.accuracy - result["test_acc"]
        result.update(recovery[name])
        measured = measured_latency(base, model, data.input_shape, timing, MEASURE_S, rounds=3)
        base_ms.append(measured.pop("base_latency_ms"))
        result.update(measured)   # latency_ms, measured_latency_ratio: paired with the base, round by round
        methods[name] = result
    if outcome is not None:   # the search's own number for its best trial
        methods[config.method]["search_best_objective"] = outcome.best_objective
        if outcome.race is not None:
            methods[config.method]["pick"] = outcome.race.pick.name
    report = build_report(config, base_test.accuracy, methods, outcome, recovery, len(data.test),
                          {"base_latency_ms": float(np.median(base_ms)), "settings": timing.key()})
    report["round_to"] = pruner.round_to   # what every plan kept widths on ("auto" resolved)
    # the final artefacts only once every fine-tune has finished: an interruption leaves none
    pick_pruner = pruner if chosen_metric is None else pruner.with_metric(chosen_metric)
    write_compensation(exp.compensation_path, pick_pruner, chosen, config, file_hash(exp.base_path))
    save_pruned(exp.pruned_dir, *final, config.arch, data.num_classes, data.input_shape)
    write_json(exp.report_path, report)
    log(format_report(report))
    log(f"results: {exp.root}")
    if outcome is not None:
        _write_analysis(exp, log)
    if config.budgets:   # learn once, fine-tune many
        log(f"fine-tuning the learned compensation at budgets {', '.join(f'{b:g}' for b in config.budgets)}")
        run_budgets(exp, config, data, pick_pruner, chosen, config.budgets, log, _progress_log(log, options),
                    _resume_hint(exp), options.address)
        log(f"budgets: {exp.root / BUDGETS_FILE} and {exp.root / 'plots' / 'budgets.png'}")
    return report


def _recover(config: ExperimentConfig, pruner: Pruner, data: DataSplits,
             candidates: dict[str, tuple[np.ndarray, Optional[str]]], subsets: Optional[SearchSubsets] = None,
             keep: Sequence[str] = ()) -> tuple[dict[str, dict], dict[str, tuple[torch.nn.Module, Plan]]]:
    """Each candidate recovered as the pick measured it (`recovery_steps`): its objective, its
    test accuracy right after the recovery and, for the names in `keep`, the recovered network
    and plan the final fine-tune continues.

    Evaluated in this process exactly as a trial does (same seed and batches), so the network
    is the one the search or race measured, re-derived rather than shipped between processes.
    """
    evaluator = CandidateEvaluator(config, data=data, pruner=pruner, subsets=subsets)
    steps = recovery_steps(config)
    out, starts = {}, {}
    for name, (vector, metric) in candidates.items():
        result = evaluator.evaluate(vector, steps=steps, metric=metric)
        model = evaluator.last_model.cpu()
        out[name] = {"search_objective": result["val_loss"], "recovery_steps": steps,
                     "recovery_test_acc": test_accuracy(model, data, device=config.device).accuracy}
        if name in keep:
            starts[name] = (model, evaluator.last_plan)
    return out, starts


def _progress_log(log: Log, options: RunOptions) -> Log:
    return (lambda line: None) if options.quiet else log


def _search(config: ExperimentConfig, exp: Experiment, base: torch.nn.Module, pruner: Pruner,
            space: SearchSpace, log: Log, options: RunOptions, resume: bool, input_side: int,
            subsets: Optional[SearchSubsets] = None):
    """Run the Ray Tune search on a local Ray or the given cluster, then write trials.parquet."""
    from lcp_tune.tune.cluster import check_cluster, ray_session
    from lcp_tune.tune.tuner import run_search

    names = dict(zip(space.keys, pruner.form.param_names(pruner.group_names)))
    write_json(exp.run_path, {**exp.run_record(), "search_keys": names})
    run_key = hashlib.sha256(f"{file_hash(exp.base_path)}{config.to_dict()}".encode()).hexdigest()[:16]
    # ours again after ray.init (which installs its own SIGTERM handler) and after ray.shutdown
    # (which leaves the default one): the fine-tunes that follow must still be interruptions
    with catching_signals(), ray_session(options.address, options.dashboard, log), catching_signals():
        config = _with_trial_gpus(config, input_side, log)
        check_cluster(config)
        # absolute: Ray runs each trial in its own working directory
        results, wall = run_search(config, exp.search_storage(), base.state_dict(), space,
                                   exp.root.resolve() / "trial_cache", run_key, log=_progress_log(log, options),
                                   resume=resume, data_factories=registered_factories(config.data),
                                   subsets=subsets,
                                   latency=pruner.cost.latency.to_dict() if pruner.cost.latency else None)
        table = write_trials(exp)   # the one writer of trials.parquet, from Ray Tune's record of the search
        ended = int(table["status"].isin([FINISHED, STOPPED, ERROR]).sum())
        if ended < config.search.num_samples:   # Tune returns from Ctrl-C as from a finished search
            raise interrupted(f"the search ({ended} of {config.search.num_samples} trials finished)",
                              _resume_hint(exp))
        outcome = summarize(results, space, ("identity", "uniform"), wall)
        if outcome.num_errors:
            log(f"warning: {outcome.num_errors} of {outcome.num_trials} trials failed")
        if config.search.race_steps():
            outcome.race = _race(config, exp, base, pruner, space, outcome, log, options, run_key, subsets)
            write_trials(exp)   # now with the race's rows
    return outcome


def _race(config: ExperimentConfig, exp: Experiment, base: torch.nn.Module, pruner: Pruner, space: SearchSpace,
          outcome, log: Log, options: RunOptions, run_key: str, subsets: Optional[SearchSubsets]):
    """The multi-fidelity pick (tune/race.py): the search's best and the warm starts, raced at
    longer recoveries; its rows go to race.json (and so to trials.parquet)."""
    from lcp_tune.tune.race import Candidate, finalists, race_context, run_race

    warm = []
    if config.method == "lcp":   # random search races its own best only, as it searched
        budget, resource = config.prune.budget, config.prune.resource
        warm = [Candidate("uniform", tuple(pruner.uniform(budget, resource)), None,
                          outcome.warm_objectives.get("uniform", float("nan"))),
                Candidate("global", tuple(pruner.identity()), None, outcome.warm_objectives.get("identity", float("nan")))]
        warm += [Candidate(f"uniform/{metric}", tuple(pruner.with_metric(metric).uniform(budget, resource)), metric)
                 for metric in config.search.race_uniform_metrics if metric != config.prune.metric]
    entrants = finalists(outcome.scored, warm, config.search.race_finalists())
    context = race_context(config, space, exp.root.resolve() / "trial_cache", run_key,
                           registered_factories(config.data),
                           pruner.cost.latency.to_dict() if pruner.cost.latency else None)
    race = run_race(config, exp.search_storage(), context, base.state_dict(), entrants,
                    _progress_log(log, options), subsets)
    write_json(exp.root / RACE_FILE, {"rows": race.rows, "pick": race.pick.name})
    log(f"race: picked {race.pick.name} ({race.wall_time_s:.0f}s)")
    return race


def _with_trial_gpus(config: ExperimentConfig, input_side: int, log: Log) -> ExperimentConfig:
    """The config with --gpus-per-trial resolved for this cluster (auto when not given)."""
    import ray

    from lcp_tune.tune.cluster import trial_gpus

    share = trial_gpus(config, ray.cluster_resources(), input_side)
    if config.search.gpus_per_trial is None and share:
        log(f"trials: {share:g} GPU each (the default for {input_side}-pixel inputs; --gpus-per-trial changes it)")
    return config.replace(**{"search.gpus_per_trial": share})


def _write_analysis(exp: Experiment, log: Log) -> None:
    """analysis.md and the plots beside the results (every search ends with them)."""
    from lcp_tune.analysis import write_analysis

    try:
        result = write_analysis([exp.root], strict=False)
        log(f"analysis: {result.report} and {len(result.plots)} plots in {exp.root / 'plots'}")
    except LcpTuneError as exc:
        log(f"warning: the analysis could not be written: {exc}")
