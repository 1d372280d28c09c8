"""Plan -> a physically smaller nn.Module, built by slicing the base tensors once.

The pruned model is a fresh module tree (shallow copies of the base modules, so forward code
and hyper-parameters are shared) whose parameters and buffers are new tensors
`index_select`-ed from the base: the base weights are read, never copied whole, and never
changed, so one copy of them serves every candidate in a process. Which positions of every
module dimension survive is precomputed once per structure as an owner array (module position
-> global channel id), so a plan becomes kept indices with one fancy-index per dimension.
The checks live in check.py.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from .errors import PruningCheckError
from .groups import CONV_TYPES, NORM_TYPES, ChannelStructure
from .planner import Plan

Kept = dict[tuple[str, str], Optional[torch.Tensor]]   # (module, "in"/"out") -> kept positions


class SurgeryIndex:
    """For every module dimension a group touches: which global channel owns each position."""

    def __init__(self, structure: ChannelStructure):
        self.structure = structure
        sizes = structure.group_sizes
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])[:-1]
        self.total = int(sizes.sum())
        owners: dict[tuple[str, str], np.ndarray] = {}
        for g, group in enumerate(structure.groups):
            for s in group.slices:
                info = structure.layers[s.module]
                if s.dim == "in" and info.kind in ("depthwise", "norm"):
                    continue   # one input per output: the out dimension decides
                width = info.out_dim if s.dim == "out" else info.in_dim
                owner = owners.setdefault((s.module, s.dim), np.full(width, self.total, np.int64))
                owner[s.module_idxs] = self.offsets[g] + s.root_idxs
        self.keys = list(owners)
        self.bounds = np.cumsum([0] + [len(owners[k]) for k in self.keys])
        self.owner = np.concatenate([owners[k] for k in self.keys]) if owners else np.zeros(0, np.int64)

    def kept(self, plan: Plan) -> Kept:
        """Kept positions per touched module dimension (None: the dimension is untouched)."""
        if tuple(plan.group_names) != tuple(self.structure.group_names):
            raise PruningCheckError("the plan was made for another architecture: its channel groups "
                                    "do not match this model's")
        alive = np.zeros(self.total + 1, dtype=bool)
        alive[self.total] = True
        for offset, kept in zip(self.offsets, plan.kept):
            alive[offset + np.asarray(kept, dtype=np.int64)] = True
        mask = alive[self.owner]
        result: Kept = {}
        for key, a, b in zip(self.keys, self.bounds[:-1], self.bounds[1:]):
            segment = mask[a:b]
            result[key] = None if segment.all() else torch.from_numpy(np.flatnonzero(segment))
        return result


def surgery_index(structure: ChannelStructure) -> SurgeryIndex:
    """The structure's SurgeryIndex, built on first use and cached on the structure."""
    index = structure.__dict__.get("_surgery_index")
    if index is None:
        index = structure.__dict__["_surgery_index"] = SurgeryIndex(structure)
    return index


def prune_model(model: nn.Module, structure: ChannelStructure, plan: Plan) -> nn.Module:
    """A pruned copy of `model` holding only the kept channels; `model` is left untouched."""
    kept = surgery_index(structure).kept(plan)
    by_module: dict[str, dict[str, Optional[torch.Tensor]]] = {}
    for (name, dim), idx in kept.items():
        by_module.setdefault(name, {})[dim] = idx
    threads = torch.get_num_threads()
    torch.set_num_threads(1)    # hundreds of small copies: a thread pool only adds sync waits
    try:
        with torch.no_grad():
            return _clone(model, "", by_module, structure, {})
    finally:
        torch.set_num_threads(threads)


def _clone(module: nn.Module, name: str, kept: dict, structure: ChannelStructure, memo: dict) -> nn.Module:
    """Shallow-copy `module` and its children; give it sliced copies of its own tensors."""
    if id(module) in memo:
        return memo[id(module)]
    new = module.__class__.__new__(module.__class__)
    state = module.__dict__.copy()
    for key, value in state.items():   # hook tables and the like must not be shared with the base
        if isinstance(value, (dict, set)) and key not in ("_parameters", "_buffers", "_modules"):
            state[key] = value.copy()
    new.__dict__ = state
    memo[id(module)] = new
    new._modules = {k: None if m is None else _clone(m, f"{name}.{k}" if name else k, kept, structure, memo)
                    for k, m in module._modules.items()}
    dims = kept.get(name)
    if dims is None:
        new._parameters = {k: None if p is None else nn.Parameter(p.detach().clone(), p.requires_grad)
                           for k, p in module._parameters.items()}
        new._buffers = {k: None if b is None else b.clone() for k, b in module._buffers.items()}
    else:
        _slice_into(new, module, dims.get("in"), dims.get("out"), structure.layers[name].kind)
    return new


def _slice_into(new: nn.Module, base: nn.Module, keep_in, keep_out, kind: str) -> None:
    """Set `new`'s tensors to the kept rows / columns of `base`'s and update its widths."""
    params, buffers = {}, {}
    if isinstance(base, CONV_TYPES + (nn.Linear,)):
        weight = _rows(base.weight, keep_out)
        if kind == "grouped":
            weight = _grouped_inputs(weight, base, keep_in, keep_out)
        elif kind != "depthwise" and keep_in is not None:
            weight = weight.index_select(1, keep_in)
        params["weight"] = weight
        params["bias"] = None if base.bias is None else _rows(base.bias, keep_out)
        _set_widths(new, weight, kind)
    elif isinstance(base, NORM_TYPES):
        params = {k: None if p is None else _rows(p, keep_out) for k, p in base._parameters.items()}
        buffers = {k: None if b is None else (b.clone() if b.dim() == 0 else _rows(b, keep_out))
                   for k, b in base._buffers.items()}
        new.num_features = base.num_features if keep_out is None else len(keep_out)
    new._parameters = {k: None if t is None else nn.Parameter(t, base._parameters[k].requires_grad)
                       for k, t in params.items()}
    new._buffers = buffers


def _rows(tensor: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
    return tensor.detach().clone() if keep is None else tensor.detach().index_select(0, keep)


def _grouped_inputs(weight: torch.Tensor, base: nn.Module, keep_in, keep_out) -> torch.Tensor:
    """A grouped conv's kept inputs, per kept output: the same count from every conv-group."""
    if keep_in is None:
        return weight
    groups = base.groups
    in_per, out_per = base.in_channels // groups, base.out_channels // groups
    local = (keep_in % in_per).view(groups, -1)        # kept inputs of each conv-group
    out_idx = torch.arange(base.out_channels) if keep_out is None else keep_out
    rows = torch.arange(weight.shape[0])[:, None]
    return weight[rows, local[out_idx // out_per]]


def _set_widths(new: nn.Module, weight: torch.Tensor, kind: str) -> None:
    if isinstance(new, nn.Linear):
        new.out_features, new.in_features = weight.shape[0], weight.shape[1]
        return
    new.out_channels = weight.shape[0]
    if kind == "depthwise":
        new.in_channels = new.groups = weight.shape[0]
    else:
        new.in_channels = weight.shape[1] * new.groups


def rebuild_pruned(fresh_model: nn.Module, structure: ChannelStructure, plan: Plan,
                   state_dict: dict) -> nn.Module:
    """Rebuild a saved pruned model from its architecture and plan, then load its weights."""
    model = prune_model(fresh_model, structure, plan)
    model.load_state_dict(state_dict)
    return model
