"""Learn once, prune many: one compensation applied at several budgets, one folder each."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from lcp_tune.errors import LcpTuneError
from lcp_tune.models import build_model, default_input_shape
from lcp_tune.pruning import COMPENSATIONS, METRICS, Pruner
from lcp_tune.pruning.planner import check_budget
from lcp_tune.store.checkpoints import file_hash, load_into, load_state_dict
from lcp_tune.store.compensation_file import check_fits, compensation_vector, read_compensation
from lcp_tune.rules import check_value
from lcp_tune.store.pruned_io import save_pruned

from .latency import attach_latency, latency_line, latency_settings, measured_latency, round_to_line


@dataclass(frozen=True)
class PruneRequest:
    """What `lcp-tune prune` asks for: one base model, one compensation, several budgets."""

    arch: Optional[str]           # None: the compensation file's architecture
    budgets: tuple[float, ...]
    out: Path
    checkpoint: Optional[Path] = None
    compensation: Optional[Path] = None
    num_classes: int = 10
    input_shape: Optional[tuple[int, ...]] = None
    metric: Optional[str] = None
    form: Optional[str] = None
    resource: str = "flops"
    safeguard: float = 0.1
    round_to: Union[int, str] = 1   # or "auto": the multiple the latency model found (measured on device)
    batches: object = None        # training batches for the taylor metric
    device: str = "auto"          # --resource latency: measured there, at this batch and thread count
    latency_batch: int = 1
    latency_threads: int = 1


def prune_to_budgets(req: PruneRequest, log: Callable[[str], None] = lambda s: None) -> list[Path]:
    """Learn once, prune many: apply one compensation at every budget, save one folder each.

    Every budget is planned before anything is written, so an unreachable budget leaves no
    half-written output. Without a compensation the identity (plain global ranking) is used.
    """
    record = read_compensation(req.compensation) if req.compensation else None
    arch = req.arch or (record.arch if record else "")
    metric = req.metric or (record.metric if record else "l2")
    form = req.form or (record.form if record else "additive")
    _check_choices(record, metric, form)
    for budget in req.budgets:
        check_budget(budget)
    check_value("prune.round_to", req.round_to)   # before any model is built
    repeated = sorted({f"{b:g}" for b in req.budgets if req.budgets.count(b) > 1})
    if repeated:
        raise LcpTuneError(f"--budget {repeated[0]} is given twice; each budget writes its own folder budget-<b>/")
    ckpt_hash = file_hash(req.checkpoint) if req.checkpoint else None
    if record:
        check_fits(record, arch, ckpt_hash)
    input_shape = tuple(req.input_shape or _recorded_input_shape(record) or default_input_shape(arch))
    model = build_model(arch, req.num_classes, input_shape[0])
    if req.checkpoint:
        load_into(model, load_state_dict(req.checkpoint), str(req.checkpoint), arch)
    pruner = Pruner(model, input_shape, metric, form, req.safeguard, req.round_to, req.batches)
    names = pruner.form.param_names(pruner.group_names)
    vector = compensation_vector(record, names) if record else pruner.identity()
    settings = None
    if req.resource == "latency" or req.round_to == "auto":
        for key, value in (("prune.latency_batch", req.latency_batch), ("prune.latency_threads", req.latency_threads)):
            check_value(key, value)
        settings = latency_settings(req.device, req.latency_batch, req.latency_threads)
        attach_latency(pruner, arch, settings, log)
        if req.round_to == "auto":
            log(round_to_line(pruner))
    plans = [pruner.plan(vector, b, req.resource) for b in req.budgets]
    extra = {"metric": metric, "form": form, "round_to": pruner.round_to, "base_checkpoint_sha256": ckpt_hash,
             "compensation": str(req.compensation) if req.compensation else None}
    folders = []
    for budget, plan in zip(req.budgets, plans):
        pruned = pruner.apply(plan)
        measured = measured_latency(model, pruned, input_shape, settings) if settings else None
        latency = {"latency": {"predicted_ratio": plan.latency_ratio, **measured,
                               "settings": pruner.cost.latency.key}} if measured else {}
        folder = save_pruned(Path(req.out) / f"budget-{budget:g}", pruned, plan, arch,
                             req.num_classes, input_shape, {**extra, **latency})
        log(f"budget {budget:g}: {plan.flops_ratio:.4f} of the FLOPs, {plan.params_ratio:.4f} of the "
            f"parameters" + (f", {latency_line(plan, measured)}" if measured else "") + f" -> {folder}")
        folders.append(folder)
    return folders


def _check_choices(record, metric: str, form: str) -> None:
    METRICS.get(metric)
    COMPENSATIONS.get(form)
    if record and (record.metric, record.form) != (metric, form):
        raise LcpTuneError(f"compensation file {record.path} was learned with metric {record.metric!r} "
                           f"and form {record.form!r}; --metric/--form say {metric!r}/{form!r}")


def _recorded_input_shape(record) -> Optional[tuple[int, ...]]:
    """The input shape of the dataset a compensation was learned on, where it can be read without
    a data folder (digits ships with scikit-learn); None otherwise."""
    if record is None or not record.data or ":" in record.data:
        return None
    from lcp_tune.data import load_data

    try:
        return tuple(load_data(record.data).input_shape)
    except LcpTuneError:   # a real dataset needs its folder: fall back to the arch's own input size
        return None
