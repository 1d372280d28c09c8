"""Pruned models on disk: architecture + plan + state_dict, rebuilt without unpickling.

Also the "learn once, prune many" step: one compensation applied at several budgets.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from torch import nn

from .checkpoints import file_hash, load_into, load_state_dict, save_state_dict
from .compensation_file import check_fits, compensation_vector, read_compensation
from .experiment import read_json, write_json
from .models import build_model, default_input_shape
from .pruning import COMPENSATIONS, METRICS, Plan, Pruner, trace_structure
from .pruning.planner import check_budget
from .pruning.surgery import prune_model
from .registry import LcpTuneError

FORMAT_VERSION = 1


def save_pruned(folder: Path, model: nn.Module, plan: Plan, arch: str, num_classes: int,
                input_shape: tuple[int, ...], extra: Optional[dict] = None) -> Path:
    """Write `folder`/plan.json (architecture and kept channels) and `folder`/model.pt."""
    folder = Path(folder)
    write_json(folder / "plan.json", {
        "format_version": FORMAT_VERSION, "arch": arch, "num_classes": num_classes,
        "input_shape": list(input_shape), "plan": plan.to_dict(), **(extra or {})})
    save_state_dict(model, folder / "model.pt")
    return folder


def load_pruned(folder: str | Path) -> nn.Module:
    """Rebuild a pruned model saved by save_pruned: fresh architecture -> plan -> weights.

    >>> model = load_pruned("lcp-runs/search-.../pruned")   # doctest: +SKIP
    """
    folder = Path(folder)
    meta_path = folder / "plan.json"
    if not meta_path.is_file():
        raise LcpTuneError(f"{folder} is not a pruned-model folder (no plan.json)")
    meta = read_json(meta_path)
    input_shape = tuple(meta["input_shape"])
    fresh = build_model(meta["arch"], meta["num_classes"], input_shape[0])
    structure = trace_structure(fresh, input_shape)
    plan = Plan.from_dict(meta["plan"])
    model = prune_model(fresh, structure, plan)
    state = load_state_dict(folder / "model.pt")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise LcpTuneError(f"{folder}/model.pt does not match its plan.json: {str(exc).splitlines()[0]}") from None
    return model.eval()


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
    round_to: int = 1
    batches: object = None        # training batches for the taylor metric


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
    ckpt_hash = file_hash(req.checkpoint) if req.checkpoint else None
    if record:
        check_fits(record, arch, ckpt_hash)
    input_shape = tuple(req.input_shape or default_input_shape(arch))
    model = build_model(arch, req.num_classes, input_shape[0])
    if req.checkpoint:
        load_into(model, load_state_dict(req.checkpoint), str(req.checkpoint), arch)
    pruner = Pruner(model, input_shape, metric, form, req.safeguard, req.round_to, req.batches)
    names = pruner.form.param_names(pruner.group_names)
    vector = compensation_vector(record, names) if record else pruner.identity()
    plans = [pruner.plan(vector, b, req.resource) for b in req.budgets]
    extra = {"metric": metric, "form": form, "base_checkpoint_sha256": ckpt_hash,
             "compensation": str(req.compensation) if req.compensation else None}
    folders = []
    for budget, plan in zip(req.budgets, plans):
        folder = save_pruned(Path(req.out) / f"budget-{budget:g}", pruner.apply(plan), plan, arch,
                             req.num_classes, input_shape, extra)
        log(f"budget {budget:g}: {plan.flops_ratio:.4f} of the FLOPs, {plan.params_ratio:.4f} of the "
            f"parameters -> {folder}")
        folders.append(folder)
    return folders


def _check_choices(record, metric: str, form: str) -> None:
    METRICS.get(metric)
    COMPENSATIONS.get(form)
    if record and (record.metric, record.form) != (metric, form):
        raise LcpTuneError(f"compensation file {record.path} was learned with metric {record.metric!r} "
                           f"and form {record.form!r}; --metric/--form say {metric!r}/{form!r}")
