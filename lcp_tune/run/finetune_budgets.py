"""Learn once, fine-tune many: a finished search's compensation, fine-tuned at other budgets.

A learned ranking transfers across budgets (the papers' claim), so one search serves a whole
accuracy-versus-FLOPs curve. Each budget is pruned, fully fine-tuned and tested like the search's
own final step, saved as `budgets/budget-<b>/` (plan.json + model.pt) and recorded in
`budgets.json`; a budget already recorded is never redone, and an interrupted fine-tune resumes
from its last epoch (the search's fine-tune checkpoints). Every budget is planned before any
work, so an unreachable one fails first.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from lcp_tune.candidate import build_pruner
from lcp_tune.config import ExperimentConfig
from lcp_tune.data import DataSplits, load_experiment_data
from lcp_tune.data.user import registered_factories
from lcp_tune.devices import check_device_name, resolve_device
from lcp_tune.errors import LcpTuneError
from lcp_tune.models import build_model
from lcp_tune.pruning import Pruner, PruningError
from lcp_tune.rules import check_value
from lcp_tune.store.checkpoints import file_hash, load_into, load_state_dict
from lcp_tune.store.compensation_file import check_fits, compensation_vector, read_compensation
from lcp_tune.store.experiment import Experiment
from lcp_tune.store.files import read_json, write_json
from lcp_tune.store.lock import experiment_lock
from lcp_tune.store.pruned_io import save_pruned

from .latency import prepare_latency
from .finetune import finetune_many, finetune_ray_session, recovery_steps
from .interrupts import catching_signals, interrupted

Log = Callable[[str], None]
BUDGETS_FILE = "budgets.json"


def finetune_budgets(folder: Path, budgets: Sequence[float], log: Log = print, progress: Optional[Log] = None,
                     data_dir: Optional[str] = None, device: Optional[str] = None,
                     resume_hint: Optional[str] = None) -> list[dict]:
    """Fine-tune EXPERIMENT's learned compensation at every budget; returns every recorded row.

    `data_dir` and `device` replace the experiment's own (a folder moved to another machine).
    """
    exp = Experiment(Path(folder))
    budgets = _checked(budgets)
    exp.config()                             # one line if this is not an experiment folder
    with experiment_lock(exp.root, "finetune"):
        return _finetune_budgets(exp, budgets, log, progress, data_dir, device, resume_hint)


def _finetune_budgets(exp: Experiment, budgets: list[float], log: Log, progress: Optional[Log],
                      data_dir: Optional[str], device: Optional[str], resume_hint: Optional[str]) -> list[dict]:
    folder = exp.root
    config = exp.config()
    config = config.replace(**{k: v for k, v in {"data_dir": data_dir, "device": device}.items() if v is not None})
    check_device_name(config.device)
    if not exp.report_path.is_file():
        raise LcpTuneError(f"lcp-tune finetune {folder}: its search has not finished (no report.json); "
                           f"finish it first with `lcp-tune search --resume {folder}`")
    resolve_device(config.device)
    data = load_experiment_data(config)
    base = build_model(config.arch, data.num_classes, data.input_shape[0])
    load_into(base, load_state_dict(exp.base_path), str(exp.base_path), config.arch)
    pruner = build_pruner(config, base, data)
    prepare_latency(pruner, config, log, exp.root)   # a latency budget: the search's own model
    record = read_compensation(exp.compensation_path)
    check_fits(record, config.arch, file_hash(exp.base_path))
    if record.metric != pruner.metric_name:   # the race picked uniform widths under another metric
        pruner = pruner.with_metric(record.metric)
    vector = compensation_vector(record, pruner.form.param_names(pruner.group_names))
    check_budgets(pruner, vector, budgets, config)
    hint = (resume_hint or
            f"`lcp-tune finetune {folder} --budgets ...` goes on from its last epoch and keeps the budgets already done.")
    return run_budgets(exp, config, data, pruner, vector, budgets, log, progress, hint)


def check_budgets(pruner: Pruner, vector: np.ndarray, budgets: Sequence[float], config: ExperimentConfig) -> None:
    """Plan every budget before any work: an unreachable one is named first."""
    for budget in budgets:
        try:
            pruner.plan(vector, budget, config.prune.resource)
        except PruningError as exc:
            raise LcpTuneError(f"--budgets {budget:g}: {exc}") from None


def run_budgets(exp: Experiment, config: ExperimentConfig, data: DataSplits, pruner: Pruner, vector: np.ndarray,
                budgets: Sequence[float], log: Log, progress: Optional[Log], resume_hint: str,
                address: Optional[str] = None) -> list[dict]:
    """Fine-tune `vector` at every budget not yet in budgets.json, record each, plot them all.

    In this process one budget after another (each recorded as it finishes); with
    `config.finetune_workers` > 1 on Ray Train, all at once when the cluster fits them.
    """
    path = exp.root / BUDGETS_FILE
    report = read_json(exp.report_path)
    rows = read_json(path)["budgets"] if path.is_file() else [_search_row(report)]
    done = {row["budget"] for row in rows}
    for budget in budgets:
        if budget in done:
            log(f"budget {budget:g}: already fine-tuned ({_line(_row(rows, budget))})")
    todo = [b for b in budgets if b not in done]
    groups = [todo] if config.finetune_workers > 1 and todo else [[b] for b in todo]
    with catching_signals(), finetune_ray_session(config, address, log=log):
        for group in groups:
            try:
                new = _finetune(exp, config, data, pruner, vector, group, progress)
            except KeyboardInterrupt:
                where = ", ".join(f"{b:g}" for b in group)
                raise interrupted(f"the fine-tune at budget {where}", resume_hint) from None
            rows = sorted(rows + new, key=lambda r: -r["budget"])
            write_json(path, {"method": config.method, "base_test_acc": report["base_test_acc"],
                              "budgets": rows})   # after each: an interruption keeps the finished ones
            for row in new:
                log(f"budget {row['budget']:g}: {_line(row)}")
    plot_budgets(exp, rows)
    return rows


def _search_row(report: dict) -> dict:
    """The search's own budget, fine-tuned by the search itself (its model in pruned/)."""
    return {"budget": report["budget"], "test_acc": report["pruned_test_acc"],
            "test_top5": report["methods"][report["method"]].get("test_top5"),
            "flops_ratio": report["flops_ratio"], "params_ratio": report["params_ratio"], "model": "pruned"}


