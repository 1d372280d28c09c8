"""Pruner: one object holding a base model's traced structure, metrics and cost model.

Built once per process (tracing costs ~0.1 s), then every candidate is cheap:
vector -> scores -> plan -> (optionally) surgery + check.
"""
from __future__ import annotations

import copy
from typing import Callable, Optional, Union

import numpy as np
from torch import nn

from .compensation import COMPENSATIONS, pooled_scale
from .errors import PruningError
from .groups import trace_structure
from .metrics import Batches, channel_metrics
from .latency import LatencyModel, LatencySettings, Measure, build_latency_model
from .planner import Plan, check_budget, group_steps, make_plan, min_keep, plan_keep, round_up
from .resources import CostModel
from .check import verify_pruned
from .surgery import prune_model
from .warmstart import uniform_keep, uniform_shifts

AUTO = "auto"   # round_to: the width multiple the latency model measured


class Pruner:
    """Layer-compensated pruning of one base model.

    Args:
        model: the base network (left untouched; surgery works on copies).
        input_shape: one sample's shape, e.g. (3, 32, 32); spatial sizes set the FLOPs.
        metric: a registered metric name (l1, l2, bn, taylor, group_l2).
        form: a registered compensation form (additive, affine).
        safeguard: minimum kept fraction per group (LeGR's 10%).
        round_to: keep counts rounded up to multiples of this; "auto": of the width multiple
            where the attached latency model found time to step (see `round_to`).
        batches: training batches, for data-dependent metrics (taylor).
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], metric: str = "l2",
                 form: str = "additive", safeguard: float = 0.1, round_to: Union[int, str] = 1,
                 batches: Batches = None, ignored_layers: Optional[list[str]] = None):
        self.model = model
        self.form = COMPENSATIONS.get(form)
        self.metric_name = metric
        self.safeguard, self.round_to_setting = safeguard, round_to
        self.structure = trace_structure(model, input_shape, ignored_layers)
        self.cost = CostModel(self.structure)
        self.metrics = channel_metrics(metric, model, self.structure, batches)
        self.sigma = pooled_scale(self.metrics)
        self._equivalence_checked = False
        self._batches = batches

    def with_metric(self, metric: str) -> "Pruner":
        """This pruner ranking channels by `metric` instead: the same traced structure, cost model
        (latency included), form, safeguard and rounding, so its plans cost what this one's do."""
        other = copy.copy(self)
        other.metric_name = metric
        other.metrics = channel_metrics(metric, self.model, self.structure, self._batches)
        other.sigma = pooled_scale(other.metrics)
        return other

    @property
    def round_to(self) -> int:
        """The width multiple every plan keeps. For "auto": the attached latency model's
        `width_multiple`, capped at a quarter of the median group width so that most groups keep
        a few widths to choose from (a measured 32 on a network of 16-wide groups would make
        them unprunable)."""
        if self.round_to_setting != AUTO:
            return self.round_to_setting
        if self.cost.latency is None:
            raise PruningError("round_to 'auto' needs a latency model measured on the target device "
                               "(measure_latency_model or use_latency_model)")
        cap = max(1, int(np.median(self.structure.group_sizes)) // 4)
        return int(min(self.cost.latency.width_multiple, 1 << (cap.bit_length() - 1)))

    @property
    def group_names(self) -> list[str]:
        return self.structure.group_names

    @property
    def num_params(self) -> int:
        """Length of a compensation vector."""
        return len(self.structure.groups) * self.form.params_per_group

    def identity(self) -> np.ndarray:
        """The compensation that is plain global ranking."""
        return self.form.identity(len(self.structure.groups))

    def uniform(self, budget: float, resource: str = "flops") -> np.ndarray:
        """The compensation whose plan is uniform pruning at `budget` (a warm start)."""
        check_budget(budget)
        keep = uniform_keep(self.cost, budget, resource, self.safeguard, self.round_to)
        shifts = uniform_shifts(self.metrics, keep, self.cost, resource) / self.sigma
        vector = self.identity()
        vector[-len(shifts):] = shifts   # the additive part is the last block of every form
        return vector

    def scores(self, vector: np.ndarray) -> list[np.ndarray]:
        return self.form.apply(self.metrics, vector, self.sigma)

    def plan(self, vector: np.ndarray, budget: float, resource: str = "flops") -> Plan:
        return plan_keep(self.scores(vector), self.cost, budget, resource, self.safeguard, self.round_to)

    def apply(self, plan: Plan, model: Optional[nn.Module] = None, check: bool = True) -> nn.Module:
        """A physically smaller copy of `model` (default: the base), checked against `plan`.

        With `check`, widths, parameters, FLOPs and output shape are verified on every call
        (one forward pass), and the first call also compares the pruned model's layer outputs
        with the base's (see check.py): a mis-wired channel is caught once per structure.
        """
        source = self.model if model is None else model
        pruned = prune_model(source, self.structure, plan)
        if check:
            base = None if self._equivalence_checked else source
            verify_pruned(pruned, self.structure, self.cost, plan, base=base)
            self._equivalence_checked = True
        return pruned

    def measure_latency_model(self, settings: LatencySettings, log: Callable[[str], None] = lambda s: None,
                              measure: Optional[Measure] = None) -> LatencyModel:
        """Time this network's layers on the target device and make "latency" a resource of
        this pruner (a minute on ResNet-20, more on ResNet-50: callers cache `to_dict()`).
        `measure(module, input) -> seconds` replaces the stopwatch (benchmarks, tests)."""
        model = build_latency_model(self.model, self.cost, self.structure.input_shape, settings,
                                    self._uniform_copy, log, measure)
        self.cost.attach_latency(model)
        return model

    def use_latency_model(self, stored: dict, settings: Optional[LatencySettings] = None) -> LatencyModel:
        """Make "latency" a resource from a stored model; PruningError when it is not this
        network's or (given `settings`) was measured under other settings."""
        model = LatencyModel.from_dict(stored, self.cost, settings)
        self.cost.attach_latency(model)
        return model

    def _uniform_copy(self, fraction: float, multiple: int = 1):
        """The base with every group at `fraction` of its width (safeguard and rounding applied),
        widths on the hardware's `multiple` too (where a latency model calibrates)."""
        sizes = self.structure.group_sizes
        setting = 1 if self.round_to_setting == AUTO else int(self.round_to_setting)
        steps = group_steps(self.structure, int(np.lcm(setting, multiple)))
        keep = round_up(np.maximum(min_keep(sizes, self.safeguard, steps), np.ceil(fraction * sizes).astype(np.int64)),
                        sizes, steps)
        if np.array_equal(keep, sizes):
            return self.model, keep
        plan = make_plan(self.metrics, keep, self.cost, 1.0, "flops")
        return self.apply(plan, check=False), keep

    @property
    def excluded(self) -> dict[str, str]:
        """Channel groups left unpruned, with the reason (e.g. an unsupported layer)."""
        return self.structure.excluded
