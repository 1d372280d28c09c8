"""What distillation buys at equal epochs (issue 14, item 4): the same pruned network, the same
fine-tune recipe and epochs, with and without the unpruned base as teacher.

    python benchmarks/bench_distill.py                        # Fashion-MNIST, ResNet-20 narrow
    python benchmarks/bench_distill.py --data digits --seeds 0 1 2 --budgets 0.15

Per (seed, budget): the seed's base model (cached, as the headline table's), pruned with the
uniform allocation (what the learned compensation returns on this network at 0.3, BENCHMARKS.md
section 11), then `lcp_tune.run.finetune.finetune_model` twice: `finetune.distill` off and on
(T = 4, w = 0.9, the config's defaults). Test accuracy on the whole test split. Every finished
(seed, budget, distill) is appended to rows.jsonl in --out and skipped when run again.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/results_file.py beside this file

from results_file import append_rows, read_rows  # noqa: E402

from lcp_tune.candidate import build_pruner  # noqa: E402
from lcp_tune.data import load_experiment_data  # noqa: E402
from lcp_tune.run.base_model import obtain_base  # noqa: E402
from lcp_tune.run.finetune import finetune_model  # noqa: E402
from lcp_tune.run.settings import resolve_config  # noqa: E402


def run(args: argparse.Namespace) -> pd.DataFrame:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    done_file = out / "rows.jsonl"
    rows = read_rows(done_file)
    done = {(r["seed"], r["budget"], r["distill"]) for r in rows}
    for seed in args.seeds:
        config = resolve_config({"arch": args.arch, "data": args.data, "seed": seed, "subset": args.subset,
                                 "val_fraction": args.val_fraction, "device": "cpu"})
        data = load_experiment_data(config)
        base, _ = obtain_base(config, data)
        pruner = build_pruner(config, base, data)
        for budget in args.budgets:
            for distill in (False, True):
                if (seed, budget, distill) in done:
                    continue
                run_config = config.replace(**{"prune.budget": budget, "finetune.distill": distill})
                plan = pruner.plan(pruner.uniform(budget), budget)
                start = time.time()
                test = finetune_model(pruner.apply(plan), run_config, data, teacher=base)
                row = {"seed": seed, "budget": budget, "distill": distill, "test_acc": test.accuracy,
                       "flops_ratio": plan.flops_ratio, "epochs": run_config.finetune.epochs,
                       "seconds": time.time() - start, "test_images": len(data.test)}
                append_rows(done_file, [row])
                rows.append(row)
                print(_line(row), flush=True)
    return pd.DataFrame(rows)


def _line(row: dict) -> str:
    return (f"seed {row['seed']} budget {row['budget']:g} distill {row['distill']}: "
            f"{row['test_acc'] * 100:.2f}% ({row['seconds']:.0f} s)")


def markdown(df: pd.DataFrame) -> str:
    lines = ["| budget | seed | plain (%) | distilled (%) | distilled − plain (points) | time ratio |",
             "|---|---|---|---|---|---|"]
    for (budget, seed), group in df.groupby(["budget", "seed"]):
        by = group.set_index("distill")
        if {False, True} <= set(by.index):
            plain, taught = by.loc[False], by.loc[True]
            lines.append(f"| {budget:g} | {seed} | {plain.test_acc * 100:.2f} | {taught.test_acc * 100:.2f} | "
                         f"{(taught.test_acc - plain.test_acc) * 100:+.2f} | {taught.seconds / plain.seconds:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20_narrow")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3, 0.15])
    parser.add_argument("--subset", type=float, default=0.25, help="as the headline table (BENCHMARKS.md 9)")
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/distill"))
    args = parser.parse_args()
    df = run(args)
    table = markdown(df)
    (args.out / "distill.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
