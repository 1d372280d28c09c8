"""Per-channel importance metrics behind one contract.

Contract: a metric maps (model, structure, batches) to one score array per channel group,
larger = more important. Groups spanning several layers (a residual stream) take the **mean**
over their producing layers, not the sum: summed, a stream of 3-7 convs outscored every
single-conv group 3-5x on ResNet-20 and plain global ranking never pruned it.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import numpy as np
import torch
from torch import nn

from ..registry import Registry
from .errors import PruningError
from .groups import CONV_TYPES, NORM_TYPES, ChannelStructure

Batches = Optional[Iterable[tuple[torch.Tensor, torch.Tensor]]]
MetricFn = Callable[[nn.Module, ChannelStructure, Batches], list[np.ndarray]]
METRICS: Registry[MetricFn] = Registry("metric")


def list_metrics() -> list[str]:
    return METRICS.names()


def channel_metrics(name: str, model: nn.Module, structure: ChannelStructure,
                    batches: Batches = None) -> list[np.ndarray]:
    """Scores of every channel of every group under the metric `name`."""
    return METRICS.get(name)(model, structure, batches)


def _mean_over_producers(model: nn.Module, structure: ChannelStructure, metric: str,
                         per_module: Callable[[nn.Module], Optional[torch.Tensor]]) -> list[np.ndarray]:
    """Average a per-output-channel module score over the producers of each group."""
    return _mean_over_slices(model, structure, metric, lambda module, dim: per_module(module) if dim == "out" else None)


def _mean_over_slices(model: nn.Module, structure: ChannelStructure, metric: str,
                      per_slice: Callable[[nn.Module, str], Optional[torch.Tensor]]) -> list[np.ndarray]:
    """Average a per-channel score of each (module, dimension) a group spans over the slices
    that score it (`per_slice` returns None for those it does not score)."""
    modules = dict(model.named_modules())
    cache: dict[tuple[str, str], Optional[np.ndarray]] = {}
    result = []
    for group in structure.groups:
        total, members = np.zeros(group.size), 0
        for s in group.slices:
            if (s.module, s.dim) not in cache:
                value = per_slice(modules[s.module], s.dim)
                cache[s.module, s.dim] = None if value is None else value.detach().double().cpu().numpy()
            value = cache[s.module, s.dim]
            if value is None:
                continue
            per_root = np.zeros(group.size)
            np.add.at(per_root, s.root_idxs, value[s.module_idxs])
            total += per_root / np.bincount(s.root_idxs, minlength=group.size)
            members += 1
        if members == 0:
            raise PruningError(f"metric {metric!r} finds no layer to score in group {group.name!r}; "
                               f"use l1 or l2")
        result.append(total / members)
    return result


def _filter_norm(power: int) -> Callable[[nn.Module], Optional[torch.Tensor]]:
    def score(module: nn.Module) -> Optional[torch.Tensor]:
        if not isinstance(module, CONV_TYPES + (nn.Linear,)):
            return None
        w = module.weight.detach().flatten(1)
        return w.abs().sum(1) if power == 1 else w.pow(2).sum(1)
    return score


@METRICS.register("l2")
def l2_metric(model: nn.Module, structure: ChannelStructure, batches: Batches = None) -> list[np.ndarray]:
    """Sum of squared filter weights (the LCP / LeGR default)."""
    return _mean_over_producers(model, structure, "l2", _filter_norm(2))


@METRICS.register("l1")
def l1_metric(model: nn.Module, structure: ChannelStructure, batches: Batches = None) -> list[np.ndarray]:
    """Sum of absolute filter weights (Li et al. 2017)."""
    return _mean_over_producers(model, structure, "l1", _filter_norm(1))


@METRICS.register("group_l2")
def group_l2_metric(model: nn.Module, structure: ChannelStructure, batches: Batches = None) -> list[np.ndarray]:
    """Squared weights of every layer a channel touches (its filter, its BatchNorm scale, the
    next layers' input weights), averaged over those layers: Torch-Pruning's group magnitude
    (MagnitudeImportance(p=2), mean over the group), where l2 reads the filter alone."""
    def score(module: nn.Module, dim: str) -> Optional[torch.Tensor]:
        if isinstance(module, NORM_TYPES):
            return module.weight.detach().pow(2) if module.affine and dim == "out" else None
        if not isinstance(module, CONV_TYPES + (nn.Linear,)):
            return None
        w = module.weight.detach()
        if dim == "out":
            return w.flatten(1).pow(2).sum(1)
        if isinstance(module, CONV_TYPES) and module.groups > 1:
            return None   # a grouped conv's input weights are per group: its filters speak for it
        return w.transpose(0, 1).flatten(1).pow(2).sum(1)
    return _mean_over_slices(model, structure, "group_l2", score)


@METRICS.register("bn")
def bn_metric(model: nn.Module, structure: ChannelStructure, batches: Batches = None) -> list[np.ndarray]:
    """|gamma| of the BatchNorm layers that normalise each channel (network slimming)."""
    def score(module: nn.Module) -> Optional[torch.Tensor]:
        if isinstance(module, NORM_TYPES) and module.affine:
            return module.weight.detach().abs()
        return None
    return _mean_over_producers(model, structure, "bn", score)


@METRICS.register("taylor")
def taylor_metric(model: nn.Module, structure: ChannelStructure, batches: Batches = None) -> list[np.ndarray]:
    """First-order Taylor |activation x gradient| per output channel (Molchanov et al. 2019).

    Needs a few training batches; the model's weights and BN statistics are left untouched.
    """
    if batches is None:
        raise PruningError("metric 'taylor' needs training batches; pass batches or use l1, l2 or bn")
    modules = dict(model.named_modules())
    producers = {s.module for g in structure.groups for s in g.producers
                 if isinstance(modules[s.module], CONV_TYPES + (nn.Linear,))}
    sums: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(mod, inputs, out):
            def grad_hook(grad):
                contrib = (out.detach() * grad).flatten(2).sum(2).abs() if out.dim() > 2 else (out.detach() * grad).abs()
                sums[name] = sums.get(name, 0) + contrib.sum(0)
            out.register_hook(grad_hook)
        return hook

    hooks = [modules[n].register_forward_hook(make_hook(n)) for n in producers]
    was_training = model.training
    buffers = {n: b.clone() for n, b in model.named_buffers()}   # BN statistics move in train mode
    model.train()
    try:
        seen = 0
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            seen += 1
        if seen == 0:
            raise PruningError("metric 'taylor' got an empty batch iterator")
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        with torch.no_grad():
            for name, value in model.named_buffers():
                value.copy_(buffers[name])
    return _mean_over_producers(model, structure, "taylor", lambda m: _lookup(sums, modules, m))


def _lookup(sums: dict, modules: dict, module: nn.Module) -> Optional[torch.Tensor]:
    for name, m in modules.items():
        if m is module:
            return sums.get(name)
    return None
