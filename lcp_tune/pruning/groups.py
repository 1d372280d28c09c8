"""Channel groups from Torch-Pruning's DependencyGraph, frozen into plain index arrays.

A group is a set of output channels that must be removed together (convs meeting in a residual
add, a depthwise conv and its producer). We trace the model once, then keep for every group
which module dimensions (a conv's outputs, a BN's features, the next conv's inputs) carry its
channels, as integer arrays. Planning, cost and surgery then never touch the tracer again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from .errors import PruningError
from .grouped import partition_groups

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class DimSlice:
    """The channels of one group as they appear in one dimension of one module."""

    module: str
    dim: str                     # "out" (filters, features) or "in" (a consumer's inputs)
    module_idxs: np.ndarray      # indices in that module dimension
    root_idxs: np.ndarray        # the group channel each of those indices belongs to


@dataclass(frozen=True)
class ChannelGroup:
    """Output channels pruned together, named after the layer that roots them.

    `partitions` > 1 when the channels feed or leave a grouped conv: every conv-group must keep
    the same number of them, so the group keeps a multiple of `partitions` channels, the top ones
    of each partition (`part_of` labels every channel with its partition).
    """

    name: str
    size: int
    slices: tuple[DimSlice, ...]
    partitions: int = 1
    part_of: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def producers(self) -> tuple[DimSlice, ...]:
        """Slices whose weights *make* these channels: the filters a metric scores."""
        return tuple(s for s in self.slices if s.dim == "out")


@dataclass(frozen=True)
class LayerInfo:
    """What the cost model needs of one module with parameters, measured on the base model."""

    name: str
    kind: str                    # "conv", "depthwise", "grouped", "linear", "norm", "fixed"
    in_dim: int
    out_dim: int
    macs_per_unit: int           # multiply-accumulates per (input unit x output unit)
    params_per_unit: int         # weights per (input unit x output unit)
    params_per_out: int          # bias / norm affine parameters per output channel
    fixed_params: int            # parameters that no group changes
    groups: int = 1              # conv groups: a grouped conv's weight sees in_dim / groups inputs


@dataclass
class ChannelStructure:
    """Everything the planner and surgery need, traced once per architecture."""

    groups: list[ChannelGroup]
    layers: dict[str, LayerInfo]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    ignored: tuple[str, ...]     # layers whose outputs are never pruned (the classifier)
    excluded: dict[str, str] = field(default_factory=dict)   # group root -> why it is not pruned

    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]

    @property
    def group_sizes(self) -> np.ndarray:
        return np.array([g.size for g in self.groups], dtype=np.int64)


def hooked_forward(model: nn.Module, input_shape: tuple[int, ...], types: tuple, hook) -> None:
    """One forward pass of a zero sample through `model` in eval mode, `hook(module, inputs,
    output)` called on every module of `types`; the model's mode is restored after."""
    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, types)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)


def output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The classifier head: layers whose output is the network output, and the last conv /
    linear layer run when its width equals the output's (SqueezeNet's final conv classifier,
    followed by pooling)."""
    outputs: dict[nn.Module, torch.Tensor] = {}
    order: list[nn.Module] = []

    def hook(mod, inputs, out):
        outputs[mod] = out
        order.append(mod)

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, CONV_TYPES + (nn.Linear,))]
    try:
        with torch.no_grad():
            out = model(example)
    finally:
        for h in hooks:
            h.remove()
    heads = [m for m, o in outputs.items() if isinstance(o, torch.Tensor) and o is out]
    if order and order[-1] not in heads and isinstance(out, torch.Tensor) and out.dim() == 2:
        last = order[-1]
        width = last.out_features if isinstance(last, nn.Linear) else last.out_channels
        if width == out.shape[1]:
            heads.append(last)
    return heads


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
        g = module.groups
        kind = "conv" if g == 1 else "depthwise" if g == module.in_channels == module.out_channels else "grouped"
        return LayerInfo(name, kind, module.in_channels, module.out_channels,
                         kernel * units.get(module, 0), kernel, bias, 0, g)
    if isinstance(module, nn.Linear):
        bias = 1 if module.bias is not None else 0
        return LayerInfo(name, "linear", module.in_features, module.out_features,
                         units.get(module, 0), 1, bias, 0)
    if isinstance(module, NORM_TYPES) and set(dict(module.named_parameters(recurse=False))) <= {"weight", "bias"}:
        per = 2 if module.affine else 0
        return LayerInfo(name, "norm", module.num_features, module.num_features, 0, 0, per, 0)
    return LayerInfo(name, "fixed", 0, 0, 0, 0, 0, own)


def _group_slices(group, module_names: dict[nn.Module, str], DG) -> list[DimSlice]:
    """Turn one Torch-Pruning group into DimSlices over named modules, merging duplicates."""
    merged: dict[tuple[str, str], DimSlice] = {}
    for item in group.items:
        dep, idxs = item.dep, item.idxs
        module = dep.target.module
        if isinstance(module, nn.Parameter):
            merged[("<parameter>", "out")] = DimSlice("<parameter>", "out", np.zeros(0, np.int64),
                                                      np.zeros(0, np.int64))
            continue  # a bare nn.Parameter (e.g. a layer scale): marks the group unsupported
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
        merged[key] = DimSlice(name, dim, mod_idx, root_idx)
    return list(merged.values())


def _trace_groups(model: nn.Module, example: torch.Tensor, ignored: list[nn.Module]):
    """Torch-Pruning's dependency graph and groups; its errors name no layer, so we add one."""
    try:
        DG = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        return DG, list(DG.get_all_groups(ignored_layers=ignored,
                                          root_module_types=CONV_TYPES + (nn.Linear,)))
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        where = _failing_node(exc, {m: n for n, m in model.named_modules() if n})
        raise PruningError(f"Torch-Pruning could not trace the model{where} ({type(exc).__name__}: "
                           f"{text}); exclude that part of the model or use an architecture without it") from None


