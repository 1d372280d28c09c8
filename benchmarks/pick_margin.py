"""Would a margin over uniform have picked better? (issue 13, item 5; offline, no training)

    python benchmarks/pick_margin.py

The rule tried: take the search's best candidate over uniform pruning only when its objective
(validation loss after the short recovery) is lower than uniform's by more than a fraction m;
otherwise keep uniform. The point: the search's best of many noisy scores is biased low (the
winner's curse), and section 10 found that small objective wins do not survive the fine-tune.

It reads rows already computed, so it costs nothing:
- section 10's fixed candidate sets (benchmarks/results/objective_fidelity_b*/rows.jsonl): uniform
  and seven other allocations per (seed, budget), each fully fine-tuned;
- the headline table's lcp units (benchmarks/results/paper_table_fashion-mnist_*/rows.jsonl): the
  search's pick against uniform, both fully fine-tuned.
For each margin it prints the test accuracy of the rule's pick minus uniform's, in points.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
OBJECTIVE = "loss lr0.02@100"          # the default objective, as bench_objective.py names it
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def candidate_sets(results: Path) -> dict[tuple, tuple[dict, list[dict]]]:
    """(source, seed, budget) -> (uniform's row, the other candidates' rows), both as
    {"objective", "test_acc"}."""
    sets: dict[tuple, tuple[dict, list[dict]]] = {}
    for path in sorted(results.glob("objective_fidelity_b*/rows.jsonl")):
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for row in _rows(path):
            groups[(row["seed"], row["budget"])].append(row)
        for (seed, budget), rows in groups.items():
            scored = [{"name": r["candidate"], "objective": r[OBJECTIVE], "test_acc": r["test_acc"]} for r in rows]
            uniform = next(r for r in scored if r["name"] == "uniform")
            sets[("candidates", seed, budget)] = (uniform, [r for r in scored if r["name"] != "uniform"])
    for path in sorted(results.glob("paper_table_fashion-mnist_*/rows.jsonl")):
        by = {(r["seed"], r["budget"], r["method"]): r for r in _rows(path)}
        for (seed, budget, method), row in by.items():
            if method != "lcp" or (seed, budget, "uniform") not in by:
                continue
            uniform = by[(seed, budget, "uniform")]
            pick = {"name": "lcp", "objective": row["search_objective"], "test_acc": row["test_acc"]}
            sets[("search", seed, budget)] = ({"name": "uniform", "objective": uniform["search_objective"],
                                               "test_acc": uniform["test_acc"]}, [pick])
    return sets


def gain(uniform: dict, others: list[dict], margin: float) -> float:
    """Points of test accuracy the rule's pick has over uniform."""
    best = min(others, key=lambda r: r["objective"])
    pick = best if best["objective"] < uniform["objective"] * (1 - margin) else uniform
    return 100 * (pick["test_acc"] - uniform["test_acc"])


def table(sets: dict) -> str:
    keys = sorted(sets)
    lines = ["| source, seed, budget | uniform's objective | best other's | its margin | its test acc − uniform's |",
             "|---|---|---|---|---|"]
    for key in keys:
        uniform, others = sets[key]
        best = min(others, key=lambda r: r["objective"])
        lines.append(f"| {key[0]}, {key[1]}, {key[2]:g} | {uniform['objective']:.3f} | {best['objective']:.3f} | "
                     f"{1 - best['objective'] / uniform['objective']:+.1%} | "
                     f"{100 * (best['test_acc'] - uniform['test_acc']):+.2f} |")
    lines += ["", "| margin m | pick − uniform, points, per row above | mean |", "|---|---|---|"]
    for margin in MARGINS:
        gains = [gain(*sets[k], margin) for k in keys]
        lines.append(f"| {margin:.0%} | {', '.join(f'{g:+.2f}' for g in gains)} | {sum(gains) / len(gains):+.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    print(table(candidate_sets(args.results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
