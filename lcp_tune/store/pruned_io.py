"""Pruned models on disk: architecture + plan + state_dict, rebuilt without unpickling."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from torch import nn

from lcp_tune.errors import LcpTuneError
from lcp_tune.models import build_model
from lcp_tune.pruning import Plan, trace_structure
from lcp_tune.pruning.surgery import prune_model
from lcp_tune.trust import trust, trusted

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


def load_pruned(folder: str | Path, trust_code: bool = False) -> nn.Module:
    """Rebuild a pruned model saved by save_pruned: fresh architecture -> plan -> weights.

    A plan.json naming a `package.module:factory` architecture is refused unless `trust_code`
    (a file a colleague handed you never runs code by itself).

    >>> model = load_pruned("lcp-runs/search-.../pruned")   # doctest: +SKIP
    """
    folder = Path(folder)
    meta_path = folder / "plan.json"
    if not meta_path.is_file():
        raise LcpTuneError(f"{folder} is not a pruned-model folder (no plan.json)")
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or not isinstance(meta.get("arch"), str):
        raise LcpTuneError(f"{meta_path} names no architecture; it was not written by lcp-tune")
    if trust_code:
        trust([meta["arch"]])
    elif ":" in meta["arch"] and meta["arch"] not in trusted():
        raise LcpTuneError(f"{meta_path} names code to run as its architecture ({meta['arch']!r}); if you "
                           f"trust this folder, load it with trust_code=True (lcp-tune export --trust-code)")
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
