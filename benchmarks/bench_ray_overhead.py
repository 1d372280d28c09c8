"""Ray Tune overhead: trials per minute of a real search against a plain loop of the same evaluations.

    python benchmarks/bench_ray_overhead.py [--trials 24] [--tau-hat 100]

Three ways to run the same N candidate evaluations of the default task (ResNet-20 on digits,
budget 0.5, random compensations from one seed):
  loop        one process, torch with all cores, no Ray
  ray 2x1     Ray Tune, two concurrent one-thread trials (the default)
  ray 1x2     Ray Tune, one two-thread trial at a time
Ray's start-up (ray.init) is timed separately from the search itself.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lcp_tune.run.base_model import obtain_base
from lcp_tune.candidate import CandidateEvaluator
from lcp_tune.config import ExperimentConfig
from lcp_tune.data import load_experiment_data
from lcp_tune.searchers import SearchSpace


def candidates(n: int, dims: int, bound: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.zeros(dims)] + [rng.uniform(-bound, bound, dims) for _ in range(n - 1)]


def plain_loop(config: ExperimentConfig, base_state: dict, vectors: list[np.ndarray]) -> float:
    torch.set_num_threads(os.cpu_count() or 1)
    evaluator = CandidateEvaluator(config, base_state)
    start = time.time()
    for v in vectors:
        evaluator.evaluate(v)
    return time.time() - start


def ray_search(config: ExperimentConfig, base_state: dict, vectors: list[np.ndarray], cpus: int) -> tuple[float, float]:
    import ray

    from lcp_tune.tune.cluster import init_ray
    from lcp_tune.tune.tuner import run_search

    config = config.replace(**{"search.cpus_per_trial": cpus, "search.searcher": "random"})
    start = time.time()
    init_ray(num_cpus=os.cpu_count(), log=lambda s: None)
    startup = time.time() - start
    space = SearchSpace.box(len(vectors[0]), config.search.bound, vectors)   # every vector enqueued
    with tempfile.TemporaryDirectory() as tmp:
        _, wall = run_search(config, tmp, base_state, space, Path(tmp) / "cache", f"bench-{cpus}-{time.time()}",
                             warm_names=(), log=lambda s: None)
    ray.shutdown()
    return startup, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--tau-hat", type=int, default=100)
    parser.add_argument("--out", default="benchmarks/results/ray_overhead.json")
    args = parser.parse_args()
    config = ExperimentConfig().replace(**{"search.num_samples": args.trials, "search.tau_hat": args.tau_hat})
    data = load_experiment_data(config)
    base, _ = obtain_base(config, data, print)
    state = base.state_dict()
    from lcp_tune.candidate import build_pruner
    dims = build_pruner(config, base, data).num_params
    vectors = candidates(args.trials, dims, config.search.bound)
    rows = {"loop": {"startup_s": 0.0, "search_s": plain_loop(config, state, vectors)}}
    for cpus, name in ((1, "ray 2x1"), (2, "ray 1x2")):
        startup, wall = ray_search(config, state, vectors, cpus)
        rows[name] = {"startup_s": startup, "search_s": wall}
    print(f"{args.trials} evaluations, tau_hat {args.tau_hat}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"{'run':<10}{'startup s':>11}{'search s':>10}{'trials/min':>12}{'vs loop':>9}")
    loop = rows["loop"]["search_s"]
    for name, r in rows.items():
        r["trials_per_min"] = args.trials / r["search_s"] * 60
        r["ratio_vs_loop"] = loop / r["search_s"]
        print(f"{name:<10}{r['startup_s']:>11.1f}{r['search_s']:>10.1f}{r['trials_per_min']:>12.1f}"
              f"{r['ratio_vs_loop']:>9.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
