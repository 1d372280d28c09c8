"""Pruned models on disk: architecture + plan + state_dict, rebuilt without unpickling."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from torch import nn

from lcp_tune.errors import LcpTuneError
from lcp_tune.models import build_model
from lcp_tune.pruning import Plan, trace_structure
from lcp_tune.pruning.surgery import prune_model

from .checkpoints import load_state_dict, save_state_dict
from .files import read_json, write_json

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
