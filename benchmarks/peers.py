"""Torch-Pruning's own pruners as a user of that library would run them: the peers' baselines.

Magnitude (L2) importance, the classifier left alone, at most 90% of any layer removed (the same
floor as lcp-tune's 10% safeguard), and Torch-Pruning's iterative steps taken one at a time until
the FLOPs, counted as lcp-tune counts them (conv and linear multiply-accumulates), reach the
budget. `global_pruning=True` ranks all channels together (as plain global ranking does);
False prunes every layer by the same ratio (as uniform pruning does).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from lcp_tune.pruning import measure_cost

STEPS = 1000         # pruning_ratio 0.9 in 1000 steps: fine enough to stop within about 0.5% of the budget


def torch_pruning_model(base: nn.Module, input_shape: tuple[int, ...], budget: float,
                        global_pruning: bool) -> tuple[nn.Module, float]:
    """A copy of `base` pruned by Torch-Pruning to at most `budget` of its FLOPs; (model, ratio)."""
    import torch_pruning as tp

    model = copy.deepcopy(base).cpu().eval()
    example = torch.zeros(1, *input_shape)
    with torch.no_grad():
        want = model(example).shape
    classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                  global_pruning=global_pruning, pruning_ratio=0.9, max_pruning_ratio=0.9,
                                  iterative_steps=STEPS, ignored_layers=classifier)
    base_flops = measure_cost(model, input_shape)[0]
    ratio = 1.0
    for _ in range(STEPS):
        pruner.step()
        ratio = measure_cost(model, input_shape)[0] / base_flops
        if ratio <= budget:
            break
    if ratio > budget:
        raise RuntimeError(f"Torch-Pruning reached only {ratio:.3f} of the FLOPs for a {budget} budget")
    with torch.no_grad():
        got = model(example).shape
    if got != want:
        raise RuntimeError(f"Torch-Pruning changed the output shape from {tuple(want)} to {tuple(got)}")
    return model, ratio