def _failing_node(exc: BaseException, module_names: dict[nn.Module, str]) -> str:
    """' at <op> after layer <name>' for the graph node the tracer failed on, if it can be found."""
    tb, node = exc.__traceback__, None
    while tb is not None:
        node = tb.tb_frame.f_locals.get("node", node)
        tb = tb.tb_next
    if node is None:
        return ""
    seen, frontier = set(), [node]
    while frontier:
        current = frontier.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        name = module_names.get(getattr(current, "module", None))
        if name is not None:
            op = "" if current is node else f" at {type(node.module).__name__.strip('_')} "
            return f"{op or ' at '}layer {name!r}" if current is node else f"{op}after layer {name!r}"
        frontier.extend(getattr(current, "inputs", []))
    return ""


def trace_structure(model: nn.Module, input_shape: tuple[int, ...],
                    ignored_layers: Optional[list[str]] = None) -> ChannelStructure:
    """Trace `model` once on a zero batch of `input_shape` and freeze its channel groups.

    The layers that produce the network output are never pruned (the output shape must not
    change); `ignored_layers` names more. Groups touching a layer whose cost or surgery we cannot
    model exactly are left unpruned and listed, with the reason, in `structure.excluded`.
    """
    model = model.eval()
    example = torch.zeros(1, *input_shape)
    module_names = {m: n for n, m in model.named_modules() if n}
    try:
        ignored = output_layers(model, example)
    except Exception as exc:
        raise PruningError(f"the model does not run on input shape {tuple(input_shape)} "
                           f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]})") from None
    by_name = dict(model.named_modules())
    for name in ignored_layers or []:
        if name not in by_name:
            raise PruningError(f"ignored layer {name!r} is not a module of the model")
        ignored.append(by_name[name])
    DG, tp_groups = _trace_groups(model, example, ignored)
    units = _spatial_units(model, example)
    layers = {n: _layer_info(n, m, units) for n, m in model.named_modules()
              if n and any(True for _ in m.parameters(recurse=False))}
    groups, excluded = [], {}
    for group in tp_groups:
        root = module_names.get(group.items[0].dep.target.module)
        slices = _group_slices(group, module_names, DG)
        size = len(group.items[0].idxs)
        if root is None or size < 2 or not any(s.dim == "out" for s in slices):
            continue
        for name, part_size, part_slices in split_by_coverage(root, size, slices):
            reason = _unsupported(part_slices, layers, part_size)
            if reason:
                excluded[name] = reason
            else:
                groups.append(ChannelGroup(name, part_size, tuple(part_slices)))
    groups = partition_groups(groups, layers, excluded)
    order = {n: i for i, n in enumerate(module_names.values())}
    groups.sort(key=lambda g: order[g.name.partition('[')[0]])
    with torch.no_grad():
        out_shape = tuple(model(example).shape[1:])
    return ChannelStructure(groups, layers, tuple(input_shape), out_shape,
                            tuple(module_names[m] for m in ignored), excluded)


def _unsupported(slices: list[DimSlice], layers: dict[str, LayerInfo], size: int) -> str:
    """Why a group cannot be pruned exactly ('' if it can): the first offending layer, named."""
    for s in slices:
        if s.module == "<parameter>":
            return "a bare nn.Parameter outside any layer (e.g. a layer scale) holds its channels"
        info = layers.get(s.module)
        if info is None:
            continue
        if info.kind == "fixed":
            return f"layer {s.module!r} has parameters lcp-tune cannot slice"
        if np.unique(s.module_idxs).size != s.module_idxs.size or s.root_idxs.max() >= size:
            return f"Torch-Pruning maps the channels into layer {s.module!r} inconsistently"
        counts = np.bincount(s.root_idxs, minlength=size)
        if counts.min() != counts.max():
            return f"layer {s.module!r} receives the group's channels unevenly"
    return ""


def split_by_coverage(root: str, size: int, slices: list[DimSlice]) -> list[tuple[str, int, list[DimSlice]]]:
    """Split a group whose layers each carry only some of its channels (a concatenation that
    meets a residual add) into parts that every layer carries wholly or not at all.

    Each part's cost is then a function of its own keep count, as the cost model needs. Parts
    are named root[start:stop] after their channel range.
    """
    covers = np.zeros((len(slices), size), dtype=bool)
    for i, s in enumerate(slices):
        covers[i, s.root_idxs[s.root_idxs < size]] = True
    if covers.all(axis=1).all() or len(slices) == 0:
        return [(root, size, slices)]
    _, part = np.unique(covers.T, axis=0, return_inverse=True)
    part = part.ravel()
    result = []
    for p in sorted(np.unique(part), key=lambda q: np.flatnonzero(part == q)[0]):
        members = np.flatnonzero(part == p)
        new_index = np.full(size, -1, dtype=np.int64)
        new_index[members] = np.arange(members.size)
        sub = []
        for s in slices:
            inside = np.isin(s.root_idxs, members)
            if inside.any():
                sub.append(DimSlice(s.module, s.dim, s.module_idxs[inside], new_index[s.root_idxs[inside]]))
        if members.size >= 2 and any(s.dim == "out" for s in sub):
            result.append((f"{root}[{members.min()}:{members.max() + 1}]", int(members.size), sub))
    return result
