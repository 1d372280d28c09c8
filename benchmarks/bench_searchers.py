"""Searchers compared on the default task at an equal number of trials, over seeds.

    python benchmarks/bench_searchers.py [--seeds 0 1 2] [--trials 32]

Each run is `lcp-tune search` on the embedded default (same budget, tau_hat, trials), only the
searcher and the seed change. Reported: the best validation loss the search reached (its
objective), the test accuracy of its best compensation after the final fine-tune, and the
search wall time. Results are appended per run, so an interrupted benchmark resumes.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import pandas as pd

from lcp_tune.config import ExperimentConfig
from lcp_tune.tune.cluster import init_ray
from lcp_tune.searchers import list_searchers
from lcp_tune.run.search import run_search_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searchers", nargs="+", default=list_searchers())
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=None, help="default: the default config's")
    parser.add_argument("--budget", type=float, default=None, help="default: the default config's")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/searchers"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / "rows.jsonl"
    rows = [json.loads(l) for l in rows_path.read_text().splitlines()] if rows_path.is_file() else []
    done = {(r["searcher"], r["seed"]) for r in rows}
    init_ray(log=lambda s: None)
    start = time.time()
    for seed in args.seeds:
        for searcher in args.searchers:
            if (searcher, seed) in done:
                continue
            changes = {"seed": seed, "search.searcher": searcher, "baselines": False}
            if args.trials:
                changes["search.num_samples"] = args.trials
            if args.budget:
                changes["prune.budget"] = args.budget
            report = run_search_experiment(ExperimentConfig().replace(**changes),
                                           args.out / f"{searcher}-s{seed}", log=lambda s: None)
            row = {"searcher": searcher, "seed": seed, "best_val_loss": report["search_objective"],
                   "global_val_loss": report["warm_start_objectives"]["global"],
                   "uniform_val_loss": report["warm_start_objectives"]["uniform"],
                   "test_acc": report["pruned_test_acc"], "search_s": report["search_wall_time_s"],
                   "trials": report["num_trials"], "budget": report["budget"]}
            rows.append(row)
            with rows_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{searcher} seed {seed}: best val loss {row['best_val_loss']:.4f}, "
                  f"test {row['test_acc'] * 100:.2f}%, {row['search_s']:.0f}s", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(args.out / "searchers.csv", index=False)
    g = df.groupby("searcher")
    table = ["| searcher | best val loss (mean ± std) | vs better warm start | test acc after fine-tune (%) | search s |",
             "|---|---|---|---|---|"]
    for name, m in sorted(g, key=lambda kv: kv[1].best_val_loss.mean()):
        warm = m[["global_val_loss", "uniform_val_loss"]].min(axis=1)
        table.append(f"| {name} | {m.best_val_loss.mean():.4f} ± {m.best_val_loss.std(ddof=1):.4f} | "
                     f"{(m.best_val_loss / warm).mean():.2f}x | {m.test_acc.mean() * 100:.2f} ± "
                     f"{m.test_acc.std(ddof=1) * 100:.2f} | {m.search_s.mean():.0f} |")
    text = (f"`python benchmarks/bench_searchers.py` on {platform.machine()} {platform.system()}, "
            f"{len(args.seeds)} seeds, this run {time.time() - start:.0f} s\n\n" + "\n".join(table))
    (args.out / "searchers.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
