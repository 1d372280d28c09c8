"""The papers' comparison: learned compensation against the allocations and tools users would pick.

    python benchmarks/paper_table.py --data fashion-mnist     # the BENCHMARKS.md headline table
    python benchmarks/paper_table.py                          # digits, the quick table
    python benchmarks/paper_table.py --smoke                  # a few minutes: 1 budget, 1 seed, tiny net

Per seed (its own validation split and its own base model) and budget, every unit below starts
from the same base model and ends with the same full fine-tune (lcp_tune.run.finetune), scored
once on the whole official test split:

- `lcp`: the learned compensation (`--method lcp`), which also fine-tunes its two warm starts,
  plain global ranking (`global`) and uniform pruning (`uniform`);
- `random`: the best of as many random compensations (`--method random`);
- `legr`: LeGR's configuration: the affine form (`--space legr`) and regularized evolution;
- `eagleeye`: EagleEye's: random candidates scored after BN recalibration alone (tau_hat 0);
- `tp-global` / `tp-local`: Torch-Pruning's magnitude pruner, global_pruning on / off
  (benchmarks/peers.py).

Every finished (seed, budget, unit) is appended to `rows.jsonl` in `--out` and skipped when the
command runs again, so the table can be built over several sittings; an interrupted unit resumes
its experiment folder. Each seed's base model is trained once and kept in `--out`/cache/base, so
sittings on other machines start from the same one. The table gives mean ± std over seeds and,
for every other method, the paired per-seed difference of `lcp` against it with a paired t-test;
`--table-only` writes the tables from rows.jsonl without running anything.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/peers.py beside this file

from lcp_tune.run.settings import resolve_config  # noqa: E402
from lcp_tune.tune.cluster import init_ray  # noqa: E402

UNITS = ["lcp", "random", "legr", "eagleeye", "tp-global", "tp-local"]
METHOD_ORDER = ["lcp", "uniform", "global", "random", "legr", "eagleeye", "tp-global", "tp-local"]
UNIT_SETTINGS = {
    "lcp": {"method": "lcp"},
    "random": {"method": "random"},
    # LeGR's own pick: the best on its objective, no race (the race is lcp-tune's)
    "legr": {"method": "lcp", "search.space": "legr", "search.searcher": "evolution", "baselines": False,
             "search.race": ()},
    "eagleeye": {"method": "random", "search.tau_hat": 0},
    "tp-global": {"method": "global"},   # only its data, base model and fine-tune settings are used
    "tp-local": {"method": "global"},
}


def settings(args: argparse.Namespace, budget: float, seed: int, unit: str):
    """The experiment config of one unit: the shared settings, then the unit's own."""
    changes = {"arch": args.arch, "data": args.data, "data_dir": args.data_dir, "seed": seed, "recipe": args.recipe,
               "prune.budget": budget, "search.num_samples": args.trials, "search.searcher": args.searcher,
               "val_fraction": args.val_fraction, "subset": args.subset, "search.tau_hat": args.tau_hat,
               "finetune.epochs": args.finetune_epochs, "base_train.epochs": args.base_epochs}
    changes.update(UNIT_SETTINGS[unit])
    if unit in ("lcp", "random"):   # the probed variants of the learned compensation (and its control)
        changes.update(args.set)
    return resolve_config(changes)


def run_unit(args: argparse.Namespace, budget: float, seed: int, unit: str, folder: Path) -> list[dict]:
    """Run one unit and return its rows (one per fine-tuned method)."""
    config = settings(args, budget, seed, unit)
    if unit.startswith("tp-"):
        return [torch_pruning_row(config, unit, folder)]
    from lcp_tune.run.search import RunOptions, resume_search_experiment, run_search_experiment

    if (folder / "config.yaml").is_file():   # a unit stopped part-way: continue it
        report = resume_search_experiment(folder, lambda s: None, RunOptions())
    else:
        report = run_search_experiment(config, folder, log=lambda s: None)
    rows = []
    for name, m in report["methods"].items():
        method = label(unit, name, report["method"])
        searched = name == report["method"] and report["num_trials"] > 0
        rows.append({"method": method, "base_test_acc": report["base_test_acc"],
                     "search_objective": m.get("search_objective"), "recovery_test_acc": m.get("recovery_test_acc"),
                     "test_acc": m["test_acc"], "flops_ratio": m["flops_ratio"], "params_ratio": m["params_ratio"],
                     "trials": report["num_trials"] if searched else 0, "pick": m.get("pick"),
                     "search_s": (report["search_wall_time_s"] + ((report.get("race") or {}).get("wall_time_s") or 0.0))
                     if searched else 0.0})
    return rows


