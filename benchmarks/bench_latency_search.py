"""A latency-budgeted search against a FLOPs-budgeted one (issue 15, benchmark b).

    python benchmarks/bench_latency_search.py                   # the default task, 3 + 3 searches
    python benchmarks/bench_latency_search.py --data fashion-mnist --subset 0.25 --out ...
    python benchmarks/bench_latency_search.py --smoke           # a minute: what the numbers mean is nothing

One unit is one `lcp-tune search` (the learned compensation only, fine-tuned and tested) at one
budget of one resource: FLOPs budgets 0.15, 0.3 and 0.5, latency budgets 0.8, 0.85 and 0.9 at
batch 1 (the default task, ResNet-20 at 8 x 8, cannot go far under 0.8 of its latency there:
per-layer overhead) and 0.3, 0.5 and 0.7 at a larger --latency-batch; a budget under the
smallest reachable is recorded as such.
Every finished unit is appended to rows.jsonl in --out and skipped when run again. The latency
model is measured (or read from the cache) before the first unit.

Then, with Ray shut down (an idle Ray slowed timings measurably), every final network is timed
against its base in --passes passes over all of them (alternating rounds, the ratio taken per
round; each network's median pass is its number, the range is shown), so all measured latencies
come from the same minutes of this machine; the latency each search's own report measured is
kept as well. The table compares the two fronts:
at each latency-budgeted network's measured latency, the FLOPs front's accuracy there (linear
between its two neighbours); at its FLOPs, the FLOPs front's measured latency (the speed-up each
gives at equal FLOPs).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/results_file.py beside this file

from results_file import append_rows, read_rows  # noqa: E402

RESOURCES = ("flops", "latency")


def unit_config(args: argparse.Namespace, resource: str, budget: float, seed: int):
    from lcp_tune.run.settings import resolve_config

    changes = {"arch": args.arch, "data": args.data, "data_dir": args.data_dir, "subset": args.subset,
               "seed": seed, "prune.resource": resource, "prune.budget": budget, "baselines": False,
               "prune.round_to": args.round_to, "prune.latency_batch": args.latency_batch, "search.num_samples": args.trials, "search.tau_hat": args.tau_hat,
               "finetune.epochs": args.finetune_epochs, "base_train.epochs": args.base_epochs}
    return resolve_config({k: v for k, v in changes.items() if v is not None})


def run_unit(args: argparse.Namespace, resource: str, budget: float, seed: int, folder: Path) -> dict:
    from lcp_tune.run.search import RunOptions, resume_search_experiment, run_search_experiment

    from lcp_tune.errors import LcpTuneError

    start = time.time()
    row = {"resource": resource, "budget": budget, "seed": seed, "folder": folder.name}
    try:
        if (folder / "config.yaml").is_file():   # a unit stopped part-way: continue it
            report = resume_search_experiment(folder, lambda s: None, RunOptions(quiet=True))
        else:
            report = run_search_experiment(unit_config(args, resource, budget, seed), folder, log=lambda s: None,
                                           options=RunOptions(quiet=True))
    except LcpTuneError as exc:   # e.g. a latency budget under what the network can reach: a result too
        if "unreachable" not in str(exc):
            raise
        return {**row, "unreachable": str(exc), "run_s": time.time() - start}
    return {**row,
            "test_acc": report["pruned_test_acc"], "base_test_acc": report["base_test_acc"],
            "flops_ratio": report["flops_ratio"], "params_ratio": report["params_ratio"],
            "predicted_latency_ratio": report.get("latency_ratio"), "round_to": report.get("round_to"),
            "report_latency_ratio": report.get("measured_latency_ratio"), "run_s": time.time() - start}


def prepare_latency_model(args: argparse.Namespace) -> None:
    """The latency model of the task's network, measured now (quietly, before any search) or
    read from the cache: the latency units plan with it."""
    from lcp_tune.data import load_experiment_data
    from lcp_tune.run.base_model import obtain_base
    from lcp_tune.run.latency import prepare_latency
    from lcp_tune.candidate import build_pruner

    config = unit_config(args, "latency", args.latency_budgets[0], args.seeds[0])
    data = load_experiment_data(config)
    base, _ = obtain_base(config, data)
    prepare_latency(build_pruner(config, base, data), config, lambda line: print(f"  {line}", flush=True))


def measure_all(rows: list[dict], out: Path, min_run_time: float, rounds: int, passes: int) -> dict[str, dict]:
    """Every final network against its own base, one after another in this one run, in `passes`
    passes over all of them; each network's number is its median pass (the lower of the middle
    two for an even count), and every pass's ratio is kept."""
    from lcp_tune.models import build_model
    from lcp_tune.run.latency import measured_latency, report_settings
    from lcp_tune.store.checkpoints import load_state_dict
    from lcp_tune.store.config_file import load_config
    from lcp_tune.store.files import read_json
    from lcp_tune.store.pruned_io import load_pruned

    pairs = {}
    for row in (r for r in rows if "unreachable" not in r):
        folder = out / row["folder"]
        config = load_config(folder / "config.yaml")
        meta = read_json(folder / "pruned" / "plan.json")
        base = build_model(config.arch, meta["num_classes"], meta["input_shape"][0])
        base.load_state_dict(load_state_dict(folder / "base.pt"))
        pairs[row["folder"]] = (base, load_pruned(folder / "pruned"), tuple(meta["input_shape"]), report_settings(config))
    runs: dict[str, list[dict]] = {name: [] for name in pairs}
    for n in range(passes):
        for name, (base, pruned, shape, settings) in pairs.items():
            runs[name].append(measured_latency(base, pruned, shape, settings, min_run_time, rounds))
        print(f"  pass {n + 1}: " + ", ".join(f"{name} {r[-1]['measured_latency_ratio']:.3f}" for name, r in runs.items()),
              flush=True)
    measured = {}
    for name, results in runs.items():   # the median pass whole (its times with its ratio); all ratios kept
        middle = sorted(results, key=lambda r: r["measured_latency_ratio"])[(len(results) - 1) // 2]
        measured[name] = {**middle, "passes": [r["measured_latency_ratio"] for r in results]}
    return measured


def compare(rows: list[dict], measured: dict[str, dict]) -> list[dict]:
    """Each latency-budgeted network against the FLOPs front (per seed): the front's accuracy
    at the same measured latency, and the front's measured latency at the same FLOPs. None where
    the network lies outside the front's range (no extrapolation)."""
    out = []
    rows = [r for r in rows if "unreachable" not in r]
    for seed in sorted({r["seed"] for r in rows}):
        front = sorted((r for r in rows if r["seed"] == seed and r["resource"] == "flops"),
                       key=lambda r: measured[r["folder"]]["measured_latency_ratio"])
        if len(front) < 2:
            continue
        lat = np.array([measured[r["folder"]]["measured_latency_ratio"] for r in front])
        acc = np.array([r["test_acc"] for r in front])
        by_flops = sorted(front, key=lambda r: r["flops_ratio"])
        flops = np.array([r["flops_ratio"] for r in by_flops])
        lat_by_flops = np.array([measured[r["folder"]]["measured_latency_ratio"] for r in by_flops])
        for r in (r for r in rows if r["seed"] == seed and r["resource"] == "latency"):
            mine = measured[r["folder"]]["measured_latency_ratio"]
            inside = lat.min() <= mine <= lat.max()
            at_flops = flops.min() <= r["flops_ratio"] <= flops.max()
            out.append({"seed": seed, "budget": r["budget"], "measured": mine, "test_acc": r["test_acc"],
                        "flops_ratio": r["flops_ratio"],
                        "front_acc": float(np.interp(mine, lat, acc)) if inside else None,
                        "front_latency_at_flops": float(np.interp(r["flops_ratio"], flops, lat_by_flops))
                        if at_flops else None})
    return out


def _measured_cell(m: dict) -> str:
    passes = m.get("passes", [])
    spread = f" ({min(passes):.3f}-{max(passes):.3f})" if len(passes) > 1 else ""
    return f"{m['measured_latency_ratio']:.3f}{spread}"


def table(rows: list[dict], measured: dict[str, dict]) -> str:
    lines = ["| seed | resource | budget | test acc | FLOPs kept | latency predicted | latency measured | "
             "in its own report |", "|---|---|---|---|---|---|---|---|"]   # measured: median (passes' range)
    for r in sorted(rows, key=lambda r: (r["seed"], r["resource"], r["budget"])):
        if "unreachable" in r:
            lines.append(f"| {r['seed']} | {r['resource']} | {r['budget']:g} | unreachable: smallest "
                         f"{r['unreachable'].rsplit(' ', 1)[-1]} | | | | |")
            continue
        predicted = f"{r['predicted_latency_ratio']:.3f}" if r.get("predicted_latency_ratio") else "-"
        report = f"{r['report_latency_ratio']:.3f}" if r.get("report_latency_ratio") else "-"
        lines.append(f"| {r['seed']} | {r['resource']} | {r['budget']:g} | {100 * r['test_acc']:.2f} | "
                     f"{r['flops_ratio']:.3f} | {predicted} | {_measured_cell(measured[r['folder']])} | "
                     f"{report} |")
    lines += ["", "| seed | latency budget | measured latency | test acc | FLOPs front's acc there | difference | "
                  "FLOPs kept | FLOPs front's latency at those FLOPs |", "|---|---|---|---|---|---|---|---|"]
    for c in compare(rows, measured):
        front = f"{100 * c['front_acc']:.2f}" if c["front_acc"] is not None else "outside its range"
        diff = f"{100 * (c['test_acc'] - c['front_acc']):+.2f}" if c["front_acc"] is not None else "-"
        at = f"{c['front_latency_at_flops']:.3f}" if c["front_latency_at_flops"] is not None else "outside its range"
        lines.append(f"| {c['seed']} | {c['budget']:g} | {c['measured']:.3f} | {100 * c['test_acc']:.2f} | {front} | "
                     f"{diff} | {c['flops_ratio']:.3f} | {at} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latency_search"))
    parser.add_argument("--arch")
    parser.add_argument("--data")
    parser.add_argument("--data-dir")
    parser.add_argument("--subset", type=float)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--flops-budgets", type=float, nargs="+", default=[0.15, 0.3, 0.5])
    parser.add_argument("--latency-budgets", type=float, nargs="+",
                        help="default 0.8 0.85 0.9 at batch 1 (per-layer overhead), else 0.3 0.5 0.7")
    parser.add_argument("--latency-batch", type=int, help="batch latency is budgeted and measured at (default 1)")
    parser.add_argument("--round-to", default=None, help="for every unit (default: the config's, 1)")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--tau-hat", type=int)
    parser.add_argument("--finetune-epochs", type=int)
    parser.add_argument("--base-epochs", type=int)
    parser.add_argument("--min-run-time", type=float, default=2.0, help="seconds each network pair is timed")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=3,
                        help="passes over all networks; each network's ratio is the median of its passes")
    parser.add_argument("--smoke", action="store_true", help="a tiny net, 2 trials, one budget each")
    args = parser.parse_args(argv)
    if args.latency_budgets is None:
        args.latency_budgets = [0.8, 0.85, 0.9] if (args.latency_batch or 1) == 1 else [0.3, 0.5, 0.7]
    if args.smoke:
        args.arch, args.trials, args.tau_hat, args.finetune_epochs, args.base_epochs = "resnet20_tiny", 2, 5, 1, 2
        args.flops_budgets, args.latency_budgets, args.min_run_time, args.rounds = [0.5, 0.9], [0.97], 0.1, 2
        args.passes = 2
    if args.round_to is not None and args.round_to != "auto":
        args.round_to = int(args.round_to)
    from lcp_tune.tune.cluster import init_ray

    args.out.mkdir(parents=True, exist_ok=True)
    done_file = args.out / "rows.jsonl"
    rows = read_rows(done_file)
    done = {(r["seed"], r["resource"], r["budget"]) for r in rows}
    units = [(seed, resource, budget) for seed in args.seeds for resource in RESOURCES
             for budget in (args.flops_budgets if resource == "flops" else args.latency_budgets)]
    if any(u not in done for u in units):
        prepare_latency_model(args)
        init_ray(log=lambda s: None)
    for seed, resource, budget in units:
        if (seed, resource, budget) in done:
            continue
        row = run_unit(args, resource, budget, seed, args.out / f"s{seed}-{resource}-{budget:g}")
        append_rows(done_file, [row])
        rows.append(row)
        print(f"seed {seed} {resource} {budget:g} ({row['run_s']:.0f}s): " + (row.get("unreachable") or
              f"{100 * row['test_acc']:.2f}% at {row['flops_ratio']:.3f} of the FLOPs"), flush=True)
    import ray

    ray.shutdown()   # an idle Ray still takes CPU: timings beside it ran 0.05-0.2 slower (BENCHMARKS 16b)
    print("timing every final network against its base:", flush=True)
    measured = measure_all(rows, args.out, args.min_run_time, args.rounds, args.passes)
    (args.out / "measured.json").write_text(json.dumps(measured, indent=1) + "\n")
    text = table(rows, measured)
    (args.out / "latency_search.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
