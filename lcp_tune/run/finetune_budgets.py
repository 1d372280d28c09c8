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
from lcp_tune.data import load_experiment_data
from lcp_tune.devices import check_device_name, resolve_device
from lcp_tune.errors import LcpTuneError
from lcp_tune.models import build_model
from lcp_tune.pruning import PruningError
from lcp_tune.rules import check_value
from lcp_tune.store.checkpoints import file_hash, load_into, load_state_dict
from lcp_tune.store.compensation_file import check_fits, compensation_vector, read_compensation
from lcp_tune.store.experiment import Experiment
from lcp_tune.store.files import read_json, write_json
from lcp_tune.store.pruned_io import save_pruned

from .finetune import finetune_and_test
from .interrupts import catching_signals, interrupted

Log = Callable[[str], None]
BUDGETS_FILE = "budgets.json"


def finetune_budgets(folder: Path, budgets: Sequence[float], log: Log = print, progress: Optional[Log] = None,
                     data_dir: Optional[str] = None, device: Optional[str] = None) -> list[dict]:
    """Fine-tune EXPERIMENT's learned compensation at every budget; returns every recorded row.

    `data_dir` and `device` replace the experiment's own (a folder moved to another machine).
    """
    exp = Experiment(Path(folder))
    budgets = _checked(budgets)
    config = exp.config()                    # one line if this is not an experiment folder
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
    record = read_compensation(exp.compensation_path)
    check_fits(record, config.arch, file_hash(exp.base_path))
    vector = compensation_vector(record, pruner.form.param_names(pruner.group_names))
    for budget in budgets:                   # every budget planned before any work
        try:
            pruner.plan(vector, budget, config.prune.resource)
        except PruningError as exc:
            raise LcpTuneError(f"--budgets {budget:g}: {exc}") from None
    path = exp.root / BUDGETS_FILE
    report = read_json(exp.report_path)
    rows = read_json(path)["budgets"] if path.is_file() else [_search_row(report)]
    done = {row["budget"] for row in rows}
    with catching_signals():
        for budget in budgets:
            if budget in done:
                log(f"budget {budget:g}: already fine-tuned ({_line(_row(rows, budget))})")
                continue
            try:
                row = _finetune_one(exp, config, data, pruner, vector, budget, progress)
            except KeyboardInterrupt:
                raise interrupted(f"the fine-tune at budget {budget:g}",
                                  f"`lcp-tune finetune {folder} --budgets ...` goes on from its last epoch "
                                  f"and keeps the budgets already done.") from None
            rows = sorted(rows + [row], key=lambda r: -r["budget"])
            write_json(path, {"method": config.method, "base_test_acc": report["base_test_acc"],
                              "budgets": rows})   # after each budget: an interruption keeps the finished ones
            log(f"budget {budget:g}: {_line(row)}")
    plot_budgets(exp, rows)
    return rows


def _search_row(report: dict) -> dict:
    """The search's own budget, fine-tuned by the search itself (its model in pruned/)."""
    return {"budget": report["budget"], "test_acc": report["pruned_test_acc"],
            "test_top5": report["methods"][report["method"]].get("test_top5"),
            "flops_ratio": report["flops_ratio"], "params_ratio": report["params_ratio"], "model": "pruned"}


def _finetune_one(exp: Experiment, config, data, pruner, vector: np.ndarray, budget: float,
                  progress: Optional[Log]) -> dict:
    config = config.replace(**{"prune.budget": budget})
    model, result = finetune_and_test(pruner, vector, config, data, progress, f"b{budget:g}",
                                      checkpoint_dir=exp.root / "finetune")
    folder = save_pruned(exp.root / "budgets" / f"budget-{budget:g}", model, result.pop("plan"), config.arch,
                         data.num_classes, data.input_shape, {"method": config.method})
    return {"budget": budget, "test_acc": result["test_acc"], "test_top5": result["test_top5"],
            "flops_ratio": result["flops_ratio"], "params_ratio": result["params_ratio"],
            "model": folder.relative_to(exp.root).as_posix()}   # relative: the folder can move


def _checked(budgets: Sequence[float]) -> list[float]:
    if not budgets:
        raise LcpTuneError("--budgets needs at least one budget, e.g. --budgets 0.5 0.3")
    out = [float(check_value("prune.budget", b, "--budgets")) for b in budgets]
    repeated = sorted({f"{b:g}" for b in out if out.count(b) > 1})
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