def label(unit: str, name: str, searched: str) -> str:
    """A row's method: the unit's name for what its search returned (LeGR's, EagleEye's), else the
    allocation's own, also when `--set method=uniform` turns a unit into plain uniform pruning."""
    return unit if name == searched and name not in ("uniform", "global") else name


def torch_pruning_row(config, unit: str, folder: Path) -> dict:
    """Torch-Pruning's pruner on the same base model, then the same fine-tune and test."""
    from peers import torch_pruning_model

    from lcp_tune.data.registry import load_experiment_data
    from lcp_tune.pruning import measure_cost
    from lcp_tune.run.base_model import obtain_base
    from lcp_tune.run.finetune import finetune_model, test_accuracy

    data = load_experiment_data(config)
    base, _ = obtain_base(config, data)
    base_acc = test_accuracy(base, data).accuracy
    start = time.time()
    model, ratio = torch_pruning_model(base, data.input_shape, config.prune.budget, unit == "tp-global")
    prune_s = time.time() - start
    params = measure_cost(model, data.input_shape)[1] / measure_cost(base, data.input_shape)[1]
    test = finetune_model(model, config, data, checkpoint=folder / "finetune.pt", teacher=base)
    return {"method": unit, "base_test_acc": base_acc, "search_objective": None, "recovery_test_acc": None,
            "test_acc": test.accuracy, "flops_ratio": ratio, "params_ratio": params, "trials": 0,
            "search_s": prune_s}


def code_version() -> str:
    """The commit the rows were computed with (sittings of one table should share it)."""
    import subprocess

    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (result.stdout.strip() or "unknown") + ("+changes" if dirty else "")


