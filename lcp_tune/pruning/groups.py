"""Channel groups from Torch-Pruning's DependencyGraph, frozen into plain index arrays.

A group is a set of output channels that must be removed together (convs meeting in a residual
add, a depthwise conv and its producer). We trace the model once, then keep for every group
which module dimensions (a conv's outputs, a BN's features, the next conv's inputs) carry its
channels, as integer arrays. Planning, cost and surgery then never touch the tracer again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from .errors import PruningError

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class DimSlice:
    """The channels of one group as they appear in one dimension of one module."""

    module: str
    dim: str                     # "out" (filters, features) or "in" (a consumer's inputs)
    module_idxs: np.ndarray      # indices in that module dimension
    root_idxs: np.ndarray        # the group channel each of those indices belongs to
    handler: Callable = field(repr=False, compare=False)  # Torch-Pruning function that removes them
    pruning_dim: int = field(default=1, repr=False, compare=False)


@dataclass(frozen=True)
class ChannelGroup:
    """Output channels pruned together, named after the layer that roots them."""

    name: str
    size: int
    slices: tuple[DimSlice, ...]

    @property
    def producers(self) -> tuple[DimSlice, ...]:
        """Slices whose weights *make* these channels: the filters a metric scores."""
        return tuple(s for s in self.slices if s.dim == "out")


@dataclass(frozen=True)
class LayerInfo:
    """What the cost model needs of one module with parameters, measured on the base model."""

    name: str
    kind: str                    # "conv", "depthwise", "linear", "norm", "fixed"
    in_dim: int
    out_dim: int
    macs_per_unit: int           # multiply-accumulates per (input unit x output unit)
    params_per_unit: int         # weights per (input unit x output unit)
    params_per_out: int          # bias / norm affine parameters per output channel
    fixed_params: int            # parameters that no group changes


@dataclass
class ChannelStructure:
    """Everything the planner and surgery need, traced once per architecture."""

    groups: list[ChannelGroup]
    layers: dict[str, LayerInfo]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    ignored: tuple[str, ...]     # layers whose outputs are never pruned (the classifier)

    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]

    @property
    def group_sizes(self) -> np.ndarray:
        return np.array([g.size for g in self.groups], dtype=np.int64)


def _output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Modules whose output tensor is the network output (the classifier head)."""
    outputs: dict[nn.Module, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o: outputs.__setitem__(mod, o))
             for m in model.modules() if isinstance(m, CONV_TYPES + (nn.Linear,))]
    try:
        with torch.no_grad():
            out = model(example)
    finally:
        for h in hooks:
            h.remove()
    return [m for m, o in outputs.items() if isinstance(o, torch.Tensor) and o is out]


def _spatial_units(model: nn.Module, example: torch.Tensor) -> dict[nn.Module, int]:
    """Output positions per sample of every conv / linear (H_out * W_out; token rows)."""
    units: dict[nn.Module, int] = {}

    def hook(mod, inputs, out):
        per_sample = out.shape[2:] if isinstance(mod, CONV_TYPES) else out.shape[1:-1]
        units[mod] = int(np.prod(per_sample)) if len(per_sample) else 1

    hooks = [m.register_forward_hook(hook) for m in model.modules()
             if isinstance(m, CONV_TYPES + (nn.Linear,))]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return units


def _layer_info(name: str, module: nn.Module, units: dict[nn.Module, int]) -> LayerInfo:
    """Describe one module's cost as a function of its input and output widths."""
    own = sum(p.numel() for p in module.parameters(recurse=False))
    if isinstance(module, CONV_TYPES):
        kernel = int(np.prod(module.kernel_size))
        bias = 1 if module.bias is not None else 0
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        if module.groups > 1 and not depthwise:
            return LayerInfo(name, "fixed", module.in_channels, module.out_channels, 0, 0, 0, own)
        macs = kernel * units.get(module, 0)
        return LayerInfo(name, "depthwise" if depthwise else "conv", module.in_channels,
                         module.out_channels, macs, kernel, bias, 0)
    if isinstance(module, nn.Linear):
        bias = 1 if module.bias is not None else 0
        return LayerInfo(name, "linear", module.in_features, module.out_features,
                         units.get(module, 1), 1, bias, 0)
    if isinstance(module, NORM_TYPES):
        per = 2 if module.affine else 0
        return LayerInfo(name, "norm", module.num_features, module.num_features, 0, 0, per, 0)
    return LayerInfo(name, "fixed", 0, 0, 0, 0, 0, own)


