"""Which recovery length ranks candidates as the fine-tune does? The evidence behind the race's rungs.

    python benchmarks/bench_rungs.py --seeds 2 --budgets 0.3 0.15 \
        --bases benchmarks/results/paper_table_fashion-mnist_resnet20_narrow/cache

The race (lcp_tune/tune/race.py) re-scores the search's finalists after longer recoveries. This
measures, on a fixed candidate set like BENCHMARKS' objective study (uniform, global ranking,
uniform widths with group_l2 channels, and random allocations around uniform at shifts of 0.25,
0.5 and 1 sigma), the validation loss after 100 (the search's tau_hat), 200 (about one epoch of
the 14,250-image search split at batch 64), 300, 450 (about two epochs) and 600 recovery steps
at lr 0.02, against the ground truth: each candidate's fine-tuned test accuracy (the full
fine-tune every method gets, from the candidate recovered 600 steps, as the product now does).
Per fidelity: Spearman's rho against the fine-tuned accuracy, and its pick minus uniform. Then
the race itself, replayed on the candidate set: finalists by the 100-step loss, halved at each
rung of a schedule, the pick against uniform.

Every candidate's row is appended to `rows.jsonl` in `--out` and skipped when run again;
`--bases` reuses a table's base models (the same seeds, splits and base weights).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lcp_tune.candidate import CandidateEvaluator, build_pruner
from lcp_tune.data import load_experiment_data
from lcp_tune.run.base_model import obtain_base
from lcp_tune.run.finetune import finetune_model, test_accuracy
from lcp_tune.run.settings import resolve_config

sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/ helpers beside this file
from results_file import append_rows, read_rows  # noqa: E402

STEPS = (100, 200, 300, 450, 600)
SHIFTS = (0.25, 0.5, 1.0)
SCHEDULES = {"100 only (no race)": (), "300": (300,), "300, 600 (default)": (300, 600), "200, 450": (200, 450),
             "600": (600,)}


def experiment(args: argparse.Namespace, seed: int, budget: float):
    return resolve_config({"arch": args.arch, "data": "fashion-mnist", "data_dir": args.data_dir, "seed": seed,
                           "prune.budget": budget, "subset": args.subset, "val_fraction": args.val_fraction,
                           "finetune.epochs": args.finetune_epochs, "search.scheduler": "asha",
                           "search.report_every": 50, "search.tau_hat": max(STEPS)})


def candidates(pruner, budget: float, per_shift: int, seed: int) -> dict[str, tuple[np.ndarray, str | None]]:
    uniform = pruner.uniform(budget)
    out = {"uniform": (uniform, None), "global": (pruner.identity(), None),
           "uniform/group_l2": (pruner.with_metric("group_l2").uniform(budget), "group_l2")}
    rng = np.random.default_rng(1000 + seed)
    for shift in SHIFTS:
        for k in range(per_shift):
            out[f"u{shift:g}-{k}"] = (uniform + rng.normal(0.0, shift, size=uniform.shape), None)
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
            evaluator = CandidateEvaluator(config, data=data, pruner=pruner)
            for name, (vector, metric) in candidates(pruner, budget, args.per_shift, seed).items():
                if (seed, budget, name) in finished:
                    continue
                start = time.time()
                losses: dict[str, float] = {}

                def report(result: dict) -> None:
                    if result["step"] in STEPS:
                        losses[f"loss@{result['step']}"] = result["val_loss"]
                        losses[f"acc@{result['step']}"] = result["val_acc"]

                evaluator.evaluate(vector, report=report, metric=metric)
                model, plan = evaluator.last_model.cpu(), evaluator.last_plan
                recovered = test_accuracy(model, data).accuracy
                test = finetune_model(model, config, data, label=name, recalibrate=False,
                                      checkpoint=args.out / f"s{seed}-b{budget:g}" / f"{name.replace('/', '-')}.pt")
                row = {"seed": seed, "budget": budget, "candidate": name, "metric": metric or "l2",
                       "test_acc": test.accuracy, "recovery_test_acc": recovered, "flops_ratio": plan.flops_ratio,
                       "vector": np.asarray(vector).tolist(), "run_s": time.time() - start, **losses}
                append_rows(done, [row])
                rows.append(row)
                print(f"seed {seed} budget {budget:g} {name}: test {test.accuracy * 100:.2f}%, "
                      + ", ".join(f"{k} {v:.4f}" for k, v in losses.items() if k.startswith("loss"))
                      + f", {row['run_s']:.0f}s", flush=True)
    return pd.DataFrame(rows)


def race_pick(g: pd.DataFrame, schedule: tuple[int, ...], finalists: int) -> pd.Series:
    """The race on this candidate set: warm starts plus the best by the 100-step loss up to
    `finalists`, halved at each rung by that rung's loss, the best of the last rung."""
    warm = g[g.candidate.isin(["uniform", "global", "uniform/group_l2"])]
    rest = g[~g.index.isin(warm.index)].sort_values("loss@100")
    alive = pd.concat([warm, rest.head(max(0, finalists - len(warm)))])
    if not schedule:
        return g.loc[g["loss@100"].idxmin()]
    for i, steps in enumerate(schedule):
        alive = alive.sort_values(f"loss@{steps}")
        alive = alive.head(math.ceil(len(alive) / 2)) if i < len(schedule) - 1 else alive.head(1)
    return alive.iloc[0]


