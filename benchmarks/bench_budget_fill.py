"""Where each method lands against its budget, before and after the planner's budget fill.

    python benchmarks/bench_budget_fill.py

Global ranking (identity), uniform pruning and one random compensation, planned with the papers'
greedy alone (fill=False) and with the fill (the default): the FLOPs ratio reached, and the
median plan time over 20 repeats. Random-init weights: where a method lands depends on the
ranking, not on training.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from lcp_tune.models import build_model
from lcp_tune.pruning import Pruner
from lcp_tune.pruning.planner import plan_keep

CASES = [("resnet20_narrow", (1, 8, 8), 10), ("resnet56", (3, 32, 32), 10), ("resnet50", (3, 224, 224), 1000)]
BUDGETS = (0.5, 0.47, 0.3, 0.15)


def median_ms(fn, repeats: int = 20) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), out


def main() -> None:
    print("| arch | budget | method | FLOPs, greedy only | FLOPs, with fill | plan ms, greedy | plan ms, fill |")
    print("|---|---|---|---|---|---|---|")
    for arch, shape, classes in CASES:
        torch.manual_seed(0)
        pruner = Pruner(build_model(arch, classes, shape[0]), shape)
        for budget in BUDGETS:
            vectors = {"global": pruner.identity(), "uniform": pruner.uniform(budget),
                       "random": np.random.default_rng(0).uniform(-1, 1, pruner.num_params)}
            for name, vector in vectors.items():
                scores = pruner.scores(vector)
                plan = lambda fill: plan_keep(scores, pruner.cost, budget, "flops", pruner.safeguard,  # noqa: E731
                                              pruner.round_to, fill=fill)
                t_greedy, greedy = median_ms(lambda: plan(False))
                t_fill, filled = median_ms(lambda: plan(True))
                print(f"| {arch} | {budget:g} | {name} | {greedy.flops_ratio:.4f} | {filled.flops_ratio:.4f} | "
                      f"{t_greedy:.2f} | {t_fill:.2f} |", flush=True)


if __name__ == "__main__":
    main()
