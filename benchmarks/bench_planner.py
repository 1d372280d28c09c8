"""Per-candidate cost of the pruning engine: compensation + plan, surgery, post-surgery check.

    python benchmarks/bench_planner.py              # ResNet-56, MobileNetV2 (CIFAR), ResNet-50 (224)
    python benchmarks/bench_planner.py --smoke      # seconds: ResNet-56 only, few candidates
    python benchmarks/bench_planner.py --threads 2  # torch on both cores

Each candidate is a random additive compensation (uniform in [-1, 1] sigma units, l2 metric,
safeguard 10%), as in the issue's measurement of the authors' LeGR code. The metric itself is
computed once per base model (it does not depend on the candidate), so the per-candidate work
is: compensation -> threshold plan -> surgery (a new, smaller module) -> check. Reported: the
median over all candidates, in milliseconds, and the plan time per channel / log2(channels)
across depths to show the N log N growth.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from lcp_tune.models import build_model
from lcp_tune.pruning import Pruner
from lcp_tune.pruning.check import verify_pruned
from lcp_tune.pruning.surgery import prune_model

CASES = [("resnet56", (3, 32, 32), (0.2, 0.47, 0.7)),
         ("mobilenet_v2_cifar", (3, 32, 32), (0.13, 0.2, 0.47, 0.7)),
         ("resnet50", (3, 224, 224), (0.2, 0.47, 0.7))]


def _ms(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return (time.perf_counter() - start) * 1e3, out


def bench_case(arch: str, shape: tuple[int, ...], budgets, candidates: int, seed: int = 0) -> list[dict]:
    """Median times per candidate for one architecture at each budget."""
    torch.manual_seed(seed)
    pruner = Pruner(build_model(arch, 1000 if shape[1] == 224 else 10, shape[0]), shape)
    pruner.apply(pruner.plan(pruner.identity(), 0.5))      # warm-up + the once-per-structure check
    rng = np.random.default_rng(seed)
    rows = []
    for budget in budgets:
        plan_ms, surgery_ms, check_ms = [], [], []
        for _ in range(candidates):
            vector = rng.uniform(-1, 1, pruner.num_params)
            t_plan, plan = _ms(pruner.plan, vector, budget)
            t_surgery, model = _ms(prune_model, pruner.model, pruner.structure, plan)
            t_check, _ = _ms(verify_pruned, model, pruner.structure, pruner.cost, plan)
            plan_ms.append(t_plan)
            surgery_ms.append(t_surgery)
            check_ms.append(t_check)
        rows.append({"arch": arch, "budget": budget, "channels": int(pruner.structure.group_sizes.sum()),
                     "groups": len(pruner.group_names), "plan": statistics.median(plan_ms),
                     "surgery": statistics.median(surgery_ms), "check": statistics.median(check_ms),
                     "flops_ratio": plan.flops_ratio})
    return rows


def scaling(candidates: int) -> list[dict]:
    """Plan time against the number of channels N (CIFAR ResNets of growing depth)."""
    rows = []
    for depth in (20, 56, 110):
        row = bench_case(f"resnet{depth}", (3, 32, 32), (0.47,), candidates, seed=1)[0]
        n = row["channels"]
        rows.append({**row, "us_per_nlogn": row["plan"] * 1e3 / (n * np.log2(n))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="ResNet-56 only, 5 candidates")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, as a Ray trial with cpus_per_trial=1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = CASES[:1] if args.smoke else CASES
    candidates = 5 if args.smoke else args.candidates
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("| arch | budget | channels | groups | plan ms | surgery ms | plan+surgery ms | check ms | FLOPs kept |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arch, shape, budgets in cases:
        n = candidates if arch != "resnet50" else max(3, candidates // 3)
        for r in bench_case(arch, shape, budgets, n):
            print(f"| {r['arch']} {shape[1]}x{shape[2]} | {r['budget']:g} | {r['channels']} | {r['groups']} | "
                  f"{r['plan']:.2f} | {r['surgery']:.2f} | {r['plan'] + r['surgery']:.2f} | {r['check']:.1f} | "
                  f"{r['flops_ratio']:.3f} |")
    if not args.smoke:
        print("\n| arch | channels N | plan ms | plan us / (N log2 N) |\n|---|---|---|---|")
        for r in scaling(candidates):
            print(f"| {r['arch']} | {r['channels']} | {r['plan']:.2f} | {r['us_per_nlogn']:.4f} |")


if __name__ == "__main__":
    main()