def _group_slices(group, module_names: dict[nn.Module, str], DG) -> list[DimSlice]:
    """Turn one Torch-Pruning group into DimSlices over named modules, merging duplicates."""
    merged: dict[tuple[str, str], DimSlice] = {}
    for item in group.items:
        dep, idxs = item.dep, item.idxs
        module = dep.target.module
        if not isinstance(module, nn.Module) or module not in module_names:
            continue  # functional ops (add, cat, flatten) carry indices but own no weights
        if isinstance(module, NORM_TYPES) or DG.is_out_channel_pruning_fn(dep.handler):
            dim = "out"
        elif DG.is_in_channel_pruning_fn(dep.handler):
            dim = "in"
        else:
            continue
        name = module_names[module]
        key = (name, dim)
        mod_idx = np.asarray(idxs, dtype=np.int64)
        root_idx = np.asarray(item.root_idxs, dtype=np.int64)
        if key in merged:
            old = merged[key]
            keep = ~np.isin(mod_idx, old.module_idxs)
            mod_idx = np.concatenate([old.module_idxs, mod_idx[keep]])
            root_idx = np.concatenate([old.root_idxs, root_idx[keep]])
        merged[key] = DimSlice(name, dim, mod_idx, root_idx, dep.handler,
                               getattr(dep.target, "pruning_dim", 1))
    return list(merged.values())


def trace_structure(model: nn.Module, input_shape: tuple[int, ...],
                    ignored_layers: Optional[list[str]] = None) -> ChannelStructure:
    """Trace `model` once on a zero batch of `input_shape` and freeze its channel groups.

    The layers that produce the network output are never pruned (the output shape must not
    change); `ignored_layers` names more. Untraceable models raise PruningError naming the cause.
    """
    model = model.eval()
    example = torch.zeros(1, *input_shape)
    module_names = {m: n for n, m in model.named_modules() if n}
    ignored = _output_layers(model, example)
    by_name = dict(model.named_modules())
    for name in ignored_layers or []:
        if name not in by_name:
            raise PruningError(f"ignored layer {name!r} is not a module of the model")
        ignored.append(by_name[name])
    try:
        DG = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        tp_groups = list(DG.get_all_groups(ignored_layers=ignored,
                                           root_module_types=CONV_TYPES + (nn.Linear,)))
    except Exception as exc:  # the tracer's own errors name no layer; add what we know
        raise PruningError(f"Torch-Pruning could not trace the model: {type(exc).__name__}: {exc}") from exc
    units = _spatial_units(model, example)
    layers = {n: _layer_info(n, m, units) for n, m in model.named_modules()
              if n and any(True for _ in m.parameters(recurse=False))}
    groups = []
    order = {n: i for i, n in enumerate(module_names.values())}
    for group in tp_groups:
        root = module_names.get(group.items[0].dep.target.module)
        slices = _group_slices(group, module_names, DG)
        size = len(group.items[0].idxs)
        if root is None or size < 2 or not any(s.dim == "out" for s in slices):
            continue
        _check_prunable(root, slices, layers)
        groups.append(ChannelGroup(root, size, tuple(slices)))
    groups.sort(key=lambda g: order[g.name])
    with torch.no_grad():
        out_shape = tuple(model(example).shape[1:])
    return ChannelStructure(groups, layers, tuple(input_shape), out_shape,
                            tuple(module_names[m] for m in ignored))


def _check_prunable(root: str, slices: list[DimSlice], layers: dict[str, LayerInfo]) -> None:
    """Refuse groups touching modules whose cost we cannot model exactly, naming the layer."""
    for s in slices:
        info = layers.get(s.module)
        if info is not None and info.kind == "fixed":
            raise PruningError(
                f"layer {s.module!r} in the channel group of {root!r} is a grouped or unsupported "
                f"layer whose cost lcp-tune cannot model exactly; pass it in ignored_layers")
