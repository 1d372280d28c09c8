"""The LCP workflow: base model -> Ray Tune search -> prune to budget -> full fine-tune -> report.

Besides the learned compensation, the two baselines the search starts from (plain global
ranking and uniform pruning) are fine-tuned the same way, so the report shows what the
search bought.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .base_model import obtain_base, test_accuracy
from .candidate import build_pruner
from .checkpoints import file_hash, load_into, load_state_dict, save_state_dict
from .config import ExperimentConfig
from .data import DATASETS, DataSplits, load_experiment_data
from .experiment import (Experiment, check_same_run, new_experiment_path, open_experiment, read_json,
                         write_json)
from .models import ARCHS, build_model
from .pruned_io import save_pruned
from .pruning import COMPENSATIONS, METRICS, Pruner
from .pruning.planner import check_budget
from .registry import LcpTuneError
from .searchers import SEARCHERS, SearchSpace
from .training import fit, recalibrate_bn

Log = Callable[[str], None]


def validate_config(config: ExperimentConfig) -> None:
    """Reject bad settings with one clear sentence before any work starts."""
    ARCHS.get(config.arch)
    DATASETS.get(config.data)
    METRICS.get(config.prune.metric)
    COMPENSATIONS.get(config.prune.form)
    SEARCHERS.get(config.search.searcher)
    check_budget(config.prune.budget)
    if config.search.num_samples < 1:
        raise LcpTuneError(f"--num-samples must be at least 1, got {config.search.num_samples}")
    if config.search.tau_hat < 0:
        raise LcpTuneError(f"--tau-hat must be 0 or more SGD steps, got {config.search.tau_hat}")
    from .search import SCHEDULERS

    SCHEDULERS.get(config.search.scheduler)
    if config.method not in METHODS:
        raise LcpTuneError(f"unknown method {config.method!r}: must be one of {', '.join(METHODS)}")
    if config.search.gpus_per_trial < 0:
        raise LcpTuneError(f"--gpus-per-trial must be 0 or more, got {config.search.gpus_per_trial:g}")
    if config.search.cpus_per_trial < 1:
        raise LcpTuneError(f"--cpus-per-trial must be at least 1, got {config.search.cpus_per_trial}")


def finetune_and_test(pruner: Pruner, vector: np.ndarray, config: ExperimentConfig,
                      data: DataSplits, log: Optional[Log] = None, label: str = "",
                      checkpoint: Optional[Path] = None) -> tuple[torch.nn.Module, dict]:
    """Prune with `vector`, fine-tune fully (best epoch on validation), test once."""
    plan = pruner.plan(vector, config.prune.budget, config.prune.resource)
    model = pruner.apply(plan)
    torch.manual_seed(config.seed)
    ft = config.finetune
    train = data.loader("train", ft.batch_size, shuffle=True, seed=config.seed)
    recalibrate_bn(model, train, config.search.bn_batches)   # same start as the search's trials
    fit(model, train, ft, val=data.loader("val", 256), progress=_epoch_logger(log, label, ft.epochs),
        checkpoint=checkpoint)
    test = test_accuracy(model, data)
    return model, {"test_acc": test.accuracy, "test_top5": test.top5, "test_loss": test.loss, "flops_ratio": plan.flops_ratio,
                   "params_ratio": plan.params_ratio, "flops": plan.flops, "params": plan.params,
                   "keep": dict(zip(plan.group_names, plan.keep_counts.tolist())), "plan": plan}


def _epoch_logger(log: Optional[Log], label: str, epochs: int):
    """A progress bar line every tenth of the fine-tune: long training never looks frozen."""
    if log is None:
        return None
    start = time.time()

    def progress(epoch: int, loss: float, val) -> None:
        done = epoch + 1
        if done % max(1, epochs // 10) == 0 or done == epochs:
            bar = "#" * round(20 * done / epochs)
            elapsed = time.time() - start
            log(f"  fine-tune {label:<8} [{bar:<20}] epoch {done}/{epochs}  train loss {loss:.3f}  "
                f"val acc {val.accuracy:.4f}  {elapsed:.0f}s, ~{elapsed / done * (epochs - done):.0f}s left")
    return progress


def compensation_record(pruner: Pruner, vector: np.ndarray, config: ExperimentConfig,
                        base_hash: str) -> dict:
    """The small JSON that lets a learned compensation prune the same base at other budgets."""
    names = pruner.form.param_names(pruner.group_names)
    return {"arch": config.arch, "data": config.data, "metric": config.prune.metric,
            "form": config.prune.form, "budget": config.prune.budget, "base_checkpoint_sha256": base_hash,
            "values": dict(zip(names, np.asarray(vector, dtype=float).tolist()))}


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
    if config.method == "random":
        config = config.replace(**{"search.searcher": "random"})
    _preflight(options)
    data = load_experiment_data(config)
    progress = _progress_log(log, options)
    base, _ = obtain_base(config, data, progress)          # a bad checkpoint fails before any folder
    pruner, identity, uniform = _prepare(config, base, data)   # so does an unreachable budget
    exp = open_experiment(out or new_experiment_path(), config)
    log(f"experiment folder: {exp.root}")
    save_state_dict(base, exp.base_path)
    storage = options.storage.rstrip("/") + f"/{exp.root.name}" if options.storage else str(exp.root.resolve())
    write_json(exp.root / "run.json", {"storage": storage})
    return _search_and_finish(config, exp, data, base, pruner, identity, uniform, storage, log, options,
                              resume=False)


def resume_search_experiment(folder: Path, log: Log = print, options: RunOptions = RunOptions(),
                             requested: Optional[dict] = None) -> dict:
    """Continue an interrupted search from its folder; finished trials are kept, never rerun.

    `requested` holds settings the user gave alongside --resume; any that differ from the
    folder's own (arch, data, budget, ...) mean the folder belongs to another run.
    """
    _preflight(options)
    exp = Experiment(Path(folder))
    config = exp.config()
    check_same_run(folder, config, requested or {})
    if exp.report_path.is_file():
        report = read_json(exp.report_path)
        log(f"the search in {folder} has already finished; its report:")
        log(format_report(report))
        return report
    if not exp.base_path.is_file():
        raise LcpTuneError(f"experiment folder {folder} has no base.pt; it was interrupted before the "
                           f"search started: run it again without --resume")
    data = load_experiment_data(config)
    base = load_into(build_model(config.arch, data.num_classes, data.input_shape[0]),
                     load_state_dict(exp.base_path), str(exp.base_path), config.arch)
    pruner, identity, uniform = _prepare(config, base, data)
    run = read_json(exp.root / "run.json") if (exp.root / "run.json").is_file() else {}
    storage = run.get("storage") or str(exp.root.resolve())
    return _search_and_finish(config, exp, data, base, pruner, identity, uniform, storage, log, options,
                              resume=True)


def _preflight(options: RunOptions) -> None:
    if options.address:
        from .search import check_reachable

        check_reachable(options.address)


def _prepare(config: ExperimentConfig, base: torch.nn.Module, data: DataSplits):
    """The pruner and the two warm starts; plans identity once so a bad budget fails early."""
    pruner = build_pruner(config, base, data)
    identity = pruner.identity()
    pruner.plan(identity, config.prune.budget, config.prune.resource)
    return pruner, identity, pruner.uniform(config.prune.budget, config.prune.resource)


def search_space(pruner: Pruner, config: ExperimentConfig, warm_starts: list[np.ndarray]) -> SearchSpace:
    """Box bounds in the dimensionless units of the form: shifts +-bound, log-scales +-scale_bound."""
    groups = len(pruner.group_names)
    low, high = [], []
    for prefix in pruner.form.param_prefixes:
        b = config.search.scale_bound if prefix == "log_alpha" else config.search.bound
        low += [-b] * groups
        high += [b] * groups
    return SearchSpace.from_bounds(low, high, warm_starts)


METHODS = ("lcp", "random", "global", "uniform")
LABELS = {"lcp": "learned (LCP)", "random": "random search", "global": "global ranking", "uniform": "uniform"}


def _search_and_finish(config, exp, data, base, pruner, identity, uniform, storage, log, options, resume):
    """Search (lcp, random) or not (global, uniform), then recover, fine-tune and test."""
    base_test = test_accuracy(base, data)
    log(f"base model: test accuracy {base_test.accuracy:.4f}")
    warm = {"global": identity, "uniform": uniform}
    outcome = None
    if config.method in ("lcp", "random"):
        # random search is the baseline "best of N random compensations": no warm starts
        space = search_space(pruner, config, [identity, uniform] if config.method == "lcp" else [])
        run_key = hashlib.sha256(f"{file_hash(exp.base_path)}{config.to_dict()}".encode()).hexdigest()[:16]
        outcome = _search(config, exp, base, space, storage, run_key, log, options, resume)
        outcome.table.to_parquet(exp.trials_path)
        chosen = outcome.best_vector
    else:
        chosen = warm[config.method]
    write_json(exp.compensation_path, compensation_record(pruner, chosen, config, file_hash(exp.base_path)))
    recovery = _recover(config, pruner, data, {config.method: chosen, **warm})
    names = [config.method] + (["global", "uniform"] if config.method == "lcp" and config.baselines else [])
    log(f"fine-tuning {', '.join(LABELS[n] for n in names)} ({config.finetune.epochs} epochs each)")
    methods = {}
    for name in names:
        vector = chosen if name == config.method else warm[name]
        model, result = finetune_and_test(pruner, vector, config, data, _progress_log(log, options), name,
                                          checkpoint=exp.root / "finetune" / f"{name}.pt")
        plan = result.pop("plan")
        if name == config.method:
            save_pruned(exp.pruned_dir, model, plan, config.arch, data.num_classes, data.input_shape)
        result["gap"] = base_test.accuracy - result["test_acc"]
        result.update(recovery[name])
        methods[name] = result
    if outcome is not None:   # the search's own number for its best trial
        methods[config.method]["search_objective"] = outcome.best_objective
    report = build_report(config, base_test.accuracy, methods, outcome, recovery)
    report["experiment"] = str(exp.root)
    write_json(exp.report_path, report)
    log(format_report(report))
    log(f"results: {exp.root}")
    return report


def _recover(config: ExperimentConfig, pruner: Pruner, data: DataSplits,
             vectors: dict[str, np.ndarray]) -> dict[str, dict]:
    """Each candidate's search objective and its test accuracy right after the short recovery.

    Evaluated in this process exactly as a trial does (same seed and batches), so every method's
    report carries the objective of its own compensation and of both warm starts.
    """
    from .candidate import CandidateEvaluator

    evaluator = CandidateEvaluator(config, data=data, pruner=pruner)
    out = {}
    for name, vector in vectors.items():
        result = evaluator.evaluate(vector)
        out[name] = {"search_objective": result["val_loss"],
                     "recovery_test_acc": test_accuracy(evaluator.last_model, data).accuracy}
    return out


def _progress_log(log: Log, options: RunOptions) -> Log:
    return (lambda line: None) if options.quiet else log


def _search(config: ExperimentConfig, exp: Experiment, base: torch.nn.Module, space: SearchSpace,
            storage: str, run_key: str, log: Log, options: RunOptions, resume: bool):
    import ray

    from .search import check_cluster, init_ray, run_search

    started_here = not ray.is_initialized()
    init_ray(address=options.address, dashboard=options.dashboard, log=log)
    try:
        check_cluster(config)
        outcome = run_search(config, storage, base.state_dict(), space, exp.root / "trial_cache", run_key,
                             log=_progress_log(log, options), resume=resume)
    finally:
        if started_here:
            ray.shutdown()
    if outcome.num_errors:
        log(f"warning: {outcome.num_errors} of {outcome.num_trials} trials failed")
    return outcome


def build_report(config: ExperimentConfig, base_acc: float, methods: dict, outcome, recovery: dict) -> dict:
    chosen = methods[config.method]
    return {
        "arch": config.arch, "data": config.data, "budget": config.prune.budget,
        "resource": config.prune.resource, "method": config.method, "base_test_acc": base_acc,
        "recipe": config.recipe, "pruned_test_acc": chosen["test_acc"], "gap": chosen["gap"],
        "flops_ratio": chosen["flops_ratio"], "params_ratio": chosen["params_ratio"],
        "search_objective": chosen["search_objective"],
        "warm_start_objectives": {"global": recovery["global"]["search_objective"],
                                  "uniform": recovery["uniform"]["search_objective"]},
        "num_trials": outcome.num_trials if outcome else 0,
        "failed_trials": outcome.num_errors if outcome else 0,
        "search_wall_time_s": outcome.wall_time_s if outcome else 0.0,
        "searcher": config.search.searcher if config.method == "lcp" else ("random" if outcome else None),
        "methods": methods,
    }


def format_report(report: dict) -> str:
    """The final table printed at the end of a run."""
    search = (f"search: {report['num_trials']} trials ({report['searcher']}), {report['search_wall_time_s']:.0f}s"
              if report.get("num_trials") else "no search")
    lines = [
        "",
        f"lcp-tune report: {report['arch']} on {report['data']}, budget {report['budget']:g} of base "
        f"{report['resource']}, method {report.get('method', 'lcp')}",
        f"base test accuracy {report['base_test_acc'] * 100:.2f}%   {search}",
        "",
        f"{'method':<18}{'test acc':>10}{'gap':>9}{'FLOPs':>8}{'params':>8}{'search obj':>12}{'after recovery':>16}",
    ]
    for name, m in report["methods"].items():
        obj = m.get("search_objective")
        rec = m.get("recovery_test_acc")
        lines.append(f"{LABELS.get(name, name):<18}{m['test_acc'] * 100:>9.2f}%{m['gap'] * 100:>8.2f}%"
                     f"{m['flops_ratio']:>8.3f}{m['params_ratio']:>8.3f}"
                     f"{(f'{obj:.4f}' if obj is not None else '-'):>12}"
                     f"{(f'{rec * 100:.2f}%' if rec is not None else '-'):>16}")
    lines.append("(search obj: validation loss after the short recovery, lower is better; after recovery: "
                 "test accuracy before the full fine-tune)")
    return "\n".join(lines)