def run_all(args: argparse.Namespace, out: Path) -> pd.DataFrame:
    """Every (seed, budget, unit) not in rows.jsonl yet, appended there as it finishes."""
    done = out / "rows.jsonl"
    rows = [json.loads(line) for line in done.read_text().splitlines() if line.strip()] if done.is_file() else []
    finished = {(r["seed"], r["budget"], r["unit"]) for r in rows}
    version = code_version()
    for seed in args.seeds:
        for budget in args.budgets:
            for unit in args.units:
                if (seed, budget, unit) in finished:
                    continue
                start = time.time()
                init_ray(log=lambda s: None)   # only when a unit is left to run (a no-op once started)
                new = run_unit(args, budget, seed, unit, out / f"s{seed}-b{budget:g}-{unit}")
                new = [dict(r, seed=seed, budget=budget, unit=unit, run_s=time.time() - start, commit=version)
                       for r in new]
                with done.open("a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in new)
                rows += new
                print(f"seed {seed} budget {budget:g} {unit} ({time.time() - start:.0f}s): " + ", ".join(
                    f"{r['method']} {r['test_acc'] * 100:.2f}% at {r['flops_ratio']:.3f}" for r in new), flush=True)
    return pd.DataFrame(rows)


def spread(series: pd.Series, scale: float = 1.0, digits: int = 2) -> str:
    series = series.dropna()
    if series.empty:
        return "-"
    std = series.std(ddof=1) * scale if len(series) > 1 else 0.0
    return f"{series.mean() * scale:.{digits}f} ± {std:.{digits}f}"


def paired(lcp: pd.Series, other: pd.Series) -> str:
    """lcp minus the other method over the seeds both have: mean ± std (points), p, wins."""
    from scipy import stats

    both = pd.concat([lcp, other], axis=1, join="inner").dropna()
    if both.empty:
        return "-"
    diff = (both.iloc[:, 0] - both.iloc[:, 1]) * 100
    text = f"{diff.mean():+.2f} ± {diff.std(ddof=1) if len(diff) > 1 else 0:.2f}"
    if len(diff) > 1 and np.any(diff != diff.iloc[0]):
        text += f", p={stats.ttest_rel(both.iloc[:, 0], both.iloc[:, 1]).pvalue:.3f}"
    return text + f", wins {int((diff > 0).sum())}/{len(diff)}"


def markdown(df: pd.DataFrame) -> str:
    lines = ["| budget | method | FLOPs | search objective | test acc after recovery (%) | test acc (%) "
             "| lcp − method (points, paired) | search s | trials |", "|" + "---|" * 9]
    for budget, by_budget in df.groupby("budget", sort=False):
        lcp = by_budget[by_budget.method == "lcp"].set_index("seed").test_acc
        for method in METHOD_ORDER:
            m = by_budget[by_budget.method == method].set_index("seed")
            if m.empty:
                continue
            versus = "" if method == "lcp" else paired(lcp, m.test_acc)
            lines.append(f"| {budget:g} | {method} | {m.flops_ratio.mean():.3f} | "
                         f"{spread(m.search_objective.astype(float), 1, 4)} | "
                         f"{spread(m.recovery_test_acc.astype(float), 100)} | {spread(m.test_acc, 100)} | "
                         f"{versus} | {m.search_s.mean():.0f} | {m.trials.mean():.0f} |")
    base = df.drop_duplicates("seed").base_test_acc
    per_seed = df.drop_duplicates(["seed", "budget", "unit"]).groupby("seed").run_s.sum()   # a unit's rows share its time
    lines += ["", f"Base test accuracy {spread(base, 100)}% over {len(base)} seeds; mean ± std over seeds. "
              f"Wall time per seed (all budgets and units, base training included): "
              + ", ".join(f"seed {s}: {t / 60:.0f} min" for s, t in per_seed.items()) + "."]
    return "\n".join(lines)


TARGETS = ["uniform", "global", "tp-global"]   # issue 13, item 5: who the learned compensation must beat
NAMES = {"lcp": "learned (lcp)", "uniform": "uniform", "global": "global ranking", "random": "random search",
         "legr": "LeGR's config", "eagleeye": "EagleEye's config", "tp-global": "Torch-Pruning global",
         "tp-local": "Torch-Pruning local"}


def differences(df: pd.DataFrame, budget: float, method: str) -> pd.Series:
    """lcp's test accuracy minus `method`'s, in points, per seed both have at `budget`."""
    at = df[df.budget == budget]
    lcp = at[at.method == "lcp"].set_index("seed").test_acc
    other = at[at.method == method].set_index("seed").test_acc
    return ((lcp - other) * 100).dropna()


def verdict(df: pd.DataFrame) -> str:
    """Item 5's target, checked: lcp ahead of each target by more than the paired spread (the std
    of the per-seed differences) at a budget, and at two of the three budgets."""
    lines, met = [], 0
    budgets = list(df.budget.unique())
    for budget in budgets:
        beaten = []
        for method in TARGETS:
            diff = differences(df, budget, method)
            if len(diff) > 1 and diff.mean() > diff.std(ddof=1):
                beaten.append(method)
        met += len(beaten) == len(TARGETS)
        short = [m for m in TARGETS if m not in beaten]
        lines.append(f"- budget {budget:g}: ahead of {', '.join(beaten) or 'none'}"
                     + (f"; not of {', '.join(short)}" if short else ""))
    need = min(2, len(budgets))
    head = (f"Target (lcp ahead of {', '.join(TARGETS)} by more than the paired spread at {need} of the "
            f"{len(budgets)} budgets): {'met' if met >= need else 'not met'}, at {met} of {len(budgets)}.")
    return "\n".join([head, *lines])


def complete_seeds(df: pd.DataFrame) -> list[int]:
    """The seeds with a row for every (budget, method) that any seed has."""
    cells = set(zip(df.budget, df.method))
    return sorted(int(seed) for seed, rows in df.groupby("seed") if set(zip(rows.budget, rows.method)) == cells)


def headline(df: pd.DataFrame) -> str:
    """The README's table, over the complete seeds only: test accuracy (%) mean ± std over seeds
    per method and budget, and for every other method lcp's paired difference (points) and its wins."""
    seeds = complete_seeds(df)
    df = df[df.seed.isin(seeds)]
    budgets = list(df.budget.unique())
    lines = ["| method | " + " | ".join(f"{b:.0%} of the FLOPs" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for method in METHOD_ORDER:
        if method not in set(df.method):
            continue
        cells = []
        for budget in budgets:
            acc = df[(df.budget == budget) & (df.method == method)].test_acc
            cell = spread(acc, 100)
            diff = differences(df, budget, method)
            if method != "lcp" and len(diff):
                cell += f" ({diff.mean():+.2f}, {int((diff > 0).sum())}/{len(diff)})"
            cells.append(cell)
        lines.append(f"| {NAMES[method]} | " + " | ".join(cells) + " |")
    lines += ["", f"Seeds {', '.join(map(str, seeds))} (those with every unit done): test accuracy (%), mean ± "
                  "std over seeds; in brackets lcp minus the method in points, paired by seed, and the seeds "
                  "where lcp is ahead."]
    return "\n".join(lines)


def _setting(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE parsed as YAML (numbers, true/false, strings)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set {text}: expected KEY=VALUE")
    return key, yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--recipe")
    parser.add_argument("--budgets", type=float, nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--searcher", default="tpe")
    parser.add_argument("--units", nargs="+", choices=UNITS)
    parser.add_argument("--val-fraction", type=float)
    parser.add_argument("--subset", type=float, help="share of the training images used (test: all of them)")
    parser.add_argument("--tau-hat", type=int)
    parser.add_argument("--finetune-epochs", type=int)
    parser.add_argument("--base-epochs", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_setting,
                        help="a config setting for the lcp and random units, e.g. search.center=uniform")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table-only", action="store_true", help="write the tables from rows.jsonl; run nothing")
    parser.add_argument("--bases", type=Path, help="where base models are kept (default: OUT/cache); a probe "
                                                   "passes its table's, to start from the same bases")
    parser.add_argument("--smoke", action="store_true",
                        help="1 budget, 1 seed, 4 trials, a tiny net; units lcp, eagleeye and tp-global unless --units")
    args = parser.parse_args()
    args.set = dict(args.set)
    if args.smoke:
        args.arch, args.budgets, args.seeds, args.trials = "resnet20_tiny", [0.3], [0], 4
        args.tau_hat, args.finetune_epochs, args.base_epochs = 10, 1, 2
        args.units = args.units or ["lcp", "eagleeye", "tp-global"]
    if args.data == "fashion-mnist":   # the headline settings (BENCHMARKS.md says why)
        defaults = {"budgets": [0.5, 0.3, 0.15], "subset": 0.25, "val_fraction": 0.05,
                    "units": [u for u in UNITS if u != "random"]}
    else:
        defaults = {"budgets": [0.3, 0.15, 0.07], "units": UNITS}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.out = args.out or Path("benchmarks/results") / f"paper_table_{args.data}_{args.arch}"
    args.out.mkdir(parents=True, exist_ok=True)
    # the base models live beside the rows (cache/base, kept in git): base training is not bit for
    # bit the same on another CPU, and a table's sittings run on several machines
    os.environ["LCP_TUNE_CACHE"] = str((args.bases or args.out / "cache").resolve())
    start = time.time()
    if args.table_only:
        if not (args.out / "rows.jsonl").is_file():
            parser.error(f"--table-only: {args.out / 'rows.jsonl'} does not exist; run the units first")
        args.seeds = []   # every unit left is skipped; the tables come from rows.jsonl alone
    df = run_all(args, args.out)
    df.to_parquet(args.out / "paper_table.parquet")
    df.to_csv(args.out / "paper_table.csv", index=False)
    table = "\n\n".join([markdown(df), verdict(df), headline(df)])
    header = (f"`python benchmarks/paper_table.py {' '.join(sys.argv[1:])}`".replace("  ", " ") +
              f" on {platform.machine()} {platform.system()}, {len(df.seed.unique())} seeds; "
              f"this sitting {time.time() - start:.0f} s\n\n")
    (args.out / "paper_table.md").write_text(header + table + "\n")
    print(header + table)


if __name__ == "__main__":
    main()