def _finetune(exp: Experiment, config: ExperimentConfig, data: DataSplits, pruner: Pruner, vector: np.ndarray,
              budgets: Sequence[float], progress: Optional[Log]) -> list[dict]:
    labels = {f"b{budget:g}": budget for budget in budgets}
    starts = recovered_at(config, data, pruner, vector, labels)
    finished = finetune_many(pruner, {label: vector for label in labels}, config, data, progress,
                             exp.root / "finetune", registered_factories(config.data), budgets=labels,
                             starts=starts)
    rows = []
    for label, budget in labels.items():
        model, result = finished[label]
        folder = save_pruned(exp.root / "budgets" / f"budget-{budget:g}", model, result.pop("plan"), config.arch,
                             data.num_classes, data.input_shape, {"method": config.method})
        rows.append({"budget": budget, "test_acc": result["test_acc"], "test_top5": result["test_top5"],
                     "flops_ratio": result["flops_ratio"], "params_ratio": result["params_ratio"],
                     "model": folder.relative_to(exp.root).as_posix()})   # relative: the folder can move
    return rows


def recovered_at(config: ExperimentConfig, data: DataSplits, pruner: Pruner, vector: np.ndarray,
                 budgets: dict[str, float]) -> dict[str, tuple]:
    """`vector` at each budget, recovered as the search's pick was (same steps, seed and batches):
    the start every fine-tune continues, re-derived here rather than stored."""
    from lcp_tune.candidate import CandidateEvaluator
    from lcp_tune.data.search_subsets import search_subsets

    evaluator = CandidateEvaluator(config, data=data, pruner=pruner, subsets=search_subsets(config, data))
    out = {}
    for label, budget in budgets.items():
        evaluator.evaluate(vector, steps=recovery_steps(config), budget=budget)
        out[label] = (evaluator.last_model.cpu(), evaluator.last_plan)
    return out


def _checked(budgets: Sequence[float]) -> list[float]:
    if not budgets:
        raise LcpTuneError("--budgets needs at least one budget, e.g. --budgets 0.5 0.3")
    out = [float(check_value("prune.budget", b, "--budgets")) for b in budgets]
    named = [f"{b:g}" for b in out]   # budgets/budget-<b:g>/: budgets equal to 6 digits share a folder
    repeated = sorted({n for n in named if named.count(n) > 1})
    if repeated:
        raise LcpTuneError(f"--budgets {repeated[0]} is given twice")
    return out


def _row(rows: list[dict], budget: float) -> dict:
    return next(r for r in rows if r["budget"] == budget)


def _line(row: dict) -> str:
    return (f"test accuracy {row['test_acc']:.4f} at {row['flops_ratio']:.4f} of the FLOPs, "
            f"{row['params_ratio']:.4f} of the parameters -> {row['model']}")


def plot_budgets(exp: Experiment, rows: list[dict]) -> Optional[Path]:
    """plots/budgets.png: test accuracy against the FLOPs kept, the base model as a line."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lcp_tune.store.files import atomic_path

    rows = sorted(rows, key=lambda r: r["flops_ratio"])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["flops_ratio"] for r in rows], [100 * r["test_acc"] for r in rows], "o-", label="learned compensation")
    base = read_json(exp.report_path).get("base_test_acc")
    if base is not None:
        ax.axhline(100 * base, color="grey", linestyle="--", label="base model")
    ax.set_xlabel("FLOPs kept (fraction of the base)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.tight_layout()
    path = exp.root / "plots" / "budgets.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path
