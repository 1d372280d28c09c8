"""Plan -> a physically smaller nn.Module, checked against the plan.

Removal uses Torch-Pruning's per-layer pruning functions on index sets we computed from the
traced groups, so no dependency graph is rebuilt per candidate. Every result is checked: each
layer's widths, the total FLOPs and parameters, and the output shape; a mismatch names the layer.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np
import torch
from torch import nn

from .errors import PruningCheckError
from .groups import CONV_TYPES, NORM_TYPES, ChannelStructure
from .planner import Plan
from .resources import CostModel, measure_cost


def removal_sets(structure: ChannelStructure, plan: Plan) -> dict[tuple[str, str], tuple[np.ndarray, object]]:
    """(module, dim) -> (sorted module indices to remove, Torch-Pruning handler)."""
    if tuple(plan.group_names) != tuple(structure.group_names):
        raise PruningCheckError("the plan was made for another architecture: its channel groups "
                                "do not match this model's")
    removed: dict[tuple[str, str], list] = defaultdict(list)
    handlers = {}
    for group, kept in zip(structure.groups, plan.kept):
        dropped = np.setdiff1d(np.arange(group.size), np.asarray(kept, dtype=np.int64))
        if dropped.size == 0:
            continue
        for s in group.slices:
            key = (s.module, s.dim)
            removed[key].append(s.module_idxs[np.isin(s.root_idxs, dropped)])
            handlers[key] = (s.handler, s.pruning_dim)
    return {k: (np.unique(np.concatenate(v)), handlers[k]) for k, v in removed.items()}


def prune_model(model: nn.Module, structure: ChannelStructure, plan: Plan) -> nn.Module:
    """A pruned deep copy of `model`; `model` itself is left untouched."""
    pruned = copy.deepcopy(model)
    modules = dict(pruned.named_modules())
    for (name, dim), (idxs, (handler, pruning_dim)) in removal_sets(structure, plan).items():
        module = modules[name]
        if dim == "in" and (structure.layers[name].kind == "depthwise" or isinstance(module, NORM_TYPES)):
            continue  # removing a depthwise conv's outputs already removed its inputs
        if hasattr(handler, "__self__"):
            handler.__self__.pruning_dim = pruning_dim
        handler(module, idxs.tolist())
    return pruned


def _actual_widths(module: nn.Module) -> tuple[int, int] | None:
    if isinstance(module, CONV_TYPES):
        return module.in_channels // module.groups if module.groups > 1 else module.in_channels, module.out_channels
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, NORM_TYPES):
        return 0, module.num_features
    return None


def verify_pruned(model: nn.Module, structure: ChannelStructure, cost: CostModel, plan: Plan) -> None:
    """Raise PruningCheckError, naming the layer, unless `model` is exactly what `plan` says."""
    expected = cost.expected_widths(plan.keep_counts)
    modules = dict(model.named_modules())
    for name, info in structure.layers.items():
        actual = _actual_widths(modules[name]) if name in modules else None
        if actual is None or info.kind == "fixed":
            continue
        want_in, want_out = expected[name]
        if info.kind == "norm":
            want_in = 0
        if actual != (want_in, want_out):
            raise PruningCheckError(f"layer {name!r} has (in, out) widths {actual} after pruning, "
                                    f"the plan expects {(want_in, want_out)}")
    flops, params = measure_cost(model, structure.input_shape)
    if (flops, params) != (plan.flops, plan.params):
        raise PruningCheckError(f"pruned model costs {flops} FLOPs / {params} params, the plan "
                                f"predicted {plan.flops} / {plan.params}")
    with torch.no_grad():
        was = model.training
        out = model.eval()(torch.zeros(2, *structure.input_shape))
        model.train(was)
    if tuple(out.shape[1:]) != tuple(structure.output_shape):
        raise PruningCheckError(f"pruned model outputs shape {tuple(out.shape[1:])}, "
                                f"the base model {structure.output_shape}")


def rebuild_pruned(fresh_model: nn.Module, structure: ChannelStructure, plan: Plan,
                   state_dict: dict) -> nn.Module:
    """Rebuild a saved pruned model from its architecture and plan, then load its weights."""
    model = prune_model(fresh_model, structure, plan)
    model.load_state_dict(state_dict)
    return model
