"""The latency model against the stopwatch (issue 15, benchmarks a and c).

    python benchmarks/bench_latency.py                         # ResNet-56 32 px and ResNet-50 224 px, batch 1 and 32
    python benchmarks/bench_latency.py --smoke                 # seconds: the test suite runs this

Per (architecture, batch): the latency model is measured on this device with --threads threads
(its build time is benchmark c), then the network is pruned by plain global ranking (L2) to
latency budgets 0.3, 0.5 and 0.7, and each pruned network and the base are timed in the same
run (median after warm-up, `torch.utils.benchmark`). The row says the predicted fraction, the
measured one and the relative error, or the smallest reachable fraction when a budget is below
it. Every finished (arch, batch) is appended to rows.jsonl in --out and skipped when run again.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/results_file.py beside this file

from results_file import append_rows, read_rows  # noqa: E402

from lcp_tune.models import build_model  # noqa: E402
from lcp_tune.pruning import Pruner  # noqa: E402
from lcp_tune.pruning.errors import UnreachableBudgetError  # noqa: E402
from lcp_tune.pruning.latency import LatencySettings  # noqa: E402
from lcp_tune.pruning.layer_timing import device_model, measure_latency  # noqa: E402
from lcp_tune.run.latency import measured_latency  # noqa: E402

CASES = {"resnet56": (3, 32, 32), "resnet50": (3, 224, 224)}


def run_case(arch: str, shape: tuple[int, ...], batch: int, budgets, args) -> list[dict]:
    torch.manual_seed(0)
    pruner = Pruner(build_model(arch, 10 if shape[1] <= 64 else 1000, shape[0]), shape, round_to=args.round_to)
    settings = LatencySettings(args.device, batch, args.threads)
    start = time.monotonic()
    quick = None
    if args.smoke:   # seconds, not minutes: the numbers of a smoke run mean nothing
        def quick(module, x):
            return measure_latency(module, x, args.threads, min_run_time=0.002)
    model = pruner.measure_latency_model(settings, log=lambda line: print(f"  {line}", flush=True), measure=quick)
    build_s = time.monotonic() - start
    rows = []
    for budget in budgets:
        row = {"arch": arch, "input": shape[1], "batch": batch, "threads": args.threads, "device": args.device,
               "processor": device_model(args.device), "budget": budget, "build_s": build_s,
               "round_to": pruner.round_to, "multiple": model.width_multiple, "auto": args.round_to == "auto",
               "base_model_ms": model.measured_base * 1e3}
        try:
            plan = pruner.plan(pruner.identity(), budget, "latency")
        except UnreachableBudgetError as exc:
            row["unreachable"] = str(exc)
            rows.append(row)
            print(f"{arch} batch {batch} budget {budget}: {exc}", flush=True)
            continue
        pruned = pruner.apply(plan)
        measured = measured_latency(pruner.model, pruned, shape, settings, min_run_time=args.min_run_time)
        row.update(predicted=plan.latency_ratio, flops_ratio=plan.flops_ratio, **measured,
                   error=plan.latency_ratio / measured["measured_latency_ratio"] - 1)
        rows.append(row)
        print(f"{arch} batch {batch} budget {budget}: predicted {row['predicted']:.3f}, measured "
              f"{row['measured_latency_ratio']:.3f} ({row['base_latency_ms']:.2f} -> {row['latency_ms']:.2f} ms), "
              f"error {100 * row['error']:+.1f}%, FLOPs {row['flops_ratio']:.3f}", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| network | batch | round-to | model built | budget | predicted | measured | error | FLOPs kept | "
             "base ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rounding = f"auto: {r['round_to']}" if r.get("auto") else str(r.get("round_to", 1))
        if "unreachable" in r:
            smallest = r["unreachable"].rsplit(" ", 1)[-1]
            lines.append(f"| {r['arch']} {r['input']} px | {r['batch']} | {rounding} | {r['build_s']:.0f} s | "
                         f"{r['budget']} | unreachable (smallest {smallest}) | | | | |")
            continue
        lines.append(f"| {r['arch']} {r['input']} px | {r['batch']} | {rounding} | {r['build_s']:.0f} s | {r['budget']} | "
                     f"{r['predicted']:.3f} | {r['measured_latency_ratio']:.3f} | {100 * r['error']:+.1f}% | "
                     f"{r['flops_ratio']:.3f} | {r['base_latency_ms']:.2f} |")
    errors = np.abs([r["error"] for r in rows if "error" in r])
    if len(errors):
        lines += ["", f"Relative error of the predicted fraction: median {100 * np.median(errors):.1f}%, "
                      f"worst {100 * errors.max():.1f}% over {len(errors)} pruned networks."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latency"))
    parser.add_argument("--archs", nargs="+", default=list(CASES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-run-time", type=float, default=2.0, help="seconds each timing of a whole network runs")
    parser.add_argument("--round-to", default=1, help="width multiple of every plan, or auto: the model's")
    parser.add_argument("--smoke", action="store_true", help="resnet20_tiny at 16 px, batch 1, one budget")
    args = parser.parse_args(argv)
    args.round_to = args.round_to if args.round_to == "auto" else int(args.round_to)
    cases = {a: CASES.get(a, (3, 32, 32)) for a in args.archs}
    if args.smoke:
        cases, args.batches, args.budgets, args.min_run_time = {"resnet20_tiny": (3, 16, 16)}, [1], [0.1, 0.95], 0.05
    args.out.mkdir(parents=True, exist_ok=True)
    done_file = args.out / "rows.jsonl"
    rows = read_rows(done_file)
    # rows of the first version (before --round-to auto) had no "auto": they planned with 1
    done = {(r["arch"], r["batch"], r["threads"], r["device"], r.get("auto", False)) for r in rows}
    for arch, shape in cases.items():
        for batch in args.batches:
            if (arch, batch, args.threads, args.device, args.round_to == "auto") in done:
                continue
            new = run_case(arch, shape, batch, args.budgets, args)
            append_rows(done_file, new)
            rows += new
    print(table(rows))
    (args.out / "latency_table.md").write_text(table(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
