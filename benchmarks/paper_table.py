"""The papers' comparison at small scale: learned compensation vs uniform, global and random.

    python benchmarks/paper_table.py                      # the BENCHMARKS.md table (see there for time)
    python benchmarks/paper_table.py --smoke              # a minute: 1 budget, 1 seed, tiny net

For every budget and seed, one `--method lcp` run gives the learned compensation and the two
warm starts it searched from (global ranking, uniform pruning), each fully fine-tuned the same
way; one `--method random` run gives the best of the same number of random compensations.
Every number comes from the runs' report.json: the search objective (validation loss after
the trial's short recovery), test accuracy right after that recovery, test accuracy after the
full fine-tune, the gap to the base model, and the meta-learning wall time and trials.
On a GPU machine, `--arch resnet56 --data cifar10 --data-dir DIR --budgets 0.47` gives a row
comparable with the papers.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import pandas as pd

from lcp_tune.config import DEFAULT_RECIPE, ExperimentConfig, recipe_changes
from lcp_tune.tune.cluster import init_ray
from lcp_tune.run.search import run_search_experiment

METHOD_ORDER = ["lcp", "uniform", "global", "random"]


def settings(args: argparse.Namespace, budget: float, seed: int, method: str) -> ExperimentConfig:
    changes = recipe_changes(args.recipe or DEFAULT_RECIPE.get(args.data, "digits"))
    changes.update({"arch": args.arch, "data": args.data, "data_dir": args.data_dir, "seed": seed,
                    "method": method, "prune.budget": budget, "search.num_samples": args.trials,
                    "search.searcher": args.searcher})
    if args.val_fraction is not None:
        changes["val_fraction"] = args.val_fraction
    if args.tau_hat is not None:
        changes["search.tau_hat"] = args.tau_hat
    if args.finetune_epochs is not None:
        changes["finetune.epochs"] = args.finetune_epochs
    if args.base_epochs is not None:
        changes["base_train.epochs"] = args.base_epochs
    return ExperimentConfig().replace(**changes)


def rows_of(report: dict, budget: float, seed: int, wall: float) -> list[dict]:
    rows = []
    for name, m in report["methods"].items():
        rows.append({"budget": budget, "seed": seed, "method": name, "base_test_acc": report["base_test_acc"],
                     "search_objective": m.get("search_objective"), "recovery_test_acc": m.get("recovery_test_acc"),
                     "test_acc": m["test_acc"], "gap": m["gap"], "flops_ratio": m["flops_ratio"],
                     "trials": report["num_trials"] if name == report["method"] else 0,
                     "search_s": report["search_wall_time_s"] if name == report["method"] else 0.0,
                     "run_s": wall})
    return rows


def run_all(args: argparse.Namespace, out: Path) -> pd.DataFrame:
    rows, done = [], out / "rows.jsonl"
    if done.is_file():   # resume: a finished (budget, seed, method) run is never redone
        rows = [json.loads(line) for line in done.read_text().splitlines() if line.strip()]
    finished = {(r["budget"], r["seed"], r["run"]) for r in rows}
    for budget in args.budgets:
        for seed in args.seeds:
            for method in args.runs:
                if (budget, seed, method) in finished:
                    continue
                start = time.time()
                report = run_search_experiment(settings(args, budget, seed, method),
                                               out / f"b{budget}-s{seed}-{method}", log=lambda s: None)
                new = [dict(r, run=method) for r in rows_of(report, budget, seed, time.time() - start)]
                with done.open("a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in new)
                rows += new
                print(f"budget {budget} seed {seed} {method}: " + ", ".join(
                    f"{r['method']} {r['test_acc'] * 100:.2f}%" for r in new), flush=True)
    return pd.DataFrame(rows)


def spread(series: pd.Series, scale: float = 1.0, digits: int = 2) -> str:
    return f"{series.mean() * scale:.{digits}f} ± {series.std(ddof=1) * scale if len(series) > 1 else 0:.{digits}f}"


def markdown(df: pd.DataFrame, args: argparse.Namespace) -> str:
    lines = [f"| budget | method | search objective | test acc after recovery (%) | test acc after fine-tune (%) "
             f"| gap (%) | lcp better than it (seeds) | meta-learning s | trials |", "|" + "---|" * 9]
    for budget, by_budget in df.groupby("budget", sort=False):
        lcp = by_budget[by_budget.method == "lcp"].set_index("seed")
        for method in METHOD_ORDER:
            m = by_budget[by_budget.method == method].set_index("seed")
            if m.empty:
                continue
            wins = "" if method == "lcp" else f"{int((lcp.test_acc > m.test_acc).sum())}/{len(m)} " \
                f"(ties {int((lcp.test_acc == m.test_acc).sum())})"
            trials = m.trials.mean() if method in ("lcp", "random") else 0
            seconds = m.search_s.mean() if method in ("lcp", "random") else 0
            lines.append(f"| {budget:g} | {method} | {spread(m.search_objective, 1, 4)} | "
                         f"{spread(m.recovery_test_acc, 100)} | {spread(m.test_acc, 100)} | {spread(m.gap, 100)} | "
                         f"{wins} | {seconds:.0f} | {trials:.0f} |")
    base = df.drop_duplicates("seed").base_test_acc
    lines.append("")
    lines.append(f"Base test accuracy {spread(base, 100)}% over {len(base)} seeds; mean ± std over seeds.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--recipe")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3, 0.15, 0.07])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--searcher", default="tpe")
    parser.add_argument("--runs", nargs="+", default=["lcp", "random"], choices=["lcp", "random"],
                        help="lcp runs also give uniform and global; random is its own run")
    parser.add_argument("--val-fraction", type=float)
    parser.add_argument("--tau-hat", type=int)
    parser.add_argument("--finetune-epochs", type=int)
    parser.add_argument("--base-epochs", type=int)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/paper_table"))
    parser.add_argument("--smoke", action="store_true", help="1 budget, 1 seed, 4 trials, a tiny net")
    args = parser.parse_args()
    if args.smoke:
        args.arch, args.budgets, args.seeds, args.trials = "resnet20_tiny", [0.3], [0], 4
        args.tau_hat, args.finetune_epochs, args.base_epochs = 10, 1, 2
    args.out.mkdir(parents=True, exist_ok=True)
    init_ray(log=lambda s: None)
    start = time.time()
    df = run_all(args, args.out)
    df.to_parquet(args.out / "paper_table.parquet")
    df.to_csv(args.out / "paper_table.csv", index=False)
    table = markdown(df, args)
    header = (f"`python benchmarks/paper_table.py {' '.join(sys.argv[1:])}`".replace("  ", " ") +
              f" on {platform.machine()} {platform.system()}, this run {time.time() - start:.0f} s\n\n")
    (args.out / "paper_table.md").write_text(header + table + "\n")
    print(header + table)


if __name__ == "__main__":
    main()
