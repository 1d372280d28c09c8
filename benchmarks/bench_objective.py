"""Does the search's objective rank candidates as the full fine-tune does? (issue 13, item 5)

    python benchmarks/bench_objective.py --budgets 0.3 0.15 --seeds 0     # Fashion-MNIST, ~25 min a budget

A search can only beat uniform pruning after the fine-tune if its objective (validation loss after
a short recovery) orders candidates near uniform the way the fine-tuned test accuracy does. Running
a whole search per objective setting is expensive and noisy; this measures the objective settings
directly. Per (seed, budget) it takes a fixed candidate set: uniform pruning, plain global ranking,
and allocations scattered around uniform (shifts of 0.25, 0.5 and 1 sigma, where the search's box is
+-2), fine-tunes each fully (the one fine-tune every method gets) and tests it on all test images:
the ground truth. For the same candidates it records every objective the issue lists:
validation loss and accuracy after BN recalibration alone (EagleEye, tau_hat 0) and after 50, 100,
200 and 300 recovery steps at lr 0.02 and 0.05 (validation does not disturb the training, so one
300-step run gives every step count), on the whole validation split and on its first 1,000 images.

Every candidate's row is appended to `rows.jsonl` in `--out` and skipped when the command runs
again. The table: per objective, Spearman's rho against the fine-tuned test accuracy, and the test
accuracy of the candidate it would pick, against uniform's.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lcp_tune.candidate import CandidateEvaluator, build_pruner
from lcp_tune.data import load_experiment_data
from lcp_tune.run.base_model import obtain_base
from lcp_tune.run.finetune import finetune_and_test
from lcp_tune.run.settings import resolve_config
from lcp_tune.training import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/results_file.py beside this file
from results_file import append_rows, read_rows  # noqa: E402

STEPS = (50, 100, 200, 300)
LRS = (0.02, 0.05)
SMALL_VAL = 1000
SHIFTS = (0.25, 0.5, 1.0)   # std of the random shifts around uniform, in units of sigma


def experiment(args: argparse.Namespace, seed: int, budget: float, **changes):
    return resolve_config({"arch": args.arch, "data": "fashion-mnist", "data_dir": args.data_dir, "seed": seed,
                           "prune.budget": budget, "subset": args.subset, "val_fraction": args.val_fraction,
                           "finetune.epochs": args.finetune_epochs, **changes})


def candidates(pruner, budget: float, per_shift: int, seed: int) -> dict[str, np.ndarray]:
    """Uniform, global, and `per_shift` random allocations around uniform at each shift size."""
    uniform = pruner.uniform(budget)
    out = {"uniform": uniform, "global": pruner.identity()}
    rng = np.random.default_rng(1000 + seed)
    for shift in SHIFTS:
        for k in range(per_shift):
            out[f"u{shift:g}-{k}"] = uniform + rng.normal(0.0, shift, size=uniform.shape)
    return out


def objectives(config, data, pruner, vector: np.ndarray) -> dict[str, float]:
    """Every objective variant of one candidate (lower is better for losses; accuracies negated
    later when ranked)."""
    out: dict[str, float] = {}
    small = torch.utils.data.DataLoader(torch.utils.data.Subset(data.val, range(min(SMALL_VAL, len(data.val)))),
                                        batch_size=256)
    for lr in LRS:
        cfg = config.replace(**{"search.lr": lr, "search.tau_hat": max(STEPS), "search.scheduler": "asha",
                                "search.report_every": STEPS[0]})
        evaluator = CandidateEvaluator(cfg, data=data, pruner=pruner)

        def report(result: dict, lr=lr, evaluator=evaluator) -> None:
            if result["step"] in STEPS:
                key = f"lr{lr:g}@{result['step']}"
                out[f"loss {key}"], out[f"acc {key}"] = result["val_loss"], result["val_acc"]
                with torch.random.fork_rng(devices=[]):   # as the evaluator's own validation
                    part = evaluate(evaluator.last_model, small)
                out[f"loss1k {key}"], out[f"acc1k {key}"] = part.loss, part.accuracy

        evaluator.evaluate(vector, report=report)
    bn_only = CandidateEvaluator(config.replace(**{"search.tau_hat": 0}), data=data, pruner=pruner).evaluate(vector)
    out["loss bn-only"], out["acc bn-only"] = bn_only["val_loss"], bn_only["val_acc"]
    return out


def run(args: argparse.Namespace) -> pd.DataFrame:
    done = args.out / "rows.jsonl"
    rows = read_rows(done)
    finished = {(r["seed"], r["budget"], r["candidate"]) for r in rows}
    for seed in args.seeds:
        for budget in args.budgets:
            config = experiment(args, seed, budget)
            data = load_experiment_data(config)
            base, _ = obtain_base(config, data)
            pruner = build_pruner(config, base, data)
            for name, vector in candidates(pruner, budget, args.per_shift, seed).items():
                if (seed, budget, name) in finished:
                    continue
                start = time.time()
                obj = objectives(config, data, pruner, vector)
                _, result = finetune_and_test(pruner, vector, config, data, label=name,
                                              checkpoint_dir=args.out / f"s{seed}-b{budget:g}")
                row = {"seed": seed, "budget": budget, "candidate": name, "test_acc": result["test_acc"],
                       "flops_ratio": result["flops_ratio"], "params_ratio": result["params_ratio"],
                       "vector": vector.tolist(), "run_s": time.time() - start, **obj}
                append_rows(done, [row])
                rows.append(row)
                print(f"seed {seed} budget {budget:g} {name}: test {result['test_acc'] * 100:.2f}%, "
                      f"loss@100 {obj['loss lr0.02@100']:.4f}, {row['run_s']:.0f}s", flush=True)
    return pd.DataFrame(rows)


def table(df: pd.DataFrame) -> str:
    """Per objective: rank agreement with the fine-tuned accuracy and what its pick scores."""
    from scipy import stats

    keys = [c for c in df.columns if c.startswith(("loss", "acc"))]
    lines = ["| objective | " + " | ".join(f"s{s} b{b:g}: rho, pick − uniform" for (s, b), _ in df.groupby(["seed", "budget"]))
             + " | mean rho |", "|---|" + "---|" * (df.groupby(["seed", "budget"]).ngroups + 1)]
    for key in keys:
        cells, rhos = [], []
        for _, g in df.groupby(["seed", "budget"]):
            score = g[key] if key.startswith("loss") else -g[key]   # lower is better
            rho = stats.spearmanr(-score, g.test_acc).statistic
            pick = g.loc[score.idxmin()]
            uniform = g[g.candidate == "uniform"].test_acc.iloc[0]
            cells.append(f"{rho:+.2f}, {(pick.test_acc - uniform) * 100:+.2f} ({pick.candidate})")
            rhos.append(rho)
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {np.mean(rhos):+.2f} |")
    spreads = []
    for (s, b), g in df.groupby(["seed", "budget"]):
        u = g[g.candidate == "uniform"].test_acc.iloc[0]
        near = g[g.candidate.str.startswith("u0")]
        spreads.append(f"s{s} b{b:g}: uniform {u * 100:.2f}%, best {g.test_acc.max() * 100:.2f}% "
                       f"({g.loc[g.test_acc.idxmax(), 'candidate']}), global "
                       f"{g[g.candidate == 'global'].test_acc.iloc[0] * 100:.2f}%, "
                       f"{len(g)} candidates, test acc std {g.test_acc.std() * 100:.2f} "
                       f"(within 0.5 sigma of uniform: {near.test_acc.std() * 100:.2f})")
    return "\n".join(lines + [""] + spreads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20_narrow")
    parser.add_argument("--data-dir")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3, 0.15])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--per-shift", type=int, default=3, help="random candidates per shift size")
    parser.add_argument("--subset", type=float, default=0.25)
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/objective_fidelity"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    df = run(args)
    text = f"`python benchmarks/bench_objective.py {' '.join(sys.argv[1:])}`\n\n" + table(df)
    (args.out / "objective.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