def tables(df: pd.DataFrame, finalists: int) -> str:
    from scipy import stats

    cells = list(df.groupby(["seed", "budget"]))
    head = " | ".join(f"s{s} b{b:g}" for (s, b), _ in cells)
    lines = [f"| recovery steps | {head} | mean rho | mean pick − uniform (points) |",
             "|---|" + "---|" * (len(cells) + 2)]
    for steps in STEPS:
        rhos, gains, out = [], [], []
        for _, g in cells:
            rho = stats.spearmanr(-g[f"loss@{steps}"], g.test_acc).statistic
            pick = g.loc[g[f"loss@{steps}"].idxmin()]
            gain = (pick.test_acc - g[g.candidate == "uniform"].test_acc.iloc[0]) * 100
            rhos.append(rho)
            gains.append(gain)
            out.append(f"{rho:+.2f}, {gain:+.2f} ({pick.candidate})")
        lines.append(f"| {steps} | " + " | ".join(out) + f" | {np.mean(rhos):+.2f} | {np.mean(gains):+.2f} |")
    lines += ["", f"The race replayed on each candidate set ({finalists} finalists, the three warm starts among "
                  "them), its pick − uniform in points:", "",
              f"| rungs after the 100-step search | {head} | mean | recovery steps per search of 32 trials |",
              "|---|" + "---|" * (len(cells) + 2)]
    for label, schedule in SCHEDULES.items():
        out, gains = [], []
        for _, g in cells:
            pick = race_pick(g, schedule, finalists)
            gain = (pick.test_acc - g[g.candidate == "uniform"].test_acc.iloc[0]) * 100
            gains.append(gain)
            out.append(f"{gain:+.2f} ({pick.candidate})")
        cost = 32 * 100 + sum(s * math.ceil(finalists / 2 ** i) for i, s in enumerate(schedule))
        lines.append(f"| {label} | " + " | ".join(out) + f" | {np.mean(gains):+.2f} | {cost} ({cost / 3200:.2f}x) |")
    lines.append("")
    for (s, b), g in cells:
        u = g[g.candidate == "uniform"].test_acc.iloc[0]
        best = g.loc[g.test_acc.idxmax()]
        lines.append(f"- s{s} b{b:g}: uniform {u * 100:.2f}%, best {best.test_acc * 100:.2f}% ({best.candidate}), "
                     f"uniform/group_l2 {g[g.candidate == 'uniform/group_l2'].test_acc.iloc[0] * 100:.2f}%, "
                     f"global {g[g.candidate == 'global'].test_acc.iloc[0] * 100:.2f}%, {len(g)} candidates")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20_narrow")
    parser.add_argument("--data-dir")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3, 0.15])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2])
    parser.add_argument("--per-shift", type=int, default=2, help="random candidates per shift size")
    parser.add_argument("--subset", type=float, default=0.25)
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--finalists", type=int, default=6)
    parser.add_argument("--bases", type=Path, help="where base models are kept (a table's cache)")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rung_fidelity"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.bases:
        os.environ["LCP_TUNE_CACHE"] = str(args.bases.resolve())
    if args.table_only:
        args.seeds = []
    df = run(args) if not args.table_only else pd.DataFrame(read_rows(args.out / "rows.jsonl"))
    text = (f"`python benchmarks/bench_rungs.py {' '.join(sys.argv[1:])}` on {platform.machine()}\n\n"
            + tables(df, args.finalists))
    (args.out / "rungs.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
