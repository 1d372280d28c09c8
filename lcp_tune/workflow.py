"""The LCP workflow: base model -> Ray Tune search -> prune to budget -> full fine-tune -> report.

Besides the learned compensation, the two baselines the search starts from (plain global
ranking and uniform pruning) are fine-tuned the same way, so the report shows what the
search bought.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .base_model import obtain_base, test_accuracy
from .candidate import build_pruner
from .checkpoints import file_hash, save_state_dict
from .config import ExperimentConfig
from .data import DATASETS, DataSplits, load_data
from .experiment import Experiment, new_experiment_path, open_experiment, write_json
from .models import ARCHS
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
    if config.search.cpus_per_trial < 1:
        raise LcpTuneError(f"--cpus-per-trial must be at least 1, got {config.search.cpus_per_trial}")


def finetune_and_test(pruner: Pruner, vector: np.ndarray, config: ExperimentConfig,
                      data: DataSplits) -> tuple[torch.nn.Module, dict]:
    """Prune with `vector`, fine-tune fully (best epoch on validation), test once."""
    plan = pruner.plan(vector, config.prune.budget, config.prune.resource)
    model = pruner.apply(plan)
    torch.manual_seed(config.seed)
    ft = config.finetune
    train = data.loader("train", ft.batch_size, shuffle=True, seed=config.seed)
    recalibrate_bn(model, train, config.search.bn_batches)   # same start as the search's trials
    fit(model, data.loader("train", ft.batch_size, shuffle=True, seed=config.seed), ft.epochs, ft.lr,
        ft.weight_decay, val=data.loader("val", 256))
    test = test_accuracy(model, data)
    return model, {"test_acc": test.accuracy, "test_loss": test.loss, "flops_ratio": plan.flops_ratio,
                   "params_ratio": plan.params_ratio, "flops": plan.flops, "params": plan.params,
                   "keep": dict(zip(plan.group_names, plan.keep_counts.tolist())), "plan": plan}


def compensation_record(pruner: Pruner, vector: np.ndarray, config: ExperimentConfig,
                        base_hash: str) -> dict:
    """The small JSON that lets a learned compensation prune the same base at other budgets."""
    names = pruner.form.param_names(pruner.group_names)
    return {"arch": config.arch, "data": config.data, "metric": config.prune.metric,
            "form": config.prune.form, "budget": config.prune.budget, "base_checkpoint_sha256": base_hash,
            "values": dict(zip(names, np.asarray(vector, dtype=float).tolist()))}


def run_search_experiment(config: ExperimentConfig, out: Optional[Path] = None, log: Log = print) -> dict:
    """Run the whole LCP workflow for `config`; returns the report also saved as report.json."""
    validate_config(config)
    data = load_data(config.data, config.seed, config.val_fraction, config.data_dir)
    base, _ = obtain_base(config, data, log)          # a bad checkpoint fails before any folder
    pruner = build_pruner(config, base, data)
    budget = config.prune.budget
    identity = pruner.identity()
    pruner.plan(identity, budget, config.prune.resource)   # an unreachable budget fails here, not in Ray
    uniform = pruner.uniform(budget, config.prune.resource)
    exp = open_experiment(out or new_experiment_path(), config)
    log(f"experiment folder: {exp.root}")
    save_state_dict(base, exp.base_path)
    base_test = test_accuracy(base, data)
    log(f"base model: test accuracy {base_test.accuracy:.4f}")
    space = SearchSpace.box(pruner.num_params, config.search.bound, [identity, uniform])
    outcome = _search(config, exp, base, space, log)
    write_json(exp.compensation_path, compensation_record(pruner, outcome.best_vector, config,
                                                          file_hash(exp.base_path)))
    outcome.table.to_parquet(exp.trials_path)
    log(f"fine-tuning the best candidate and the two baselines ({config.finetune.epochs} epochs each)")
    methods = {}
    for name, vector in (("lcp", outcome.best_vector), ("global", identity), ("uniform", uniform)):
        model, result = finetune_and_test(pruner, vector, config, data)
        plan = result.pop("plan")
        if name == "lcp":
            save_pruned(exp.pruned_dir, model, plan, config.arch, data.num_classes, data.input_shape)
        result["gap"] = base_test.accuracy - result["test_acc"]
        methods[name] = result
    methods["lcp"]["search_objective"] = outcome.best_objective
    methods["global"]["search_objective"] = outcome.warm_objectives.get("identity")
    methods["uniform"]["search_objective"] = outcome.warm_objectives.get("uniform")
    report = build_report(config, base_test.accuracy, methods, outcome)
    write_json(exp.report_path, report)
    log(format_report(report))
    log(f"results: {exp.root}  (report.json, pruned/, compensation.json, trials.parquet, search/)")
    return report


def _search(config: ExperimentConfig, exp: Experiment, base: torch.nn.Module, space: SearchSpace, log: Log):
    import ray

    from .search import init_ray, run_search

    started_here = not ray.is_initialized()
    init_ray()
    try:
        outcome = run_search(config, exp.root, base.state_dict(), space, log=log)
    finally:
        if started_here:
            ray.shutdown()
    if outcome.num_errors:
        log(f"warning: {outcome.num_errors} of {outcome.num_trials} trials failed")
    return outcome


def build_report(config: ExperimentConfig, base_acc: float, methods: dict, outcome) -> dict:
    lcp = methods["lcp"]
    return {
        "arch": config.arch, "data": config.data, "budget": config.prune.budget,
        "resource": config.prune.resource, "base_test_acc": base_acc,
        "pruned_test_acc": lcp["test_acc"], "gap": lcp["gap"], "flops_ratio": lcp["flops_ratio"],
        "params_ratio": lcp["params_ratio"], "num_trials": outcome.num_trials,
        "failed_trials": outcome.num_errors, "search_wall_time_s": outcome.wall_time_s,
        "searcher": config.search.searcher, "methods": methods,
    }


def format_report(report: dict) -> str:
    """The final table printed at the end of a search."""
    lines = [
        "",
        f"lcp-tune report: {report['arch']} on {report['data']}, budget {report['budget']:g} of base "
        f"{report['resource']}",
        f"base test accuracy {report['base_test_acc'] * 100:.2f}%   search: {report['num_trials']} trials "
        f"({report['searcher']}), {report['search_wall_time_s']:.0f}s",
        "",
        f"{'method':<22}{'test acc':>10}{'gap':>9}{'FLOPs':>9}{'params':>9}{'search obj':>12}",
    ]
    labels = {"lcp": "learned (LCP)", "global": "global ranking", "uniform": "uniform"}
    for name, m in report["methods"].items():
        obj = m.get("search_objective")
        lines.append(f"{labels.get(name, name):<22}{m['test_acc'] * 100:>9.2f}%{m['gap'] * 100:>8.2f}%"
                     f"{m['flops_ratio']:>9.3f}{m['params_ratio']:>9.3f}"
                     f"{(f'{obj:.4f}' if obj is not None else '-'):>12}")
    lines.append("(search obj: validation loss after the short recovery; lower is better)")
    return "\n".join(lines)
